"""URLs of objects: permanent (``public_url`` or derived from the endpoint) and presigned."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.models import (
    PublicUrlParams,
    UrlResult,
)
from s3rpc.storage.registry import method
from s3rpc.storage.translate import s3_errors

if TYPE_CHECKING:
    pass

from s3rpc.storage.objects import named

MAX_PRESIGN_SECONDS = 604_800


def quote_key(key: str) -> str:
    """Percent-encode every path segment of a key for use in a URL."""
    return "/".join(quote(segment, safe="") for segment in key.split("/"))


def permanent_url(bucket: Bucket, key: str) -> str:
    """The unsigned URL of a full S3 key.

    With ``public_url`` (a CDN or custom domain serving the bucket's root) it is
    ``{public_url}/{key}`` where ``key`` *includes* the bucket's ``prefix``, exactly as the object
    is stored. Otherwise it is built from ``public_endpoint`` (or ``endpoint``): path-style
    ``{endpoint}/{bucket}/{key}`` or virtual-hosted ``{scheme}://{bucket}.{host}/{key}``; without
    any endpoint, AWS's ``https://{bucket}.s3.{region}.amazonaws.com/{key}``. Every path segment
    is percent-encoded.
    """
    path = quote_key(key)
    if bucket.config.public_url:
        return f"{bucket.config.public_url}/{path}"
    server = bucket.server
    endpoint = server.public_endpoint or server.endpoint
    if endpoint:
        if server.path_style:
            return f"{endpoint}/{quote(bucket.physical, safe='')}/{path}"
        parts = urlsplit(endpoint)
        return f"{parts.scheme}://{bucket.physical}.{parts.netloc}/{path}"
    region = server.region or "us-east-1"
    if server.path_style:
        return f"https://s3.{region}.amazonaws.com/{quote(bucket.physical, safe='')}/{path}"
    return f"https://{bucket.physical}.s3.{region}.amazonaws.com/{path}"


@method("s3.GetPublicURL", PublicUrlParams)
async def get_public_url(
    manager: BucketManager, bucket: Bucket, params: PublicUrlParams
) -> UrlResult:
    key = bucket.key(params.pathname)
    expires_in = params.expires_in
    if expires_in == 0:
        return {"url": permanent_url(bucket, key)}
    if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"field 'expires_in': must be 0 (permanent URL) or 1 to {MAX_PRESIGN_SECONDS} seconds",
        )
    what = f"presign a URL for {named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        # Signed by a client configured for public_endpoint, so the signature covers that host.
        url = await bucket.presign_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket.physical, "Key": key},
            ExpiresIn=expires_in,
        )
    return {"url": url, "expires_at": int(time.time()) + expires_in}

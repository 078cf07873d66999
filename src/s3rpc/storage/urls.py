"""URLs of objects: permanent (``public_url`` or derived from the endpoint), presigned
downloads, and presigned uploads (a PUT URL, or a POST form with a size limit) for browsers.

Every presigned URL is signed by the bucket's ``presign_client``, configured for
``public_endpoint``, so the signature covers the host the browser talks to.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.mime import guess_mime_type
from s3rpc.storage.models import (
    PublicUrlParams,
    UploadPostParams,
    UploadPostResult,
    UploadUrlParams,
    UploadUrlResult,
    UrlResult,
)
from s3rpc.storage.presign import presigner
from s3rpc.storage.registry import method
from s3rpc.storage.translate import s3_errors

if TYPE_CHECKING:
    pass

from s3rpc.storage.objects import CANNED_ACL, chosen_visibility, named

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
    overrides: dict[str, str] = {}
    if params.response_content_type is not None:
        overrides["ResponseContentType"] = params.response_content_type
    if params.response_content_disposition is not None:
        overrides["ResponseContentDisposition"] = params.response_content_disposition
    if expires_in == 0:
        if overrides:
            raise S3RpcError(
                ErrorCode.INVALID_REQUEST,
                "field 'expires_in': response_content_type and response_content_disposition "
                "need a presigned URL (expires_in 1 to "
                f"{MAX_PRESIGN_SECONDS} seconds); a permanent URL cannot carry them",
            )
        return {"url": permanent_url(bucket, key)}
    _check_expires_in(expires_in, permanent=True)
    what = f"presign a URL for {named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        # Signed for the client configured for public_endpoint, so the signature covers that
        # host; botocore's output byte for byte, in microseconds (storage/presign.py).
        url = await presigner(bucket.presign_client).url(
            "get_object",
            "GET",
            {"Bucket": bucket.physical, "Key": key, **overrides},
            expires_in,
            query=[(param, _QUERY_NAMES[param], value) for param, value in overrides.items()],
        )
    return {"url": url, "expires_at": int(time.time()) + expires_in}


#: GetObject's response overrides and the query parameters S3 reads them from.
_QUERY_NAMES = {
    "ResponseContentType": "response-content-type",
    "ResponseContentDisposition": "response-content-disposition",
}


def _check_expires_in(expires_in: int, *, permanent: bool) -> None:
    if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
        allowed = "0 (permanent URL) or 1" if permanent else "1"
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"field 'expires_in': must be {allowed} to {MAX_PRESIGN_SECONDS} seconds",
        )


def _upload_terms(bucket: Bucket, params: UploadUrlParams) -> tuple[str, str | None]:
    """The Content-Type and canned ACL (None under ``visibility_mode: none``) of an upload."""
    _check_expires_in(params.expires_in, permanent=False)
    visibility = chosen_visibility(params.visibility, bucket)
    content_type = params.content_type or guess_mime_type(params.pathname)
    acl = CANNED_ACL[visibility] if bucket.visibility_mode == "acl" else None
    return content_type, acl


@method("s3.GetUploadURL", UploadUrlParams)
async def get_upload_url(
    manager: BucketManager, bucket: Bucket, params: UploadUrlParams
) -> UploadUrlResult:
    """A presigned PUT: the browser sends the body with exactly the returned ``headers``."""
    key = bucket.key(params.pathname)
    content_type, acl = _upload_terms(bucket, params)
    signed: dict[str, str] = {"Bucket": bucket.physical, "Key": key, "ContentType": content_type}
    headers = {"Content-Type": content_type}
    signed_headers = [("ContentType", "content-type", content_type)]
    if acl is not None:
        signed["ACL"] = acl
        headers["x-amz-acl"] = acl
        signed_headers.append(("ACL", "x-amz-acl", acl))
    what = f"presign an upload URL for {named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        url = await presigner(bucket.presign_client).url(
            "put_object", "PUT", signed, params.expires_in, headers=signed_headers
        )
    return {
        "url": url,
        "method": "PUT",
        "headers": headers,
        "expires_at": int(time.time()) + params.expires_in,
    }


#: What S3 replaces, in a POST form's ``key``, with the name of the file the browser sends.
FILENAME = "${filename}"


def _post_key(bucket: Bucket, params: UploadPostParams) -> str:
    """The key a POST form is signed for; with ``${filename}``, checked for the opt-in and for
    a folder to bound it to.

    S3 cannot sign "a file name without ``/`` or ``..``": botocore signs a key ending in
    ``${filename}`` as ``["starts-with", "$key", <the key before it>]``, so the form may write
    any key below the pathname's folder, including names the daemon refuses (``..``, ``//``,
    deeper folders). Such keys stay below that folder, and ListContents leaves them out."""
    pathname = params.pathname
    if FILENAME not in pathname:
        return bucket.key(pathname)
    if not params.allow_filename:
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"field 'pathname': '{FILENAME}' lets the browser choose the file name, and the "
            "form may then write any key below the pathname's folder; set 'allow_filename' "
            "to true to allow that",
        )
    folder, _, name = pathname.rpartition("/")
    if pathname.count(FILENAME) != 1 or not name.endswith(FILENAME):
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"field 'pathname': '{FILENAME}' may appear once, at the end (e.g. "
            f"'avatars/{FILENAME}' or 'avatars/42-{FILENAME}')",
        )
    if not folder:
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"field 'pathname': '{FILENAME}' needs a folder (e.g. 'avatars/{FILENAME}'): the "
            "form may write any key below it, and at the top that is the whole bucket",
        )
    return bucket.key(pathname)


@method("s3.GetUploadPost", UploadPostParams)
async def get_upload_post(
    manager: BucketManager, bucket: Bucket, params: UploadPostParams
) -> UploadPostResult:
    """A presigned POST form: S3 refuses a file larger than ``max_size`` bytes, another key,
    and another Content-Type or ACL than the signed ones. With ``allow_filename`` and a
    pathname ending in ``${filename}``, any key below the pathname's folder (see
    :func:`_post_key`)."""
    key = _post_key(bucket, params)
    content_type, acl = _upload_terms(bucket, params)
    fields: dict[str, str] = {"Content-Type": content_type}
    conditions: list[Any] = [
        {"Content-Type": content_type},
        ["content-length-range", 0, params.max_size],
    ]
    if acl is not None:
        fields["acl"] = acl
        conditions.append({"acl": acl})
    what = f"presign an upload form for {named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        post = await bucket.presign_client.generate_presigned_post(
            Bucket=bucket.physical,
            Key=key,
            Fields=fields,
            Conditions=conditions,
            ExpiresIn=params.expires_in,
        )
    return {
        "url": post["url"],
        "fields": {name: str(value) for name, value in post["fields"].items()},
        "expires_at": int(time.time()) + params.expires_in,
    }

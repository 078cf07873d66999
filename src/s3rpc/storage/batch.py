"""Deleting many objects at once (``s3.DeleteMany``, ``s3.DeleteDirectory``) and creating a
directory (``s3.CreateDirectory``: its zero-byte ``dir/`` marker object).

The deletes send DeleteObjects requests of at most 1000 keys. Each request carries a
``Content-MD5`` header: S3 requires an integrity header on DeleteObjects, and botocore — with
``request_checksum_calculation: when_required``, which custom endpoints use — sends only
``x-amz-checksum-crc32``, which older MinIO and other S3-compatible services refuse. The
header is added by a ``before-sign`` hook registered once per client.

Keys are only ever built from the bucket prefix and a validated pathname or listed under the
bucket prefix, so nothing outside it can be deleted.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.models import (
    CreateDirectoryParams,
    CreateDirectoryResult,
    DeleteDirectoryParams,
    DeleteDirectoryResult,
    DeleteError,
    DeleteManyParams,
    DeleteManyResult,
)
from s3rpc.storage.objects import acl_args, chosen_visibility
from s3rpc.storage.pathnames import join_key, strip_prefix, validate_list_prefix
from s3rpc.storage.registry import method
from s3rpc.storage.translate import s3_errors

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

#: S3's limit on keys per DeleteObjects request.
DELETE_BATCH = 1000
_MD5_HOOK = "s3rpc-delete-objects-content-md5"
#: S3 per-key error codes that mean the caller may not delete the key.
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "Forbidden"})


def _add_content_md5(request: Any, **_: Any) -> None:
    body = request.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes | bytearray) and "Content-MD5" not in request.headers:
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        request.headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


def _with_content_md5(client: S3Client) -> S3Client:
    # unique_id makes the registration idempotent: one hook per client, however many calls.
    client.meta.events.register(
        "before-sign.s3.DeleteObjects", _add_content_md5, unique_id=_MD5_HOOK
    )
    return client


def _key_error(pathname: str, code: str) -> DeleteError:
    if code in _DENIED:
        return {
            "pathname": pathname,
            "code": ErrorCode.PERMISSION_DENIED.value,
            "message": f"access denied by S3 ({code})",
        }
    return {
        "pathname": pathname,
        "code": ErrorCode.S3_OPERATION_FAILED.value,
        "message": f"S3 did not delete it ({code or 'unknown error'})",
    }


async def delete_keys(
    bucket: Bucket, keys: Sequence[tuple[str, str]], what: str
) -> tuple[list[str], list[DeleteError]]:
    """Delete ``(key, pathname)`` pairs in requests of :data:`DELETE_BATCH`.

    A request that fails as a whole reports each of its keys with the translated error and the
    next request is still sent; each pathname ends up in exactly one of the two lists.
    """
    client = _with_content_md5(bucket.client)
    deleted: list[str] = []
    errors: list[DeleteError] = []
    for start in range(0, len(keys), DELETE_BATCH):
        chunk = keys[start : start + DELETE_BATCH]
        names = dict(chunk)
        try:
            with s3_errors(what, physical_bucket=bucket.physical):
                response = await client.delete_objects(
                    Bucket=bucket.physical,
                    Delete={"Objects": [{"Key": key} for key, _ in chunk], "Quiet": False},
                )
        except S3RpcError as exc:
            text = f"{exc.message} ({exc.details})" if exc.details else exc.message
            errors.extend(
                {"pathname": name, "code": exc.code.value, "message": text}
                for name in names.values()
            )
            continue
        answered: set[str] = set()
        for item in response.get("Deleted", []):
            key = item.get("Key", "")
            if key in names and key not in answered:
                answered.add(key)
                deleted.append(names[key])
        for failure in response.get("Errors", []):
            key = failure.get("Key", "")
            if key in names and key not in answered:
                answered.add(key)
                errors.append(_key_error(names[key], str(failure.get("Code") or "")))
        # A key S3 said nothing about was not confirmed deleted.
        for key, name in chunk:
            if key not in answered:
                errors.append(_key_error(name, "no answer for this key"))
    return deleted, errors


@method("s3.DeleteMany", DeleteManyParams)
async def delete_many(
    manager: BucketManager, bucket: Bucket, params: DeleteManyParams
) -> DeleteManyResult:
    keys: dict[str, str] = {}  # key -> pathname, first occurrence wins, order kept
    invalid: list[DeleteError] = []
    seen: set[str] = set()
    for pathname in params.pathnames:
        if pathname in seen:
            continue
        seen.add(pathname)
        try:
            key = bucket.key(pathname)
        except S3RpcError as exc:
            invalid.append({"pathname": pathname, "code": exc.code.value, "message": exc.message})
            continue
        keys.setdefault(key, pathname)
    deleted, errors = await delete_keys(
        bucket, list(keys.items()), f"delete objects in bucket '{bucket.name}'"
    )
    return {"deleted": deleted, "errors": invalid + errors}


def directory_prefix(
    prefix: str, field: str = "prefix", root: str = "deleting a whole bucket is not offered"
) -> str:
    """A validated, non-empty directory prefix ending in ``/`` (``"a/b"`` → ``"a/b/"``);
    INVALID_PATHNAME naming ``field`` otherwise, with ``root`` saying why the root is refused."""
    if prefix.strip("/") == "":
        raise S3RpcError(
            ErrorCode.INVALID_PATHNAME, f"{field} is invalid: it names no directory ({root})"
        )
    validate_list_prefix(prefix, field)
    return prefix if prefix.endswith("/") else prefix + "/"


@method("s3.CreateDirectory", CreateDirectoryParams)
async def create_directory(
    manager: BucketManager, bucket: Bucket, params: CreateDirectoryParams
) -> CreateDirectoryResult:
    """Write the directory's marker: the zero-byte object ``<prefix><path>/``, as S3 consoles
    and Flysystem's AWS adapter do. ListContents shows it as a directory, Exists on ``dir/``
    finds it, DeleteDirectory removes it. Idempotent: an existing marker is written again,
    with this call's visibility (else the bucket's; no ACL under ``visibility_mode: none``).
    """
    directory = directory_prefix(params.path, "path", "the bucket's root always exists")
    visibility = chosen_visibility(params.visibility, bucket)
    key = join_key(bucket.prefix, directory, "path")
    what = f"create directory '{directory}' in bucket '{bucket.name}'"
    with s3_errors(what, physical_bucket=bucket.physical):
        await bucket.client.put_object(
            Bucket=bucket.physical, Key=key, Body=b"", **acl_args(bucket, visibility)
        )
    return {"success": True, "path": directory}


@method("s3.DeleteDirectory", DeleteDirectoryParams)
async def delete_directory(
    manager: BucketManager, bucket: Bucket, params: DeleteDirectoryParams
) -> DeleteDirectoryResult:
    directory = directory_prefix(params.prefix)
    full = join_key(bucket.prefix, directory, "prefix")
    what = f"delete directory '{directory}' in bucket '{bucket.name}'"
    total = 0
    failed: list[DeleteError] = []
    token = ""
    while True:
        args: dict[str, Any] = {"Bucket": bucket.physical, "Prefix": full, "MaxKeys": DELETE_BATCH}
        if token:
            args["ContinuationToken"] = token
        with s3_errors(what, physical_bucket=bucket.physical):
            page = await bucket.client.list_objects_v2(**args)
        # startswith: never trust a listing to stay inside the prefix it was asked for.
        keys = [
            (key, strip_prefix(bucket.prefix, key))
            for key in (item.get("Key", "") for item in page.get("Contents", []))
            if key.startswith(full)
        ]
        if keys:
            deleted, errors = await delete_keys(bucket, keys, what)
            total += len(deleted)
            failed.extend(errors)
        token = page.get("NextContinuationToken", "") if page.get("IsTruncated") else ""
        if not token:
            break
    if failed:
        first = failed[0]
        code = ErrorCode(first["code"])
        raise S3RpcError(
            code,
            f"{what}: {len(failed)} objects could not be deleted, {total} were "
            f"(first: '{first['pathname']}')",
            first["message"],
        )
    return {"success": True, "deleted": total}

"""Whether a bucket can be reached: one HeadBucket (and an ACL probe), classified for operators.

Used by ``/ready`` with ``status.check_buckets`` and by ``s3rpc check-config --connect``. A check
is bounded in time and never raises: it returns a :class:`BucketHealth` whose ``state`` says
what an operator would fix, and whose fields carry S3 error *codes* and the endpoint host only,
never exception text or credentials.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
)

from s3rpc.storage.buckets import Bucket
from s3rpc.storage.translate import client_error_parts, endpoint_host

State = Literal["reachable", "denied", "missing", "unreachable", "acl_disabled", "failed"]

#: Seconds a check may take beyond the server's ``connect_timeout`` (the answer itself).
ANSWER_ALLOWANCE = 5.0


@dataclass(frozen=True, slots=True)
class BucketHealth:
    bucket: str  # logical name
    physical: str
    endpoint: str  # host[:port], "" for AWS' default
    state: State
    code: str = ""  # S3 error code or, without an S3 answer, the error's type
    http_status: int = 0
    checked_at: float = 0.0  # time.monotonic()

    @property
    def ok(self) -> bool:
        return self.state == "reachable"

    def describe(self) -> str:
        """What an operator reads: the state and what to do about it."""
        cause = f"{self.code}, HTTP {self.http_status}" if self.http_status else self.code
        match self.state:
            case "reachable":
                return "reachable"
            case "denied":
                return f"permission denied ({cause}): check the credentials and bucket policy"
            case "missing":
                return f"missing: the S3 bucket '{self.physical}' does not exist ({cause})"
            case "unreachable":
                return f"unreachable ({cause}): check the endpoint and the network"
            case "acl_disabled":
                return (
                    "ACLs disabled (Object Ownership: BucketOwnerEnforced) while "
                    "visibility_mode: acl; set 'visibility_mode: none' for this bucket or server"
                )
            case _:
                return f"S3 request failed ({cause})"

    def as_dict(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {"bucket": self.bucket, "state": self.state}
        if self.code:
            fields["code"] = self.code
        if self.http_status:
            fields["http_status"] = self.http_status
        if self.endpoint:
            fields["endpoint"] = self.endpoint
        return fields


def check_timeout(bucket: Bucket) -> float:
    return bucket.server.connect_timeout + min(bucket.server.read_timeout, ANSWER_ALLOWANCE)


async def check_bucket(
    bucket: Bucket, *, acl: bool = False, timeout: float | None = None
) -> BucketHealth:
    """HeadBucket on ``bucket``; with ``acl``, for ``visibility_mode: acl`` also whether the
    bucket refuses ACLs (GetBucketOwnershipControls). Never raises."""
    seconds = check_timeout(bucket) if timeout is None else timeout
    endpoint = endpoint_host(getattr(bucket.client.meta, "endpoint_url", None))

    def result(state: State, code: str = "", status: int = 0) -> BucketHealth:
        return BucketHealth(
            bucket.name, bucket.physical, endpoint, state, code, status, time.monotonic()
        )

    try:
        async with asyncio.timeout(seconds):
            await bucket.client.head_bucket(Bucket=bucket.physical)
            if acl and bucket.visibility_mode == "acl" and await _acls_disabled(bucket):
                return result("acl_disabled", "BucketOwnerEnforced")
    except ClientError as exc:
        status, code = client_error_parts(exc)
        # HeadBucket's errors have no body: S3 says only "404" or "403"; name them as S3 does.
        if status == 404 or code in ("NoSuchBucket", "NotFound", "404"):
            return result(
                "missing", "NoSuchBucket" if code in ("", "404", "NotFound") else code, status
            )
        if status == 403 or code in ("AccessDenied", "403", "Forbidden"):
            return result(
                "denied", "AccessDenied" if code in ("", "403", "Forbidden") else code, status
            )
        return result("failed", code or "unknown error", status)
    except TimeoutError:
        return result("unreachable", f"no answer within {seconds:g}s")
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        return result("unreachable", type(exc).__name__)
    return result("reachable")


async def _acls_disabled(bucket: Bucket) -> bool:
    """True when the bucket's Object Ownership is BucketOwnerEnforced (ACLs refused)."""
    try:
        answer = await bucket.client.get_bucket_ownership_controls(Bucket=bucket.physical)
    except ClientError:
        # OwnershipControlsNotFoundError: ACLs work as before; AccessDenied or a service
        # without the API (most S3-compatible ones): nothing says they are disabled.
        return False
    rules = answer.get("OwnershipControls", {}).get("Rules", [])
    return any(rule.get("ObjectOwnership") == "BucketOwnerEnforced" for rule in rules)


async def check_buckets(
    buckets: list[Bucket], *, acl: bool = False, timeout: float | None = None
) -> list[BucketHealth]:
    """Every bucket checked at once; results in the order given."""
    return list(await asyncio.gather(*(check_bucket(b, acl=acl, timeout=timeout) for b in buckets)))

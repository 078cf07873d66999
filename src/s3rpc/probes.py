"""Health and readiness of one daemon process: ``/health`` and ``/ready`` on ``status.address``,
and the bucket checks of ``s3rpc check-config --connect``.

Like RoadRunner's status plugin: ``/health`` answers 200 while the process runs (draining
included: a liveness probe must not kill a process that is finishing its calls); ``/ready``
answers 200 once the RPC server listens and every bucket's client is built, and
``status.unavailable_status_code`` (503) while starting or draining. With
``status.check_buckets`` it also needs a recent successful HeadBucket of every bucket: checked
on demand, at most once per :data:`REFRESH_INTERVAL`, one check at a time, so probes never
drive the load on S3. Bodies are JSON; a failed bucket is named with its S3 error code, never
with exception text or credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Literal

import structlog

from s3rpc.config import Config, S3Config, StatusConfig
from s3rpc.server.http import HttpEndpoint
from s3rpc.storage import BucketManager
from s3rpc.storage.health import BucketHealth, check_buckets

__all__ = ["BucketHealth", "Probes", "connect_check"]

log = structlog.get_logger("s3rpc")

Phase = Literal["starting", "serving", "draining"]
#: Seconds between two rounds of HeadBucket checks (``status.check_buckets``).
REFRESH_INTERVAL = 10.0
#: A bucket's last success counts for ``/ready`` this long (a few missed refreshes).
MAX_AGE = 3 * REFRESH_INTERVAL
#: How long a probe waits for a round under way before answering from what is known.
PROBE_WAIT = 2.0
JSON_TYPE = "application/json"


class Probes:
    """The ``/health`` and ``/ready`` routes of one process and their HTTP endpoint."""

    def __init__(self, config: StatusConfig) -> None:
        self.config = config
        self.phase: Phase = "starting"
        self.address: str | None = None
        self._buckets: BucketManager | None = None
        self._endpoint = HttpEndpoint({"/health": self.health, "/ready": self.ready})
        self._results: dict[str, BucketHealth] = {}
        self._round: asyncio.Task[None] | None = None
        self._last_round = float("-inf")

    # --- lifecycle (driven by the App) ----------------------------------------------------

    async def start(self, address: str) -> str:
        self.address = await self._endpoint.start(address)
        return self.address

    async def stop(self) -> None:
        if self._round is not None:
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._round
        await self._endpoint.stop()

    def serving(self, buckets: BucketManager) -> None:
        self._buckets = buckets
        self.phase = "serving"

    def draining(self) -> None:
        self.phase = "draining"

    # --- routes -----------------------------------------------------------------------------

    async def health(self) -> tuple[int, str, bytes]:
        return 200, JSON_TYPE, _json({"status": "ok", "phase": self.phase})

    async def ready(self) -> tuple[int, str, bytes]:
        unavailable = self.config.unavailable_status_code
        if self.phase != "serving" or self._buckets is None:
            return unavailable, JSON_TYPE, _json({"status": self.phase})
        if not self.config.check_buckets:
            return 200, JSON_TYPE, _json({"status": "ready"})
        failed = await self._bucket_failures(self._buckets)
        if self.phase != "serving":  # drain began while the buckets were checked
            return unavailable, JSON_TYPE, _json({"status": self.phase})
        if failed:
            return unavailable, JSON_TYPE, _json({"status": "not_ready", "buckets": failed})
        return 200, JSON_TYPE, _json({"status": "ready"})

    # --- status.check_buckets ---------------------------------------------------------------

    async def _bucket_failures(self, buckets: BucketManager) -> list[dict[str, str | int]]:
        names = buckets.names()
        due = time.monotonic() - self._last_round >= REFRESH_INTERVAL
        if self._round is None and (due or any(name not in self._results for name in names)):
            self._round = asyncio.create_task(self._check_round(buckets))
        if self._round is not None:
            await asyncio.wait({self._round}, timeout=PROBE_WAIT)
        now = time.monotonic()
        failed: list[dict[str, str | int]] = []
        for name in names:
            result = self._results.get(name)
            if result is None:
                failed.append({"bucket": name, "state": "not_checked_yet"})
            elif not result.ok:
                failed.append(result.as_dict())
            elif now - result.checked_at > MAX_AGE:
                failed.append({"bucket": name, "state": "check_outdated"})
        return failed

    async def _check_round(self, buckets: BucketManager) -> None:
        try:
            names = buckets.names()
            results = await check_buckets([buckets.get(name) for name in names])
            for result in results:
                before = self._results.get(result.bucket)
                if not result.ok and (before is None or before.state != result.state):
                    log.warning("bucket_check_failed", **result.as_dict())
                elif result.ok and before is not None and not before.ok:
                    log.info("bucket_check_recovered", bucket=result.bucket)
            self._results = {result.bucket: result for result in results}
        finally:
            self._last_round = time.monotonic()
            self._round = None


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


# --- s3rpc check-config --connect ----------------------------------------------------------


def one_attempt(s3: S3Config) -> S3Config:
    """``s3`` with every server (and inline server) set to one attempt: a check that fails
    says so at once instead of retrying."""
    servers = {
        name: server.model_copy(update={"max_attempts": 1}) for name, server in s3.servers.items()
    }
    buckets = {
        name: bucket if bucket.server is not None else bucket.model_copy(update={"max_attempts": 1})
        for name, bucket in s3.buckets.items()
    }
    return s3.model_copy(update={"servers": servers, "buckets": buckets})


async def connect_check(config: Config) -> list[BucketHealth]:
    """HeadBucket (and, for ``visibility_mode: acl``, the ACL probe) on every configured
    bucket, all at once, each bounded by its server's ``connect_timeout`` plus a few seconds."""
    async with BucketManager(one_attempt(config.s3)) as buckets:
        return await check_buckets([buckets.get(name) for name in buckets.names()], acl=True)

"""The bucket registry: logical bucket names, their S3 clients, slots and in-flight uploads.

:class:`BucketManager` is entered once, before the daemon accepts connections. It creates one
aioboto3 S3 client per distinct server (same endpoint, region, addressing, credentials and
timeouts ⇒ same client) inside its own :class:`~contextlib.AsyncExitStack`; buckets registered
at run time reuse a matching client or add one to that stack. On exit it aborts the multipart
uploads that are still unfinished, then closes every client.

Secrets live only inside the client objects and the frozen config; client identities are
compared through a digest, so nothing here can print a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import aioboto3  # type: ignore[import-untyped, unused-ignore]
import structlog
from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
)

from s3rpc.config import (
    BucketConfig,
    ConfigError,
    ResolvedBucket,
    S3Config,
    ServerConfig,
    VisibilityMode,
    bucket_from_params,
    resolve_bucket,
)
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.endpoint_cache import cache_endpoints
from s3rpc.storage.pathnames import join_key, validate_pathname
from s3rpc.storage.policy import check_register_policy
from s3rpc.storage.resolver import guarded_connector_args
from s3rpc.storage.timestamps import install as install_timestamp_parser
from s3rpc.storage.translate import client_error_parts, s3_errors
from s3rpc.storage.useragent import cache_user_agent

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

log = structlog.get_logger(__name__)

MAX_POOL_CONNECTIONS = 512
MIN_POOL_CONNECTIONS = 10
#: Seconds a cancelled or timed-out multipart call may spend after its deadline: waiting for a
#: CreateMultipartUpload's id and aborting the upload, together. Below the RPC server's
#: CLOSE_GRACE, so shutdown's wait for cancelled calls covers it.
CLEANUP_GRACE = 1.5
#: Seconds shutdown spends retrying the aborts of still-tracked uploads (all concurrently).
SHUTDOWN_ABORT_TIMEOUT = 3.0


class RegistrationPeers(Protocol):
    """The worker processes sharing one listening socket (``rpc.workers``, :mod:`s3rpc.workers`).

    Each call answers once every worker applied the change (or refuses it: S3RpcError).
    """

    async def register(self, name: str, fields: Mapping[str, Any], bucket: Bucket) -> None: ...

    async def unregister(self, name: str) -> bool: ...


@dataclass(eq=False)
class Bucket:
    """One logical bucket: its resolved config, its client and its concurrency slot."""

    resolved: ResolvedBucket
    client: S3Client
    #: Signs presigned URLs; configured for ``public_endpoint`` when the server has one.
    presign_client: S3Client
    _semaphore: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.resolved.config.max_concurrent_operations)

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def config(self) -> BucketConfig:
        return self.resolved.config

    @property
    def server(self) -> ServerConfig:
        return self.resolved.server

    @property
    def physical(self) -> str:
        """The S3 bucket name."""
        return self.resolved.config.bucket

    @property
    def prefix(self) -> str:
        return self.resolved.config.prefix

    @property
    def visibility_mode(self) -> VisibilityMode:
        return self.resolved.visibility_mode

    @property
    def operation_timeout(self) -> float:
        return self.resolved.operation_timeout

    def slot(self) -> asyncio.Semaphore:
        """``async with bucket.slot():`` — one of ``max_concurrent_operations`` places."""
        return self._semaphore

    def key(self, pathname: str, field: str = "pathname") -> str:
        """Validate a relative pathname and return the full S3 key under the bucket prefix."""
        return join_key(self.prefix, validate_pathname(pathname, field), field)


@dataclass(frozen=True, slots=True)
class Reloaded:
    """The file buckets a reload added, rebuilt (settings changed) and removed, by name."""

    added: list[str]
    changed: list[str]
    removed: list[str]


@dataclass(frozen=True, slots=True)
class _Upload:
    client: S3Client
    bucket: str
    key: str
    upload_id: str


class UploadTracker:
    """Multipart uploads started and not yet completed or aborted.

    Every abort is bounded: a call's cleanup by :data:`CLEANUP_GRACE`, the shutdown retry by
    :data:`SHUTDOWN_ABORT_TIMEOUT`. An upload whose abort failed stays tracked, is logged with
    its upload id, and is tried once more by :meth:`abort_all` at shutdown.
    """

    def __init__(self) -> None:
        self._uploads: set[_Upload] = set()

    def __len__(self) -> int:
        return len(self._uploads)

    def add(self, client: S3Client, bucket: str, key: str, upload_id: str) -> None:
        self._uploads.add(_Upload(client, bucket, key, upload_id))

    def discard(self, client: S3Client, bucket: str, key: str, upload_id: str) -> None:
        self._uploads.discard(_Upload(client, bucket, key, upload_id))

    async def abort(
        self, client: S3Client, bucket: str, key: str, upload_id: str, seconds: float
    ) -> bool:
        """AbortMultipartUpload within ``seconds``; True when the upload is gone."""
        upload = _Upload(client, bucket, key, upload_id)
        if await _abort(upload, seconds):
            self._uploads.discard(upload)
            return True
        return False

    async def abort_all(self, timeout: float = SHUTDOWN_ABORT_TIMEOUT) -> None:
        """Abort every tracked upload once, all at once, within ``timeout`` seconds in total."""
        uploads, self._uploads = list(self._uploads), set()
        if not uploads:
            return
        log.warning("aborting unfinished multipart uploads", count=len(uploads))
        results = await asyncio.gather(*(_abort(upload, timeout) for upload in uploads))
        left = [upload.upload_id for upload, gone in zip(uploads, results, strict=True) if not gone]
        if left:
            log.error("multipart uploads left open", count=len(left), upload_ids=left[:100])


async def _drain(bucket: Bucket, seconds: float) -> bool:
    """Take every slot of ``bucket`` (behind the calls already waiting); False on timeout.

    The slots stay taken on success: the bucket is gone, a straggler must not use its client.
    """
    semaphore = bucket.slot()
    taken = 0
    try:
        async with asyncio.timeout(seconds):
            for _ in range(bucket.config.max_concurrent_operations):
                await semaphore.acquire()
                taken += 1
    except TimeoutError:
        for _ in range(taken):
            semaphore.release()
        log.warning("retired bucket still busy", bucket=bucket.name, waited=seconds)
        return False
    return True


async def _abort(upload: _Upload, seconds: float) -> bool:
    """Abort one upload; True when it is gone (also when S3 no longer knows it)."""
    try:
        async with asyncio.timeout(seconds):
            with s3_errors("abort multipart upload", physical_bucket=upload.bucket):
                await upload.client.abort_multipart_upload(
                    Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id
                )
    except S3RpcError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientError) and client_error_parts(cause)[1] == "NoSuchUpload":
            return True  # completed after all, or already aborted: nothing is left open
        error = exc.wire_text()
    except TimeoutError:
        error = f"no answer within {seconds:g}s"
    else:
        return True
    log.warning(
        "could not abort multipart upload",
        s3_bucket=upload.bucket,
        key=upload.key,
        upload_id=upload.upload_id,
        error=error,
    )
    return False


def _stores_alike(old: Bucket, new: Bucket) -> bool:
    """Whether an upload under way through ``old`` can go on through ``new`` unchanged."""
    return (
        new.client is old.client
        and new.physical == old.physical
        and new.prefix == old.prefix
        and new.config.part_size == old.config.part_size
    )


def _client_identity(server: ServerConfig, endpoint: str, guarded: bool = False) -> str:
    """A digest of everything that makes two clients differ (credentials included)."""
    creds = server.credentials
    parts = (
        guarded,
        server.region,
        endpoint,
        server.path_style,
        creds.key,
        creds.secret.get_secret_value(),
        creds.token.get_secret_value(),
        server.connect_timeout,
        server.read_timeout,
        server.max_attempts,
    )
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()


def client_config(server: ServerConfig, *, endpoint: str, pool: int, guarded: bool = False) -> Any:
    """The botocore settings of a client for ``server`` talking to ``endpoint``.

    ``guarded``: every address it connects to passes the ``s3.register`` address rule
    (:mod:`s3rpc.storage.resolver`); for the clients of buckets registered with inline fields.
    """
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "retries": {"mode": "standard", "total_max_attempts": server.max_attempts},
        "connect_timeout": server.connect_timeout,
        "read_timeout": server.read_timeout,
        "max_pool_connections": max(MIN_POOL_CONNECTIONS, min(pool, MAX_POOL_CONNECTIONS)),
    }
    if server.path_style:
        options["s3"] = {"addressing_style": "path"}
    if endpoint:
        # Most S3-compatible services reject or mis-handle the newer default checksums.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    if guarded:
        options["connector_args"] = guarded_connector_args()
    return AioConfig(**options)


class BucketManager:
    """Logical buckets by name, the S3 clients behind them, and their lifecycle."""

    def __init__(self, s3: S3Config, *, session: Any = None) -> None:
        self._s3 = s3
        self._session: Any = session if session is not None else aioboto3.Session()
        self._stack: AsyncExitStack | None = None
        self._clients: dict[str, S3Client] = {}
        self._client_stacks: dict[str, AsyncExitStack] = {}
        #: Awaited with a bucket being unregistered, after its calls drained (e.g. sessions).
        self.unregister_hooks: list[Callable[[Bucket], Awaitable[None]]] = []
        self._buckets: dict[str, Bucket] = {}
        self._register_lock = asyncio.Lock()
        self._registered: set[str] = set()  # names added by register(), for max_registered
        #: Buckets replaced or removed (reload, unregister) whose calls are still finishing.
        self._retiring: set[Bucket] = set()
        self._retire_tasks: set[asyncio.Task[None]] = set()
        #: The other worker processes (``rpc.workers`` > 1), set before any call is served.
        self.peers: RegistrationPeers | None = None
        self.uploads = UploadTracker()
        # Upload sessions (storage/sessions.py, which imports this module): their sweep runs
        # while the manager is entered; on exit, and when their bucket goes, they are aborted.
        from s3rpc.storage.sessions import UploadSessions

        self.sessions = UploadSessions(self, s3)
        self.unregister_hooks.append(self.sessions.drop_bucket)

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        self._stack = stack
        try:
            resolved = [
                resolve_bucket(self._s3, name, bucket) for name, bucket in self._s3.buckets.items()
            ]
            pools: dict[str, int] = {}
            for item in resolved:
                for ident in self._identities(item.server):
                    pools[ident] = pools.get(ident, 0) + item.config.max_concurrent_operations
            for item in resolved:
                self._buckets[item.name] = await self._make_bucket(item, pools)
        except BaseException:
            await self._close()
            raise
        self.sessions.start()
        log.debug("buckets ready", buckets=len(self._buckets), clients=len(self._clients))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        stack, self._stack = self._stack, None
        for task in list(self._retire_tasks):
            task.cancel()
        if self._retire_tasks:
            await asyncio.gather(*self._retire_tasks, return_exceptions=True)
        try:
            # Before the clients close: aborting needs them.
            await self.sessions.close()
            await self.uploads.abort_all()
        finally:
            self._buckets.clear()
            self._clients.clear()
            self._client_stacks.clear()
            if stack is not None:
                await stack.aclose()

    # --- lookup ------------------------------------------------------------------------

    @property
    def default(self) -> str | None:
        return self._s3.default

    @property
    def local_paths(self) -> tuple[str, ...]:
        """``s3.local_paths``: where s3.WriteFromFile / s3.ReadToFile may touch files."""
        return self._s3.local_paths

    def names(self) -> list[str]:
        return sorted(self._buckets)

    def get(self, name: str | None) -> Bucket:
        """The bucket called ``name``; ``None`` or ``""`` means the configured default."""
        if not name:
            if self._s3.default is None:
                raise S3RpcError(
                    ErrorCode.BUCKET_NOT_FOUND,
                    "no bucket was given and no default bucket is configured (s3.default)",
                )
            name = self._s3.default
        bucket = self._buckets.get(name)
        if bucket is None:
            shown = name if name.isprintable() else repr(name)
            raise S3RpcError(
                ErrorCode.BUCKET_NOT_FOUND, f"bucket '{shown[:200]}' is not configured"
            )
        return bucket

    # --- run-time registration ---------------------------------------------------------

    async def register(self, name: str, fields: Mapping[str, Any]) -> Bucket:
        """Add a bucket at run time (``s3.RegisterBucket``); validated like one from the file.

        With :attr:`peers` (``rpc.workers`` > 1) the bucket is added when the supervisor relays
        the registration back, to every worker in the same order; this returns once all did.
        """
        if not name:
            raise S3RpcError(ErrorCode.INVALID_CONFIG, "name: a bucket name is required")
        async with self._register_lock:
            if name in self._buckets:
                raise S3RpcError(
                    ErrorCode.BUCKET_ALREADY_EXISTS, f"bucket '{name}' is already registered"
                )
            bucket = await self.prepare(name, fields, check_policy=True)
            if self.peers is not None:
                await self.peers.register(name, fields, bucket)
                return bucket
            self.add_registered(bucket)
        return bucket

    async def prepare(self, name: str, fields: Mapping[str, Any], *, check_policy: bool) -> Bucket:
        """A registered bucket with its clients, not yet added (see :meth:`add_registered`).

        ``check_policy`` is False only for a registration another worker already accepted.
        """
        try:
            config = bucket_from_params(self._s3, name, fields)
        except ConfigError as exc:
            raise S3RpcError(ErrorCode.INVALID_CONFIG, str(exc)) from None
        if check_policy:
            # Before any client exists, so a refused bucket never sends a request.
            await check_register_policy(self._s3, config, len(self._registered))
        resolved = resolve_bucket(self._s3, name, config)
        # Inline server fields: the caller chose the endpoint, so every connection is checked
        # against the policy's address rule, not only this registration (DNS rebinding).
        guarded = config.server is None
        pools = {
            ident: config.max_concurrent_operations
            for ident in self._identities(resolved.server, guarded)
        }
        try:
            return await self._make_bucket(resolved, pools, guarded)
        except (ValueError, BotoCoreError) as exc:
            raise S3RpcError(
                ErrorCode.INVALID_CONFIG,
                "the S3 client for this bucket could not be created",
                type(exc).__name__,
            ) from None

    def add_registered(self, bucket: Bucket) -> None:
        name = bucket.name
        if name in self._buckets:
            raise S3RpcError(
                ErrorCode.BUCKET_ALREADY_EXISTS, f"bucket '{name}' is already registered"
            )
        self._buckets[name] = bucket
        self._registered.add(name)
        log.info(
            "bucket registered",
            registered=name,
            server=bucket.resolved.server_name,
            s3_bucket=bucket.physical,
        )

    async def discard_prepared(self, bucket: Bucket) -> None:
        """Close the clients of a prepared bucket that was not added, unless others use them."""
        if self._buckets.get(bucket.name) is not bucket:
            await self._release_clients(bucket)

    # --- run-time unregistration (s3.UnregisterBucket) -----------------------------------

    async def unregister(self, name: str) -> bool:
        """Remove a bucket added by :meth:`register`; answer whether its client was closed.

        New calls get BUCKET_NOT_FOUND at once; calls that already hold or wait for one of its
        slots finish first (every one is bounded by the bucket's ``operation_timeout``). Its
        clients are closed when no other bucket uses them. With :attr:`peers` every worker
        does this, in the supervisor's order, before this returns.
        """
        self._check_registered(name)
        if self.peers is not None:
            return await self.peers.unregister(name)
        return await self.remove_registered(name)

    def _check_registered(self, name: str) -> Bucket:
        shown = name if name.isprintable() else repr(name)
        bucket = self._buckets.get(name)
        if bucket is None:
            raise S3RpcError(
                ErrorCode.BUCKET_NOT_FOUND, f"bucket '{shown[:200]}' is not configured"
            )
        if name not in self._registered:
            raise S3RpcError(
                ErrorCode.INVALID_CONFIG,
                f"bucket '{shown[:200]}' comes from the configuration file; only buckets "
                "added with s3.RegisterBucket can be unregistered",
            )
        return bucket

    async def remove_registered(self, name: str) -> bool:
        """The local part of :meth:`unregister`: gone at once, then drained and released."""
        bucket = self._check_registered(name)
        del self._buckets[name]
        self._registered.discard(name)
        drained, closed = await self._retire(bucket)
        log.info("bucket unregistered", unregistered=name, drained=drained, client_closed=closed)
        return closed

    async def _retire(self, bucket: Bucket) -> tuple[bool, bool]:
        """After ``bucket`` left the table: its calls finish, then its unshared clients close.

        Answers (drained, a client was closed).
        """
        self._retiring.add(bucket)
        try:
            drained = await _drain(bucket, bucket.operation_timeout + CLEANUP_GRACE + 1.0)
            for hook in self.unregister_hooks:
                await hook(bucket)
        finally:
            self._retiring.discard(bucket)
        closed = False
        if drained:
            closed = await self._release_clients(bucket)
        return drained, closed

    async def _release_clients(self, bucket: Bucket) -> bool:
        users = [*self._buckets.values(), *(b for b in self._retiring if b is not bucket)]
        in_use = {id(other.client) for other in users}
        in_use |= {id(other.presign_client) for other in users}
        in_use |= {id(upload.client) for upload in self.uploads._uploads}
        closed = False
        mine = {id(bucket.client): bucket.client, id(bucket.presign_client): bucket.presign_client}
        for client in mine.values():
            if id(client) in in_use:
                continue
            for ident, known in list(self._clients.items()):
                if known is client:
                    del self._clients[ident]
                    stack = self._client_stacks.pop(ident, None)
                    if stack is not None:
                        await stack.aclose()
                        closed = True
        return closed

    # --- reload (SIGHUP) ---------------------------------------------------------------

    async def reload(self, s3: S3Config) -> Reloaded:
        """Apply a re-read ``s3`` section; buckets registered at run time stay.

        Every new or changed bucket gets its clients first: if one cannot be built, nothing
        changes (S3RpcError). Then, in one step, the new config and the bucket table take
        effect: new calls see added and rebuilt buckets, and BUCKET_NOT_FOUND for removed ones.
        A replaced or removed bucket finishes its calls in flight in the background (bounded by
        its ``operation_timeout``; its upload sessions are aborted), then its clients close
        unless another bucket shares them. A file bucket named like a registered one is not
        added while the registered one exists.
        """
        async with self._register_lock:
            current = {
                name: bucket
                for name, bucket in self._buckets.items()
                if name not in self._registered
            }
            shadowed = sorted(name for name in s3.buckets if name in self._registered)
            wanted = [
                resolve_bucket(s3, name, config)
                for name, config in s3.buckets.items()
                if name not in self._registered
            ]
            fresh = [
                item
                for item in wanted
                if item.name not in current or current[item.name].resolved != item
            ]
            pools: dict[str, int] = {}
            for item in wanted:
                for ident in self._identities(item.server):
                    pools[ident] = pools.get(ident, 0) + item.config.max_concurrent_operations
            built: list[Bucket] = []
            try:
                for item in fresh:
                    built.append(await self._make_bucket(item, pools))
            except (ValueError, BotoCoreError) as exc:
                for bucket in built:
                    await self._release_clients(bucket)
                raise S3RpcError(
                    ErrorCode.INVALID_CONFIG,
                    "the S3 client of a reloaded bucket could not be created",
                    type(exc).__name__,
                ) from None
            names = {item.name for item in wanted}
            removed = sorted(name for name in current if name not in names)
            retired = [current[name] for name in removed]
            retired += [current[b.name] for b in built if b.name in current]
            self._s3 = s3
            self.sessions.configure(s3)
            for bucket in built:
                old = current.get(bucket.name)
                if old is not None and _stores_alike(old, bucket):
                    # Same client, S3 bucket, prefix and part size: an upload session under
                    # way goes on with the new bucket rather than being aborted with the old.
                    self.sessions.move_bucket(old, bucket)
                self._buckets[bucket.name] = bucket
            for name in removed:
                del self._buckets[name]
            for bucket in retired:
                task = asyncio.create_task(self._retire_reloaded(bucket))
                self._retire_tasks.add(task)
                task.add_done_callback(self._retire_tasks.discard)
        if shadowed:
            log.warning(
                "reload_bucket_shadowed",
                buckets=shadowed,
                action="kept the bucket registered at run time; unregister it to use the file's",
            )
        return Reloaded(
            added=sorted(b.name for b in built if b.name not in current),
            changed=sorted(b.name for b in built if b.name in current),
            removed=removed,
        )

    async def _retire_reloaded(self, bucket: Bucket) -> None:
        drained, closed = await self._retire(bucket)
        log.info("bucket retired", retired=bucket.name, drained=drained, client_closed=closed)

    # --- clients -----------------------------------------------------------------------

    @staticmethod
    def _identities(server: ServerConfig, guarded: bool = False) -> list[str]:
        idents = [_client_identity(server, server.endpoint, guarded)]
        if server.public_endpoint:
            idents.append(_client_identity(server, server.public_endpoint, guarded))
        return idents

    async def _make_bucket(
        self, resolved: ResolvedBucket, pools: Mapping[str, int], guarded: bool = False
    ) -> Bucket:
        server = resolved.server
        client = await self._client(server, server.endpoint, pools, guarded)
        presign = client
        if server.public_endpoint:
            presign = await self._client(server, server.public_endpoint, pools, guarded)
        return Bucket(resolved=resolved, client=client, presign_client=presign)

    async def _client(
        self, server: ServerConfig, endpoint: str, pools: Mapping[str, int], guarded: bool
    ) -> S3Client:
        ident = _client_identity(server, endpoint, guarded)
        existing = self._clients.get(ident)
        if existing is not None:
            return existing
        if self._stack is None:
            raise RuntimeError("BucketManager is not entered")
        creds = server.credentials
        context = self._session.client(
            "s3",
            region_name=server.region,
            endpoint_url=endpoint or None,
            aws_access_key_id=creds.key or None,
            aws_secret_access_key=creds.secret.get_secret_value() or None,
            aws_session_token=creds.token.get_secret_value() or None,
            config=client_config(
                server, endpoint=endpoint, pool=pools.get(ident, 0), guarded=guarded
            ),
        )
        # Each client in its own stack, so s3.UnregisterBucket can close one that is no
        # longer used; the manager's stack closes whatever is left (aclose twice is a no-op).
        own = AsyncExitStack()
        client: S3Client = await own.enter_async_context(context)
        # Endpoints resolved once per bucket and operation, not once per object key.
        cache_endpoints(client)
        # Last-Modified and listings' LastModified without dateutil's general parser.
        install_timestamp_parser(client)
        # The User-Agent header assembled once, not character by character per request.
        cache_user_agent(client)
        self._stack.push_async_callback(own.aclose)
        self._client_stacks[ident] = own
        self._clients[ident] = client
        return client

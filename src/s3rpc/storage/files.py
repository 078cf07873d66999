"""Local files and storage: ``s3.WriteFromFile`` and ``s3.ReadToFile``, streamed.

This is how PHP hands over a big object without it ever entering PHP's memory or an RPC frame
(``$_FILES[...]['tmp_name']`` straight to storage): the daemon reads or writes the file itself.

- Only paths under ``s3.local_paths`` are touched, judged *after* resolving symbolic links and
  ``..`` (and checked again on the opened descriptor, so a path swapped for a link between the
  check and the open is still refused): anything else is PERMISSION_DENIED, as is every path
  when the list is empty (the feature is off). Paths must be absolute.
- WriteFromFile reads the file part by part (``concurrency`` parts of ``part_size`` in flight,
  each read in a worker thread) and uploads them with the one multipart engine; a file no
  larger than one part is a single PutObject. Memory: ``concurrency * part_size``, never the
  file's size, and fewer parts at once when that would not fit ``rpc.max_inflight_bytes`` (one
  part at least: a 2 TiB file needs parts of 220 MB to stay within 10,000 parts). A file over
  S3's 5 TiB limit is refused unread (OBJECT_TOO_LARGE).
- ReadToFile streams the object's body into a temporary file next to the destination (1 MiB
  at a time, one chunk written while the next arrives), fsyncs it and renames it into place;
  on any failure, deadline or cancellation the temporary file is removed and the destination is
  left as it was.

Blocking file calls run in the loop's default executor. A call whose awaiting task is
cancelled keeps running in its thread, so every descriptor is closed only after all of its
calls have finished (:class:`_Blocking`): a thread never touches a closed or reused descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from s3rpc.budget import budget_limit, reserve
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.mime import SNIFF_BYTES
from s3rpc.storage.models import (
    ReadToFileParams,
    ReadToFileResult,
    WriteFromFileParams,
    WriteResult,
    shown,
)
from s3rpc.storage.multipart import (
    MAX_OBJECT_SIZE,
    Multipart,
    PartReader,
    choose_part_size,
    parts_in_flight,
    read_exactly,
    run_workers,
)
from s3rpc.storage.objects import named, stored_at, write_args
from s3rpc.storage.registry import method
from s3rpc.storage.translate import s3_errors

T = TypeVar("T")

#: Bytes of a download received before they are handed to the writing thread.
CHUNK = 1024 * 1024
_TEMP_SUFFIX = ".s3rpc-tmp"


class _Blocking:
    """Blocking calls in the default executor, tracked until they have really finished."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def start(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future = asyncio.get_running_loop().run_in_executor(None, call, *args)
        self._pending.add(future)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved: a caller that was cancelled will never ask

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        # Shielded: cancelling the caller must not hide a call that is still running.
        return await asyncio.shield(self.start(call, *args))

    async def drain(self) -> None:
        """Wait until no call is running, even through cancellation (re-raised afterwards)."""
        cancelled = False
        while self._pending:
            try:
                await asyncio.wait(set(self._pending))
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError


# --- paths ------------------------------------------------------------------------------------


def _denied(message: str) -> S3RpcError:
    return S3RpcError(ErrorCode.PERMISSION_DENIED, message)


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        real = os.path.realpath(root)
        if path == real or path.startswith(real.rstrip("/") + "/"):
            return True
    return False


def _allowed(roots: tuple[str, ...], raw: str, field: str) -> str:
    """``raw`` with every link and ``..`` resolved, if that lies under ``s3.local_paths``."""
    if not roots:
        raise _denied(f"{field}: local file transfers are off: s3.local_paths is empty")
    if not os.path.isabs(raw):
        raise _denied(f"{field} '{shown(raw)}' must be an absolute path under s3.local_paths")
    resolved = os.path.realpath(raw)
    if not _inside(resolved, roots):
        raise _denied(
            f"{field} '{shown(raw)}' is outside s3.local_paths once symbolic links are resolved"
        )
    return resolved


def _still_inside(fd: int, roots: tuple[str, ...], field: str, raw: str) -> None:
    """Check the opened file itself (Linux: /proc/self/fd), against a path swapped meanwhile."""
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return  # no /proc: the check before the open stands alone
    if not _inside(opened, roots):
        raise _denied(
            f"{field} '{shown(raw)}' is outside s3.local_paths once symbolic links are resolved"
        )


def _os_error(exc: OSError, field: str, raw: str, action: str) -> S3RpcError:
    if isinstance(exc, FileNotFoundError):
        return S3RpcError(ErrorCode.FILE_NOT_FOUND, f"{field} '{shown(raw)}' does not exist")
    if isinstance(exc, PermissionError):
        return _denied(f"the daemon may not {action} {field} '{shown(raw)}'")
    return S3RpcError(
        ErrorCode.INVALID_REQUEST,
        f"cannot {action} {field} '{shown(raw)}': {exc.strerror or type(exc).__name__}",
    )


def _open_source(roots: tuple[str, ...], raw: str) -> tuple[int, int]:
    """Open the file to upload: (descriptor, size). Runs in a worker thread."""
    path = _allowed(roots, raw, "source_path")
    try:
        # O_NONBLOCK: a FIFO must not hang the open (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise _os_error(exc, "source_path", raw, "read") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise S3RpcError(
                ErrorCode.INVALID_REQUEST,
                f"source_path '{shown(raw)}' is a directory, not a file",
            )
        if not stat.S_ISREG(info.st_mode):
            raise S3RpcError(
                ErrorCode.INVALID_REQUEST, f"source_path '{shown(raw)}' is not a regular file"
            )
        _still_inside(fd, roots, "source_path", raw)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def _create_temp(roots: tuple[str, ...], raw: str) -> tuple[str, str, int]:
    """(final path, temporary path, its descriptor) for a download. Runs in a worker thread."""
    if raw.endswith("/"):
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST, f"dest_path '{shown(raw)}' must name a file, not a directory"
        )
    path = _allowed(roots, raw, "dest_path")
    if os.path.isdir(path):
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST, f"dest_path '{shown(raw)}' is a directory, not a file"
        )
    directory, name = os.path.split(path)
    if not os.path.isdir(directory):
        raise S3RpcError(
            ErrorCode.FILE_NOT_FOUND, f"the directory of dest_path '{shown(raw)}' does not exist"
        )
    temp = os.path.join(directory, f".{name[:100]}.{secrets.token_hex(8)}{_TEMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(temp, flags, 0o666)  # the daemon's umask applies, as for any new file
    except OSError as exc:
        raise _os_error(exc, "dest_path", raw, "write in the directory of") from None
    try:
        _still_inside(fd, roots, "dest_path", raw)
    except BaseException:
        os.close(fd)
        _remove(temp)
        raise
    return path, temp, fd


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _pread_exactly(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``; an error if the file has shrunk meanwhile."""
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    chunks = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise S3RpcError(
                ErrorCode.INVALID_REQUEST,
                "source_path became shorter while it was uploaded; nothing was stored",
            )
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    with memoryview(data) as view:
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _finish(fd: int, temp: str, path: str) -> None:
    """fsync, rename into place and fsync the directory, so the new name survives a crash."""
    os.fsync(fd)
    os.replace(temp, path)
    with contextlib.suppress(OSError):
        dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- methods ----------------------------------------------------------------------------------


@method("s3.WriteFromFile", WriteFromFileParams)
async def write_from_file(
    manager: BucketManager, bucket: Bucket, params: WriteFromFileParams
) -> WriteResult:
    key = bucket.key(params.pathname)
    files = _Blocking()
    fd, size = await files.run(_open_source, manager.local_paths, params.source_path)
    try:
        if size > MAX_OBJECT_SIZE:
            raise S3RpcError(
                ErrorCode.OBJECT_TOO_LARGE,
                f"source_path '{shown(params.source_path)}' is {size} bytes; S3 stores objects "
                f"of at most 5 TiB ({MAX_OBJECT_SIZE} bytes)",
            )
        part_size = choose_part_size(bucket, size)
        single = size <= part_size
        if single:
            await reserve(size, answered=False)  # before it is read, not after
        # A single-part file is read whole (at most part_size); else only its head, to sniff.
        head = await files.run(_pread_exactly, fd, size if single else SNIFF_BYTES, 0)
        extra = write_args(bucket, params, params.pathname, head[:SNIFF_BYTES])
        what = f"write {named(params.pathname, bucket)}"
        with s3_errors(what, physical_bucket=bucket.physical):
            if single:
                response = await bucket.client.put_object(
                    Bucket=bucket.physical, Key=key, Body=head, **extra
                )
            else:
                response = await _upload_parts(
                    manager, bucket, key, files, fd, size, part_size, extra
                )
    finally:
        try:
            await files.drain()
        finally:
            os.close(fd)
    return {
        "success": True,
        "pathname": params.pathname,
        "size": size,  # every byte was read (_pread_exactly) and sent; no HEAD needed
        "last_modified": stored_at(response),
    }


async def _upload_parts(
    manager: BucketManager,
    bucket: Bucket,
    key: str,
    files: _Blocking,
    fd: int,
    size: int,
    part_size: int,
    extra: dict[str, Any],
) -> Any:
    count = -(-size // part_size)
    workers = parts_in_flight(bucket.config.concurrency, count, part_size, budget_limit())
    # Each worker holds one part at a time: that is all the memory this upload takes.
    await reserve(workers * part_size, answered=False)
    parts: Iterator[tuple[int, int]] = enumerate(range(0, size, part_size), start=1)
    async with Multipart(manager.uploads, bucket.client, bucket.physical, key, extra) as upload:

        async def worker() -> None:
            for number, offset in parts:  # shared iterator: each part is taken once
                length = min(part_size, size - offset)
                data = await files.run(_pread_exactly, fd, length, offset)
                await upload.upload(number, PartReader(memoryview(data)))
                del data

        await run_workers(workers, worker)
        return await upload.complete()


@method("s3.ReadToFile", ReadToFileParams)
async def read_to_file(
    manager: BucketManager, bucket: Bucket, params: ReadToFileParams
) -> ReadToFileResult:
    key = bucket.key(params.pathname)
    files = _Blocking()
    path, temp, fd = await files.run(_create_temp, manager.local_paths, params.dest_path)
    placed = False
    try:
        with s3_errors(f"read {named(params.pathname, bucket)}", physical_bucket=bucket.physical):
            response = await bucket.client.get_object(Bucket=bucket.physical, Key=key)
            announced = response.get("ContentLength")
            body = response["Body"]
            async with body:
                # One chunk being received while the previous one is written.
                await reserve(2 * CHUNK)
                size = await _download(files, body, fd)
        if announced is not None and size != announced:
            raise S3RpcError(
                ErrorCode.S3_OPERATION_FAILED,
                f"the object ended after {size} of its {announced} announced bytes",
            )
        await files.run(_finish, fd, temp, path)
        placed = True
    finally:
        try:
            await files.drain()
        finally:
            os.close(fd)
            if not placed:
                _remove(temp)
    return {"success": True, "pathname": params.pathname, "size": size, "dest_path": path}


async def _download(files: _Blocking, body: Any, fd: int) -> int:
    received = 0
    writing: asyncio.Future[None] | None = None
    while chunk := await read_exactly(body, CHUNK):
        if writing is not None:
            await asyncio.shield(writing)
        writing = files.start(_write_all, fd, chunk)
        received += len(chunk)
    if writing is not None:
        await asyncio.shield(writing)
    return received

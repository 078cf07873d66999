"""Local files and storage: ``s3.WriteFromFile`` and ``s3.ReadToFile``, streamed.

This is how PHP hands over a big object without it ever entering PHP's memory or an RPC frame
(``$_FILES[...]['tmp_name']`` straight to storage): the daemon reads or writes the file itself.

- Only paths under ``s3.local_paths`` are touched, judged *after* resolving symbolic links and
  ``..``: anything else is PERMISSION_DENIED, as is every path when the list is empty (the
  feature is off). Paths must be absolute. A path is walked one directory at a time, never
  following a link it has not resolved and checked itself, and every later step works on the
  directory it opened (see "paths" below): a directory swapped for a symbolic link at any
  moment cannot make the daemon read, create, replace or leave anything outside.
- Only regular files are read or replaced: a directory, FIFO, device or socket is
  INVALID_REQUEST (a destination of that kind is left alone). A replaced file keeps its mode
  (and owner, where the daemon may set it). A full disk is NO_SPACE_LEFT, a read-only
  filesystem PERMISSION_DENIED.
- WriteFromFile reads the file part by part (``concurrency`` parts of ``part_size`` in flight,
  each read in a worker thread) and uploads them with the one multipart engine; a file no
  larger than one part is a single PutObject. Memory: ``concurrency * part_size``, never the
  file's size, and fewer parts at once when that would not fit ``rpc.max_inflight_bytes`` (one
  part at least: a 2 TiB file needs parts of 220 MB to stay within 10,000 parts). A file over
  S3's 5 TiB limit is refused unread (OBJECT_TOO_LARGE).
- ReadToFile streams the object's body into a temporary file next to the destination (1 MiB
  at a time, one chunk written while the next arrives), fsyncs it and renames it into place;
  on any failure, deadline or cancellation (also one that comes while the temporary file is
  being created) the temporary file is removed and the destination is left as it was.

Blocking file calls run in the loop's default executor. A call whose awaiting task is
cancelled keeps running in its thread, so every descriptor is closed only after all of its
calls have finished (:class:`_Blocking`): a thread never touches a closed or reused descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
#
# A path is never handed to the kernel whole. It is walked from "/" one component at a time,
# each directory opened relative to the one before with O_NOFOLLOW, so a component swapped for a
# symbolic link between two steps is seen (and its link resolved by us, or the step retried),
# never silently followed. Links and ".." are resolved like realpath does, on the directories
# actually opened; the resulting real path must lie under s3.local_paths. Everything after the
# walk — the source's open, the destination's lstat, the temporary file's O_EXCL creation, the
# rename into place, the clean-up — happens relative to the opened directory, so a swap after
# the walk cannot redirect any of it outside.


def _denied(message: str) -> S3RpcError:
    return S3RpcError(ErrorCode.PERMISSION_DENIED, message)


def _outside(field: str, raw: str) -> S3RpcError:
    return _denied(
        f"{field} '{shown(raw)}' is outside s3.local_paths once symbolic links are resolved"
    )


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        real = os.path.realpath(root)
        if path == real or path.startswith(real.rstrip("/") + "/"):
            return True
    return False


def _still_inside(fd: int, roots: tuple[str, ...], field: str, raw: str) -> None:
    """Check the opened file itself (Linux: /proc/self/fd), against a directory renamed away
    after it was walked through."""
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return  # no /proc: the walk stands alone
    if not _inside(opened, roots):
        raise _outside(field, raw)


def _os_error(exc: OSError, field: str, raw: str, action: str) -> S3RpcError:
    if isinstance(exc, FileNotFoundError):
        return S3RpcError(ErrorCode.FILE_NOT_FOUND, f"{field} '{shown(raw)}' does not exist")
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        reason = "it is on a read-only filesystem" if exc.errno == errno.EROFS else "no access"
        return _denied(f"the daemon may not {action} {field} '{shown(raw)}': {reason}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return S3RpcError(
            ErrorCode.NO_SPACE_LEFT,
            f"cannot {action} {field} '{shown(raw)}': no space left on its filesystem "
            "(disk or quota full); it was left as it was",
        )
    if exc.errno == errno.EFBIG:
        return S3RpcError(
            ErrorCode.NO_SPACE_LEFT,
            f"cannot {action} {field} '{shown(raw)}': the file would exceed the largest size "
            "its filesystem (or the daemon's file size limit) allows; it was left as it was",
        )
    return S3RpcError(
        ErrorCode.INVALID_REQUEST,
        f"cannot {action} {field} '{shown(raw)}': {exc.strerror or type(exc).__name__}",
    )


#: Directories are opened only to walk through them: O_PATH needs no read permission (search
#: permission suffices, as for any path lookup) and gives a descriptor for the *at() calls.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Symbolic links resolved, plus steps retried because a component changed meanwhile (ELOOP).
_MAX_STEPS = 40


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _readlink(name: str, dir_fd: int) -> str | None:
    """The target of ``name`` if it is a symbolic link; None if it is not one or is missing."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return _readlink(name, dir_fd) is not None
    except OSError:
        return False


@dataclass(slots=True)
class _Place:
    """Where a walked path leads: its directory, opened, and the last name in it."""

    dir_fd: int  # owned: the caller closes it
    name: str  # "" when the path names a directory itself (it ended in "..")
    path: str  # the real path at the time of the walk

    def close(self) -> None:
        os.close(self.dir_fd)


def _walk(roots: tuple[str, ...], raw: str, field: str) -> _Place:
    """Walk ``raw`` (module notes above); the last component is left unopened. Worker thread."""
    if not roots:
        raise _denied(f"{field}: local file transfers are off: s3.local_paths is empty")
    if not os.path.isabs(raw):
        raise _denied(f"{field} '{shown(raw)}' must be an absolute path under s3.local_paths")
    pending = deque(_components(raw))
    names: list[str] = []  # the real path of fds[-1], one name per directory
    fds = [os.open("/", _DIR_FLAGS)]
    steps = 0
    last = ""
    try:
        while pending:
            name = pending.popleft()
            if name == "..":
                if names:
                    names.pop()
                    os.close(fds.pop())
                last = ""
                continue
            try:
                target = _readlink(name, fds[-1])
                if target is None and pending:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=fds[-1])
                    names.append(name)
                    fds.append(fd)
                    continue
            except OSError as exc:
                # ENOTDIR: not a directory, or a link swapped in since the readlink (then retry).
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_link(name, fds[-1]):
                    target = None
                    pending.appendleft(name)
                else:
                    missing = "/" + "/".join([*names, name, *pending])
                    if not _inside(os.path.normpath(missing), roots):
                        raise _outside(field, raw) from None
                    if isinstance(exc, PermissionError):
                        raise _os_error(exc, field, raw, "reach") from None
                    raise S3RpcError(
                        ErrorCode.FILE_NOT_FOUND,
                        f"a directory on the way to {field} '{shown(raw)}' does not exist",
                    ) from None
            else:
                if target is None:
                    last = name  # the final component, not a link: left for the caller
                    break
            steps += 1
            if steps > _MAX_STEPS:
                raise S3RpcError(
                    ErrorCode.INVALID_REQUEST,
                    f"{field} '{shown(raw)}': too many symbolic links (or a path that keeps "
                    "changing) on the way",
                )
            if target is not None:
                if target.startswith("/"):
                    for fd in fds[1:]:
                        os.close(fd)
                    del fds[1:], names[:]
                pending.extendleft(reversed(_components(target)))
                last = ""
        path = "/" + "/".join([*names, last] if last else names)
        if not _inside(path, roots):
            raise _outside(field, raw)
        place = _Place(fds.pop(), last, path)
    finally:
        for fd in fds:
            os.close(fd)
    return place


def _open_source(roots: tuple[str, ...], raw: str) -> tuple[int, int]:
    """Open the file to upload: (descriptor, size). Runs in a worker thread."""
    place = _walk(roots, raw, "source_path")
    try:
        if not place.name:
            raise S3RpcError(
                ErrorCode.INVALID_REQUEST, f"source_path '{shown(raw)}' is a directory, not a file"
            )
        # O_NONBLOCK: a FIFO must not hang the open (it is refused below). O_NOFOLLOW: the
        # walk saw no link here; one swapped in since is refused, not followed.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW
        try:
            fd = os.open(place.name, flags, dir_fd=place.dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _changed("source_path", raw) from None
            raise _os_error(exc, "source_path", raw, "read") from None
    finally:
        place.close()
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


async def _opened_source(files: _Blocking, roots: tuple[str, ...], raw: str) -> tuple[int, int]:
    """:func:`_open_source` in a worker thread; the file is closed if the caller is cancelled."""
    return await _settled(files, _close_source, _open_source, roots, raw)


def _close_source(opened: tuple[int, int]) -> None:
    os.close(opened[0])


def _changed(field: str, raw: str) -> S3RpcError:
    return S3RpcError(
        ErrorCode.INVALID_REQUEST,
        f"{field} '{shown(raw)}' was replaced by a symbolic link while it was opened",
    )


class _Download:
    """The temporary file a download is written to, beside its destination, and its directory.

    Every call runs in a worker thread and names files relative to the opened directory. Once
    constructed, it owns ``place``: :meth:`close` or :meth:`discard` closes it.
    """

    def __init__(self, place: _Place, raw: str, replaced: os.stat_result | None) -> None:
        self.place = place
        self.raw = raw
        self.temp = f".{place.name[:100]}.{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            # A new file gets the daemon's umask, as any new file; a replaced one keeps its
            # owner (when the daemon may set it) and mode, set before a byte is written.
            self.fd = os.open(self.temp, flags, 0o666, dir_fd=place.dir_fd)
        except OSError as exc:
            raise _os_error(exc, "dest_path", raw, "write in the directory of") from None
        if replaced is not None:
            try:
                if (replaced.st_uid, replaced.st_gid) != (os.getuid(), os.getgid()):
                    with contextlib.suppress(PermissionError):
                        os.fchown(self.fd, replaced.st_uid, replaced.st_gid)
                os.fchmod(self.fd, stat.S_IMODE(replaced.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(self.temp, dir_fd=place.dir_fd)
                os.close(self.fd)  # the place stays the caller's until this returns
                raise _os_error(exc, "dest_path", raw, "write") from None

    def write(self, data: bytes) -> None:
        try:
            with memoryview(data) as view:
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
        except OSError as exc:
            raise _os_error(exc, "dest_path", self.raw, "write") from None

    def finish(self) -> None:
        """fsync, rename into place and fsync the directory, so the new name survives a crash."""
        dir_fd = self.place.dir_fd
        try:
            os.fsync(self.fd)
            os.replace(self.temp, self.place.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            raise _os_error(exc, "dest_path", self.raw, "write") from None
        with contextlib.suppress(OSError):
            sync_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.fsync(sync_fd)
            finally:
                os.close(sync_fd)

    def close(self) -> None:
        try:
            os.close(self.fd)
        finally:
            self.place.close()

    def discard(self) -> None:
        """Remove the temporary file (if it is still there) and close everything."""
        try:
            with contextlib.suppress(OSError):
                os.unlink(self.temp, dir_fd=self.place.dir_fd)
        finally:
            self.close()


def _create_temp(roots: tuple[str, ...], raw: str) -> _Download:
    """The temporary file of a download to ``raw``. Runs in a worker thread."""
    if raw.endswith("/"):
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST, f"dest_path '{shown(raw)}' must name a file, not a directory"
        )
    place = _walk(roots, raw, "dest_path")
    try:
        if not place.name:
            raise _is_directory(raw)
        try:
            replaced: os.stat_result | None = os.stat(
                place.name, dir_fd=place.dir_fd, follow_symlinks=False
            )
        except FileNotFoundError:
            replaced = None
        except OSError as exc:
            raise _os_error(exc, "dest_path", raw, "write") from None
        if replaced is not None:
            mode = replaced.st_mode
            if stat.S_ISDIR(mode):
                raise _is_directory(raw)
            if stat.S_ISLNK(mode):
                raise _changed("dest_path", raw)
            if not stat.S_ISREG(mode):
                raise S3RpcError(
                    ErrorCode.INVALID_REQUEST,
                    f"dest_path '{shown(raw)}' is not a regular file (a FIFO, device or socket "
                    "is never replaced)",
                )
        download = _Download(place, raw, replaced)
    except BaseException:
        place.close()
        raise
    try:
        _still_inside(place.dir_fd, roots, "dest_path", raw)
    except BaseException:
        download.discard()
        raise
    return download


def _is_directory(raw: str) -> S3RpcError:
    return S3RpcError(
        ErrorCode.INVALID_REQUEST, f"dest_path '{shown(raw)}' is a directory, not a file"
    )


async def _settled(
    files: _Blocking, undo: Callable[[T], None], call: Callable[..., T], *args: Any
) -> T:
    """``call(*args)`` in a worker thread. If the caller is cancelled meanwhile, the thread
    (which cannot be stopped) is waited for and what it opened or created is undone."""
    future = files.start(call, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        try:
            await files.drain()
        finally:
            if future.done() and not future.cancelled() and future.exception() is None:
                undo(future.result())
        raise


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


# --- methods ----------------------------------------------------------------------------------


@method("s3.WriteFromFile", WriteFromFileParams)
async def write_from_file(
    manager: BucketManager, bucket: Bucket, params: WriteFromFileParams
) -> WriteResult:
    key = bucket.key(params.pathname)
    files = _Blocking()
    fd, size = await _opened_source(files, manager.local_paths, params.source_path)
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
    download = await _settled(
        files, _Download.discard, _create_temp, manager.local_paths, params.dest_path
    )
    placed = False
    try:
        with s3_errors(f"read {named(params.pathname, bucket)}", physical_bucket=bucket.physical):
            response = await bucket.client.get_object(Bucket=bucket.physical, Key=key)
            announced = response.get("ContentLength")
            body = response["Body"]
            async with body:
                # One chunk being received while the previous one is written.
                await reserve(2 * CHUNK)
                size = await _download(files, body, download)
        if announced is not None and size != announced:
            raise S3RpcError(
                ErrorCode.S3_OPERATION_FAILED,
                f"the object ended after {size} of its {announced} announced bytes",
            )
        await files.run(download.finish)
        placed = True
    finally:
        try:
            await files.drain()
        finally:
            if placed:
                download.close()
            else:
                download.discard()
    return {
        "success": True,
        "pathname": params.pathname,
        "size": size,
        "dest_path": download.place.path,
    }


async def _download(files: _Blocking, body: Any, download: _Download) -> int:
    received = 0
    writing: asyncio.Future[None] | None = None
    while chunk := await read_exactly(body, CHUNK):
        if writing is not None:
            await asyncio.shield(writing)
        writing = files.start(download.write, chunk)
        received += len(chunk)
    if writing is not None:
        await asyncio.shield(writing)
    return received

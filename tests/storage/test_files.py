"""s3.WriteFromFile and s3.ReadToFile through the daemon's socket: streamed, confined to
``s3.local_paths`` (symbolic links and ``..`` resolved), atomic on the destination side."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import RunningDaemon, StartDaemon, daemon_config, run_daemon
from reliability.faultproxy import Fault, FaultProxy, Match
from s3rpc.client import RpcError
from s3rpc.config import ConfigError, config_from_mapping

MIB = 1024 * 1024


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    path = tmp_path / "allowed"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_bytes(b"not for the daemon")
    return path


@pytest.fixture
async def files_daemon(start_daemon: StartDaemon, allowed: Path) -> RunningDaemon:
    return await start_daemon(s3={"local_paths": [str(allowed)]})


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ part to part (a misplaced part would not go unnoticed)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += counter.to_bytes(8, "big") + block
        counter += 1
    return bytes(out[:size])


async def error(daemon: RunningDaemon, method: str, params: dict[str, Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        await daemon.call(method, params)
    return info.value


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".s3rpc-tmp"))


def stored(s3_admin: Any, daemon: RunningDaemon, key: str) -> bytes:
    body: bytes = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key=key)["Body"].read()
    return body


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_small_file_round_trips_through_storage(
    files_daemon: RunningDaemon, allowed: Path, s3_admin: Any, codec: str
) -> None:
    source = allowed / "small.txt"
    source.write_bytes(b"hello from a file\n")
    written = await files_daemon.call(
        "s3.WriteFromFile",
        {"pathname": "f/small.txt", "source_path": str(source)},
        codec=codec,
    )
    assert written["success"] is True
    assert written["pathname"] == "f/small.txt"
    assert written["size"] == source.stat().st_size
    assert written["last_modified"] > 1_600_000_000
    assert stored(s3_admin, files_daemon, "f/small.txt") == source.read_bytes()

    dest = allowed / "copy.txt"
    read = await files_daemon.call(
        "s3.ReadToFile", {"pathname": "f/small.txt", "dest_path": str(dest)}, codec=codec
    )
    assert read == {
        "success": True,
        "pathname": "f/small.txt",
        "size": source.stat().st_size,
        "dest_path": str(dest),
    }
    assert dest.read_bytes() == source.read_bytes()
    assert leftovers(allowed) == []


async def test_multipart_file_round_trips_byte_identical(
    start_daemon: StartDaemon, allowed: Path, s3_admin: Any
) -> None:
    daemon = await start_daemon(
        {"uploads": {"part_size": 5 * MIB, "concurrency": 2}}, s3={"local_paths": [str(allowed)]}
    )
    data = pattern(17 * MIB + 123)
    source = allowed / "big.bin"
    source.write_bytes(data)
    written = await daemon.call(
        "s3.WriteFromFile", {"pathname": "big.bin", "source_path": str(source)}
    )
    assert written["size"] == len(data)
    head = s3_admin.head_object(Bucket=daemon.buckets["uploads"], Key="big.bin")
    assert head["ETag"].strip('"').endswith("-4")  # four parts of 5 MiB: a multipart upload
    assert s3_admin.list_multipart_uploads(Bucket=daemon.buckets["uploads"]).get("Uploads") in (
        None,
        [],
    )

    dest = allowed / "sub" / "big.copy"
    dest.parent.mkdir()
    read = await daemon.call("s3.ReadToFile", {"pathname": "big.bin", "dest_path": str(dest)})
    assert read["size"] == len(data)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert leftovers(dest.parent) == []


async def test_empty_file_round_trips(files_daemon: RunningDaemon, allowed: Path) -> None:
    (allowed / "empty").write_bytes(b"")
    written = await files_daemon.call(
        "s3.WriteFromFile", {"pathname": "empty", "source_path": str(allowed / "empty")}
    )
    assert written["size"] == 0
    dest = allowed / "empty.copy"
    read = await files_daemon.call("s3.ReadToFile", {"pathname": "empty", "dest_path": str(dest)})
    assert read["size"] == 0
    assert dest.exists()
    assert dest.read_bytes() == b""


async def test_read_to_file_replaces_an_existing_file(
    files_daemon: RunningDaemon, allowed: Path
) -> None:
    await files_daemon.call("s3.Write", {"pathname": "new.txt", "content": b"new content"})
    dest = allowed / "existing.txt"
    dest.write_bytes(b"old content that is longer")
    await files_daemon.call("s3.ReadToFile", {"pathname": "new.txt", "dest_path": str(dest)})
    assert dest.read_bytes() == b"new content"
    assert leftovers(allowed) == []


async def test_write_from_file_takes_the_write_options(
    files_daemon: RunningDaemon, allowed: Path, s3_admin: Any
) -> None:
    source = allowed / "report"
    source.write_bytes(b"%PDF-1.7 not really")
    await files_daemon.call(
        "s3.WriteFromFile",
        {
            "pathname": "docs/report",
            "source_path": str(source),
            "metadata": {"owner": "ana"},
            "cache_control": "max-age=60",
            "visibility": "private",
        },
    )
    head = s3_admin.head_object(Bucket=files_daemon.buckets["uploads"], Key="docs/report")
    assert head["ContentType"] == "application/pdf"  # no extension: sniffed from the content
    assert head["Metadata"] == {"owner": "ana"}
    assert head["CacheControl"] == "max-age=60"
    meta = await files_daemon.call("s3.GetMetadata", {"pathname": "docs/report"})
    assert meta["visibility"] == "private"
    assert meta["metadata"] == {"owner": "ana"}


async def test_write_from_file_with_if_none_match_refuses_an_existing_object(
    files_daemon: RunningDaemon, allowed: Path, s3_admin: Any
) -> None:
    await files_daemon.call("s3.Write", {"pathname": "taken.txt", "content": b"first"})
    source = allowed / "second.txt"
    source.write_bytes(b"second")
    exc = await error(
        files_daemon,
        "s3.WriteFromFile",
        {"pathname": "taken.txt", "source_path": str(source), "if_none_match": "*"},
    )
    assert exc.code == "PRECONDITION_FAILED"
    assert stored(s3_admin, files_daemon, "taken.txt") == b"first"


# --- where files may be -----------------------------------------------------------------------


async def test_feature_is_off_without_local_paths(daemon: RunningDaemon, allowed: Path) -> None:
    (allowed / "a.txt").write_bytes(b"a")
    exc = await error(
        daemon, "s3.WriteFromFile", {"pathname": "a.txt", "source_path": str(allowed / "a.txt")}
    )
    assert exc.code == "PERMISSION_DENIED"
    assert "s3.local_paths is empty" in exc.message
    exc = await error(
        daemon, "s3.ReadToFile", {"pathname": "a.txt", "dest_path": str(allowed / "b.txt")}
    )
    assert exc.code == "PERMISSION_DENIED"
    assert not (allowed / "b.txt").exists()


async def test_source_outside_local_paths_is_denied(
    files_daemon: RunningDaemon, outside: Path
) -> None:
    exc = await error(
        files_daemon,
        "s3.WriteFromFile",
        {"pathname": "x.txt", "source_path": str(outside / "secret.txt")},
    )
    assert exc.code == "PERMISSION_DENIED"
    assert "outside s3.local_paths" in exc.message


async def test_dot_dot_escaping_local_paths_is_denied(
    files_daemon: RunningDaemon, allowed: Path, outside: Path
) -> None:
    sneaky = f"{allowed}/../outside/secret.txt"
    exc = await error(files_daemon, "s3.WriteFromFile", {"pathname": "x", "source_path": sneaky})
    assert exc.code == "PERMISSION_DENIED"
    exc = await error(
        files_daemon, "s3.ReadToFile", {"pathname": "x", "dest_path": f"{allowed}/../outside/new"}
    )
    assert exc.code == "PERMISSION_DENIED"
    assert not (outside / "new").exists()


async def test_symlink_escaping_local_paths_is_denied_both_ways(
    files_daemon: RunningDaemon, allowed: Path, outside: Path
) -> None:
    (allowed / "link.txt").symlink_to(outside / "secret.txt")
    (allowed / "linkdir").symlink_to(outside, target_is_directory=True)
    await files_daemon.call("s3.Write", {"pathname": "obj.txt", "content": b"overwrite?"})

    exc = await error(
        files_daemon,
        "s3.WriteFromFile",
        {"pathname": "leak.txt", "source_path": str(allowed / "link.txt")},
    )
    assert exc.code == "PERMISSION_DENIED"
    assert "once symbolic links are resolved" in exc.message
    exists = await files_daemon.call("s3.Exists", {"pathname": "leak.txt"})
    assert exists == {"exists": False}

    for dest in (allowed / "link.txt", allowed / "linkdir" / "planted.txt"):
        exc = await error(
            files_daemon, "s3.ReadToFile", {"pathname": "obj.txt", "dest_path": str(dest)}
        )
        assert exc.code == "PERMISSION_DENIED"
    assert (outside / "secret.txt").read_bytes() == b"not for the daemon"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_symlink_inside_local_paths_is_followed(
    files_daemon: RunningDaemon, allowed: Path
) -> None:
    (allowed / "real.txt").write_bytes(b"real")
    (allowed / "alias.txt").symlink_to(allowed / "real.txt")
    written = await files_daemon.call(
        "s3.WriteFromFile", {"pathname": "alias.txt", "source_path": str(allowed / "alias.txt")}
    )
    assert written["size"] == 4


async def test_relative_path_is_denied(files_daemon: RunningDaemon, allowed: Path) -> None:
    (allowed / "rel.txt").write_bytes(b"r")
    cwd = os.getcwd()
    os.chdir(allowed)  # even where it would resolve into local_paths
    try:
        exc = await error(
            files_daemon, "s3.WriteFromFile", {"pathname": "rel.txt", "source_path": "rel.txt"}
        )
    finally:
        os.chdir(cwd)
    assert exc.code == "PERMISSION_DENIED"
    assert "absolute path" in exc.message


async def test_missing_source_is_file_not_found(files_daemon: RunningDaemon, allowed: Path) -> None:
    exc = await error(
        files_daemon,
        "s3.WriteFromFile",
        {"pathname": "m.txt", "source_path": str(allowed / "missing.txt")},
    )
    assert exc.code == "FILE_NOT_FOUND"
    assert "does not exist" in exc.message


async def test_missing_file_outside_local_paths_is_denied_not_found(
    files_daemon: RunningDaemon, outside: Path
) -> None:
    # Existence outside local_paths is not revealed.
    exc = await error(
        files_daemon,
        "s3.WriteFromFile",
        {"pathname": "m.txt", "source_path": str(outside / "nothing.txt")},
    )
    assert exc.code == "PERMISSION_DENIED"


async def test_directory_as_source_is_refused(files_daemon: RunningDaemon, allowed: Path) -> None:
    (allowed / "dir").mkdir()
    for path in (allowed / "dir", allowed):
        exc = await error(
            files_daemon, "s3.WriteFromFile", {"pathname": "d", "source_path": str(path)}
        )
        assert exc.code == "INVALID_REQUEST"
        assert "is a directory" in exc.message


async def test_fifo_as_source_is_refused_without_hanging(
    files_daemon: RunningDaemon, allowed: Path
) -> None:
    os.mkfifo(allowed / "pipe")
    exc = await error(
        files_daemon, "s3.WriteFromFile", {"pathname": "p", "source_path": str(allowed / "pipe")}
    )
    assert exc.code == "INVALID_REQUEST"
    assert "not a regular file" in exc.message


async def test_bad_destinations_are_refused(files_daemon: RunningDaemon, allowed: Path) -> None:
    await files_daemon.call("s3.Write", {"pathname": "o.txt", "content": b"o"})
    (allowed / "adir").mkdir()
    cases = {
        str(allowed / "adir"): "INVALID_REQUEST",
        str(allowed / "adir") + "/": "INVALID_REQUEST",
        str(allowed / "nodir" / "f.txt"): "FILE_NOT_FOUND",
        "relative.txt": "PERMISSION_DENIED",
    }
    for dest, code in cases.items():
        exc = await error(files_daemon, "s3.ReadToFile", {"pathname": "o.txt", "dest_path": dest})
        assert exc.code == code, dest
    assert not (allowed / "nodir").exists()


async def test_missing_object_leaves_the_destination_untouched(
    files_daemon: RunningDaemon, allowed: Path
) -> None:
    dest = allowed / "keep.txt"
    dest.write_bytes(b"keep me")
    exc = await error(
        files_daemon, "s3.ReadToFile", {"pathname": "nothing.txt", "dest_path": str(dest)}
    )
    assert exc.code == "FILE_NOT_FOUND"
    assert dest.read_bytes() == b"keep me"
    assert leftovers(allowed) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source_path": ""}, "source_path"),
        ({"source_path": "/a\x00b"}, "source_path"),
        ({"source_path": "/" + "a" * 5000}, "source_path"),
        ({"source_path": 5}, "source_path"),
        ({}, "source_path"),
    ],
)
async def test_malformed_paths_are_invalid_requests(
    files_daemon: RunningDaemon, params: dict[str, Any], field: str
) -> None:
    exc = await error(files_daemon, "s3.WriteFromFile", {"pathname": "x", **params})
    assert exc.code == "INVALID_REQUEST"
    assert f"field '{field}'" in exc.message


# --- streaming and failures -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def proxied(
    s3_endpoint: str,
    physical_buckets: Callable[..., str],
    allowed: Path,
    bucket: dict[str, Any],
) -> AsyncIterator[tuple[RunningDaemon, FaultProxy]]:
    proxy = FaultProxy(upstream=s3_endpoint).start()
    try:
        physical = physical_buckets("uploads")
        mapping = daemon_config(
            proxy.endpoint,
            {"uploads": {"bucket": physical, **bucket}},
            s3={"local_paths": [str(allowed)]},
        )
        mapping["s3"]["servers"]["local"].update({"max_attempts": 1, "read_timeout": 5})
        async with run_daemon(config_from_mapping(mapping), {"uploads": physical}) as daemon:
            yield daemon, proxy
    finally:
        proxy.stop()


async def test_write_from_file_keeps_at_most_concurrency_parts_in_flight(
    s3_endpoint: str, physical_buckets: Callable[..., str], allowed: Path, s3_admin: Any
) -> None:
    data = pattern(26 * MIB, seed=1)
    (allowed / "six.bin").write_bytes(data)
    spec = {"part_size": 5 * MIB, "concurrency": 2}
    async with proxied(s3_endpoint, physical_buckets, allowed, spec) as (daemon, proxy):
        proxy.reset_stats()
        await daemon.call(
            "s3.WriteFromFile", {"pathname": "six.bin", "source_path": str(allowed / "six.bin")}
        )
        assert proxy.stats.count("UploadPart") == 6
        assert 1 <= proxy.stats.peak_inflight <= 2
        assert stored(s3_admin, daemon, "six.bin") == data


async def test_failed_upload_part_aborts_and_stores_nothing(
    s3_endpoint: str, physical_buckets: Callable[..., str], allowed: Path, s3_admin: Any
) -> None:
    (allowed / "f.bin").write_bytes(pattern(12 * MIB, seed=2))
    async with proxied(s3_endpoint, physical_buckets, allowed, {}) as (daemon, proxy):
        proxy.add_fault(Fault("status_500", match=Match(op="UploadPart"), times=None))
        exc = await error(
            daemon, "s3.WriteFromFile", {"pathname": "f.bin", "source_path": str(allowed / "f.bin")}
        )
        assert exc.code == "S3_OPERATION_FAILED"
        proxy.clear()
        uploads = s3_admin.list_multipart_uploads(Bucket=daemon.buckets["uploads"])
        assert uploads.get("Uploads") in (None, [])
        assert (await daemon.call("s3.Exists", {"pathname": "f.bin"})) == {"exists": False}


async def test_body_cut_mid_download_removes_the_temp_file_and_keeps_the_old_one(
    s3_endpoint: str, physical_buckets: Callable[..., str], allowed: Path
) -> None:
    async with proxied(s3_endpoint, physical_buckets, allowed, {}) as (daemon, proxy):
        await daemon.call("s3.Write", {"pathname": "cut.bin", "content": pattern(6 * MIB)})
        dest = allowed / "cut.bin"
        dest.write_bytes(b"previous")
        proxy.add_fault(Fault("reset_response", match=Match(op="GetObject")))
        exc = await error(daemon, "s3.ReadToFile", {"pathname": "cut.bin", "dest_path": str(dest)})
        assert exc.code == "S3_OPERATION_FAILED"
        assert dest.read_bytes() == b"previous"
        assert leftovers(allowed) == []


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["relative/dir", "", "./x"])
def test_config_refuses_local_paths_that_are_not_absolute(entry: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"s3": {"local_paths": [entry]}})
    assert "s3.local_paths" in str(info.value)


def test_config_refuses_local_paths_that_is_not_a_list() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"s3": {"local_paths": "/srv/uploads"}})
    assert "s3.local_paths" in str(info.value)


def test_config_accepts_absolute_local_paths() -> None:
    config = config_from_mapping({"s3": {"local_paths": ["/srv/uploads/", "/tmp"]}})
    assert config.s3.local_paths == ("/srv/uploads", "/tmp")


# --- issue 14: opened component by component, never outside, never leaving anything ------------


def temp_files(*directories: Path) -> list[str]:
    return sorted(
        str(p) for d in directories for p in d.rglob("*") if p.name.endswith(".s3rpc-tmp")
    )


def tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


class Swapper(threading.Thread):
    """Swaps ``directory`` for a symbolic link to ``target`` and back, until stopped."""

    def __init__(self, directory: Path, target: Path) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.target = target
        self.aside = directory.with_name(directory.name + ".aside")
        self.stop = threading.Event()
        self.swaps = 0

        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                os.rename(self.directory, self.aside)
                os.symlink(self.target, self.directory)
                time.sleep(0.0005)  # a while as a link, a while as the directory
                os.unlink(self.directory)
                os.rename(self.aside, self.directory)
                time.sleep(0.0005)
                self.swaps += 1
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Swapper:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=10)
        assert not self.is_alive()
        assert self.error is None, self.error


@pytest.mark.parametrize("method", ["s3.ReadToFile", "s3.WriteFromFile"])
async def test_a_directory_swapped_for_a_symlink_never_leads_outside(
    files_daemon: RunningDaemon, allowed: Path, outside: Path, s3_admin: Any, method: str
) -> None:
    secret = (outside / "secret.txt").read_bytes()
    before = tree(outside)
    (allowed / "d").mkdir()
    (allowed / "d" / "secret.txt").write_bytes(b"inside, may be uploaded")
    await files_daemon.call("s3.Write", {"pathname": "obj.txt", "content": b"downloaded"})
    codes: dict[str, int] = {}
    client = await files_daemon.client()

    async def one(index: int) -> None:
        if method == "s3.ReadToFile":
            params = {"pathname": "obj.txt", "dest_path": str(allowed / "d" / f"f{index}.txt")}
        else:
            params = {"pathname": f"up/{index}", "source_path": str(allowed / "d" / "secret.txt")}
        try:
            await client.call(method, params, timeout=30)
            code = "OK"
        except RpcError as exc:
            code = exc.code
        codes[code] = codes.get(code, 0) + 1

    with Swapper(allowed / "d", outside) as swapper:
        for start in range(0, 160, 8):
            await asyncio.gather(*(one(i) for i in range(start, start + 8)))
    assert swapper.swaps > 0
    assert tree(outside) == before  # nothing created (or left) outside
    assert (outside / "secret.txt").read_bytes() == secret
    assert temp_files(allowed, outside) == []
    assert set(codes) <= {"OK", "FILE_NOT_FOUND", "PERMISSION_DENIED"}, codes
    listed = s3_admin.list_objects_v2(Bucket=files_daemon.buckets["uploads"], Prefix="up/")
    for item in listed.get("Contents", []):
        assert stored(s3_admin, files_daemon, item["Key"]) == b"inside, may be uploaded"


@pytest.mark.parametrize("kind", ["fifo", "device"])
async def test_fifo_or_device_destination_is_refused_and_left_alone(
    files_daemon: RunningDaemon, allowed: Path, kind: str
) -> None:
    dest = allowed / kind
    if kind == "fifo":
        os.mkfifo(dest)
    else:
        try:
            os.mknod(dest, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
        except PermissionError:
            pytest.skip("creating a device node needs root")
    await files_daemon.call("s3.Write", {"pathname": "obj.txt", "content": b"content"})
    exc = await error(
        files_daemon, "s3.ReadToFile", {"pathname": "obj.txt", "dest_path": str(dest)}
    )
    assert exc.code == "INVALID_REQUEST"
    assert str(dest) in exc.message
    assert "not a regular file" in exc.message
    mode = os.lstat(dest).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)
    assert temp_files(allowed) == []


async def test_read_to_file_keeps_the_mode_of_the_file_it_replaces(
    files_daemon: RunningDaemon, allowed: Path
) -> None:
    await files_daemon.call("s3.Write", {"pathname": "obj.txt", "content": b"new secret"})
    dest = allowed / "private.txt"
    dest.write_bytes(b"old secret")
    dest.chmod(0o600)
    fresh = allowed / "fresh.txt"
    await files_daemon.call("s3.ReadToFile", {"pathname": "obj.txt", "dest_path": str(dest)})
    await files_daemon.call("s3.ReadToFile", {"pathname": "obj.txt", "dest_path": str(fresh)})
    assert dest.read_bytes() == b"new secret"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # a new file: the umask's


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root: mount); skipped where it cannot be mounted."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


async def test_full_disk_is_no_space_left_and_leaves_the_destination_as_it_was(
    start_daemon: StartDaemon, small_filesystem: Path
) -> None:
    daemon = await start_daemon(s3={"local_paths": [str(small_filesystem)]})
    await daemon.call("s3.Write", {"pathname": "big.bin", "content": pattern(3 * MIB)})
    dest = small_filesystem / "big.bin"
    dest.write_bytes(b"previous")
    exc = await error(daemon, "s3.ReadToFile", {"pathname": "big.bin", "dest_path": str(dest)})
    assert exc.code == "NO_SPACE_LEFT"
    assert str(dest) in exc.message
    assert dest.read_bytes() == b"previous"
    assert temp_files(small_filesystem) == []
    # The connection and the daemon go on: a small object still fits.
    await daemon.call("s3.Write", {"pathname": "small.bin", "content": b"fits"})
    await daemon.call("s3.ReadToFile", {"pathname": "small.bin", "dest_path": str(dest)})
    assert dest.read_bytes() == b"fits"


async def test_read_only_filesystem_is_permission_denied(
    start_daemon: StartDaemon, small_filesystem: Path
) -> None:
    daemon = await start_daemon(s3={"local_paths": [str(small_filesystem)]})
    await daemon.call("s3.Write", {"pathname": "obj.txt", "content": b"content"})
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True, timeout=30)
    dest = small_filesystem / "obj.txt"
    exc = await error(daemon, "s3.ReadToFile", {"pathname": "obj.txt", "dest_path": str(dest)})
    assert exc.code == "PERMISSION_DENIED"
    assert "read-only" in exc.message
    assert not dest.exists()


async def test_symlinked_destination_inside_replaces_its_target(
    files_daemon: RunningDaemon, allowed: Path
) -> None:
    await files_daemon.call("s3.Write", {"pathname": "obj.txt", "content": b"new"})
    (allowed / "real.txt").write_bytes(b"old")
    (allowed / "sub").mkdir()
    (allowed / "sub" / "alias.txt").symlink_to("../real.txt")
    answer = await files_daemon.call(
        "s3.ReadToFile", {"pathname": "obj.txt", "dest_path": str(allowed / "sub" / "alias.txt")}
    )
    assert answer["dest_path"] == os.path.realpath(allowed / "real.txt")
    assert (allowed / "real.txt").read_bytes() == b"new"
    assert (allowed / "sub" / "alias.txt").is_symlink()
    assert temp_files(allowed) == []


async def test_read_to_file_cut_by_its_deadline_leaves_no_temp_file(
    s3_endpoint: str, physical_buckets: Callable[..., str], allowed: Path
) -> None:
    spec = {"operation_timeout": 1}
    async with proxied(s3_endpoint, physical_buckets, allowed, spec) as (daemon, proxy):
        await daemon.call("s3.Write", {"pathname": "slow.bin", "content": pattern(3 * MIB)})
        proxy.add_fault(Fault("delay", match=Match(op="GetObject"), delay=3))
        dest = allowed / "slow.bin"
        exc = await error(daemon, "s3.ReadToFile", {"pathname": "slow.bin", "dest_path": str(dest)})
        assert exc.code == "OPERATION_TIMEOUT"
        assert temp_files(allowed) == []
        assert not dest.exists()


async def test_cancelled_while_the_temp_file_is_created_removes_it(allowed: Path) -> None:
    # The thread creating the temporary file cannot be stopped: what it made is undone once it
    # has finished. (Not through the socket: nothing there can cancel at exactly this moment.)
    from s3rpc.storage import files

    started = threading.Event()
    release = threading.Event()

    def slow_create(roots: tuple[str, ...], raw: str) -> Any:
        started.set()
        release.wait(10)
        return files._create_temp(roots, raw)

    blocking = files._Blocking()
    task = asyncio.create_task(
        files._settled(
            blocking, files._Download.discard, slow_create, (str(allowed),), str(allowed / "x")
        )
    )
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert temp_files(allowed) == []
    assert list(allowed.iterdir()) == []

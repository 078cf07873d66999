"""Chunked upload sessions (s3.UploadStart / UploadChunk / UploadComplete / UploadAbort), through
the daemon's socket against moto."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import (
    RunningDaemon,
    S3Backend,
    StartDaemon,
    daemon_config,
    head_part,
    run_daemon,
)
from tests.storage.conftest import MakeStorage, server_spec

from s3rpc.client import AsyncClient, CodecName, RpcError
from s3rpc.config import config_from_mapping
from s3rpc.errors import S3RpcError

MIB = 1024 * 1024
WAIT = 20.0


async def start(client: AsyncClient, pathname: str, **options: Any) -> str:
    answer = await client.call("s3.UploadStart", {"pathname": pathname, **options})
    upload_id = answer["upload_id"]
    assert isinstance(upload_id, str)
    return upload_id


async def send(client: AsyncClient, upload_id: str, chunks: list[bytes]) -> int:
    received = 0
    for chunk in chunks:
        answer = await client.call("s3.UploadChunk", {"upload_id": upload_id, "content": chunk})
        received += len(chunk)
        assert answer == {"upload_id": upload_id, "received": received}
    return received


def uploads(s3_admin: Any, bucket: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return listed


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def split_unevenly(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, offset = [], 0
    for size in sizes:
        chunks.append(data[offset : offset + size])
        offset += size
    chunks.append(data[offset:])
    return [chunk for chunk in chunks if chunk]


@pytest.fixture
async def big_parts(start_daemon: StartDaemon) -> RunningDaemon:
    return await start_daemon({"uploads": {"visibility": "public", "part_size": 5 * MIB}})


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_uneven_chunks_make_a_byte_exact_multipart_object(
    big_parts: RunningDaemon, s3_admin: Any, s3_backend: S3Backend, codec: CodecName
) -> None:
    content = os.urandom(12 * MIB + 12345)
    # Uneven: a tiny chunk, chunks straddling part boundaries, one holding a whole part and more.
    chunks = split_unevenly(content, [1, 3 * MIB + 7, 1 * MIB, 6 * MIB + 11, 333])
    client = await big_parts.client(codec)
    upload_id = await start(client, "big/session.bin")
    assert await send(client, upload_id, chunks) == len(content)
    written = await client.call("s3.UploadComplete", {"upload_id": upload_id})
    assert written["success"] is True
    assert written["pathname"] == "big/session.bin"
    assert written["size"] == len(content)
    assert isinstance(written["last_modified"], int)
    physical = big_parts.buckets["uploads"]
    stored = s3_admin.get_object(Bucket=physical, Key="big/session.bin")
    assert stored["Body"].read() == content
    assert stored["ETag"].strip('"').endswith("-3")  # 5 MiB + 5 MiB + the rest
    first = head_part(s3_admin, s3_backend, physical, "big/session.bin", 1)
    if first is not None:
        assert first["ContentLength"] == 5 * MIB
    assert uploads(s3_admin, physical) == []
    read = await client.call("s3.Read", {"pathname": "big/session.bin"})
    assert read["content"] == content


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_object_smaller_than_a_part_is_one_plain_put(
    daemon: RunningDaemon, s3_admin: Any, codec: CodecName
) -> None:
    client = await daemon.client(codec)
    upload_id = await start(client, "small.txt")
    await send(client, upload_id, [b"hello ", b"", b"world\n"])
    written = await client.call("s3.UploadComplete", {"upload_id": upload_id})
    assert written["size"] == 12
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="small.txt")
    assert stored["Body"].read() == b"hello world\n"
    assert "-" not in stored["ETag"]
    assert stored["ContentType"].startswith("text/plain")


async def test_empty_session_writes_an_empty_object(daemon: RunningDaemon, s3_admin: Any) -> None:
    client = await daemon.client("msgpack")
    upload_id = await start(client, "empty.bin")
    written = await client.call("s3.UploadComplete", {"upload_id": upload_id})
    assert written["size"] == 0
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="empty.bin")
    assert stored["Body"].read() == b""


async def test_write_options_of_upload_start_reach_the_object(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    client = await daemon.client("msgpack")
    upload_id = await start(
        client,
        "opts/data",
        content_type="application/x-custom",
        cache_control="max-age=60",
        metadata={"owner": "alice"},
        visibility="private",
    )
    await send(client, upload_id, [b"payload"])
    await client.call("s3.UploadComplete", {"upload_id": upload_id})
    head = s3_admin.head_object(Bucket=daemon.buckets["uploads"], Key="opts/data")
    assert head["ContentType"] == "application/x-custom"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"owner": "alice"}


async def test_completed_session_id_is_no_longer_usable(daemon: RunningDaemon) -> None:
    client = await daemon.client()
    upload_id = await start(client, "done.txt")
    await client.call("s3.UploadComplete", {"upload_id": upload_id})
    with pytest.raises(RpcError) as raised:
        await client.call("s3.UploadChunk", {"upload_id": upload_id, "content": b"late"})
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "completed" in raised.value.message
    with pytest.raises(RpcError) as again:
        await client.call("s3.UploadAbort", {"upload_id": upload_id})
    assert again.value.code == "UPLOAD_NOT_FOUND"


async def test_abort_leaves_no_multipart_upload_and_no_object(
    big_parts: RunningDaemon, s3_admin: Any
) -> None:
    physical = big_parts.buckets["uploads"]
    client = await big_parts.client("msgpack")
    upload_id = await start(client, "aborted.bin")
    await send(client, upload_id, [os.urandom(6 * MIB)])  # one part uploaded, 1 MiB buffered
    assert [u["Key"] for u in uploads(s3_admin, physical)] == ["aborted.bin"]
    assert await client.call("s3.UploadAbort", {"upload_id": upload_id}) == {"success": True}
    assert uploads(s3_admin, physical) == []
    assert s3_admin.list_objects_v2(Bucket=physical).get("KeyCount", 0) == 0
    with pytest.raises(RpcError) as raised:
        await client.call("s3.UploadChunk", {"upload_id": upload_id, "content": b"x"})
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "aborted" in raised.value.message
    # Aborting again is harmless: the session is gone either way.
    assert await client.call("s3.UploadAbort", {"upload_id": upload_id}) == {"success": True}


async def test_idle_session_expires_after_the_ttl_and_its_upload_is_aborted(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start_daemon({"uploads": {"part_size": 5 * MIB}}, s3={"upload_session_ttl": 0.5})
    physical = daemon.buckets["uploads"]
    client = await daemon.client("msgpack")
    upload_id = await start(client, "idle.bin")
    await send(client, upload_id, [os.urandom(5 * MIB + 1)])
    assert len(uploads(s3_admin, physical)) == 1
    await eventually(lambda: uploads(s3_admin, physical) == [], "the idle upload to be aborted")
    with pytest.raises(RpcError) as raised:
        await client.call("s3.UploadChunk", {"upload_id": upload_id, "content": b"x"})
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "s3.upload_session_ttl" in raised.value.message
    with pytest.raises(RpcError) as completed:
        await client.call("s3.UploadComplete", {"upload_id": upload_id})
    assert completed.value.code == "UPLOAD_NOT_FOUND"
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=physical)


async def test_active_session_outlives_the_ttl(start_daemon: StartDaemon, s3_admin: Any) -> None:
    daemon = await start_daemon({"uploads": {}}, s3={"upload_session_ttl": 0.6})
    client = await daemon.client("msgpack")
    upload_id = await start(client, "active.txt")
    for i in range(12):  # 12 x 0.15 s: twice the ttl, never idle for long
        await send_one(client, upload_id, b"%d," % i)
        await asyncio.sleep(0.15)
    await client.call("s3.UploadComplete", {"upload_id": upload_id})
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="active.txt")
    assert stored["Body"].read() == b"".join(b"%d," % i for i in range(12))


async def send_one(client: AsyncClient, upload_id: str, chunk: bytes, **extra: Any) -> Any:
    return await client.call("s3.UploadChunk", {"upload_id": upload_id, "content": chunk, **extra})


@pytest.mark.parametrize("method", ["s3.UploadChunk", "s3.UploadComplete", "s3.UploadAbort"])
async def test_unknown_upload_id_is_upload_not_found(daemon: RunningDaemon, method: str) -> None:
    params: dict[str, Any] = {"upload_id": "not-a-session-id"}
    if method == "s3.UploadChunk":
        params["content"] = b"x"
    with pytest.raises(RpcError) as raised:
        await daemon.call(method, params)
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "no such upload session" in raised.value.message


async def test_upload_ids_are_long_random_and_distinct(daemon: RunningDaemon) -> None:
    client = await daemon.client()
    ids = [await start(client, f"ids/{i}") for i in range(20)]
    assert len(set(ids)) == len(ids)
    assert all(len(upload_id) >= 32 for upload_id in ids)
    for upload_id in ids:
        await client.call("s3.UploadAbort", {"upload_id": upload_id})


async def test_pipelined_chunks_with_offsets_apply_in_order(
    big_parts: RunningDaemon, s3_admin: Any
) -> None:
    # Under JSON a large chunk decodes (base64) in steps, so the small ones sent after it reach
    # the session first; their offsets make them wait for it.
    content = os.urandom(11 * MIB + 5)
    chunks = split_unevenly(content, [6 * MIB, 7, 100, 2 * MIB, 1, 64 * 1024])
    client = await big_parts.client("json")
    upload_id = await start(client, "pipelined.bin")
    offsets = [sum(map(len, chunks[:i])) for i in range(len(chunks))]
    answers = await asyncio.gather(
        *(
            send_one(client, upload_id, chunk, offset=offset)
            for chunk, offset in zip(chunks, offsets, strict=True)
        )
    )
    ends = [offset + len(chunk) for offset, chunk in zip(offsets, chunks, strict=True)]
    assert [answer["received"] for answer in answers] == ends
    await client.call("s3.UploadComplete", {"upload_id": upload_id})
    stored = s3_admin.get_object(Bucket=big_parts.buckets["uploads"], Key="pipelined.bin")
    assert stored["Body"].read() == content


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_concurrent_chunks_without_offsets_never_interleave(
    big_parts: RunningDaemon, s3_admin: Any, codec: CodecName
) -> None:
    sizes = [3 * MIB, 17, 2 * MIB + 3, 5, 1 * MIB, 4 * MIB + 1, 900]
    chunks = [bytes([65 + i]) * size for i, size in enumerate(sizes)]
    client = await big_parts.client(codec)
    upload_id = await start(client, "concurrent.bin")
    await asyncio.gather(*(send_one(client, upload_id, chunk) for chunk in chunks))
    written = await client.call("s3.UploadComplete", {"upload_id": upload_id})
    assert written["size"] == sum(sizes)
    stored = s3_admin.get_object(Bucket=big_parts.buckets["uploads"], Key="concurrent.bin")
    body = stored["Body"].read()
    # Every chunk lands whole: the object is the chunks in some order, each contiguous.
    position, seen = 0, []
    while position < len(body):
        letter = body[position]
        size = sizes[letter - 65]
        assert body[position : position + size] == bytes([letter]) * size
        seen.append(letter)
        position += size
    assert sorted(seen) == [65 + i for i in range(len(sizes))]


async def test_wrong_offset_is_refused_and_the_session_goes_on(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    client = await daemon.client("msgpack")
    upload_id = await start(client, "offsets.txt")
    await send_one(client, upload_id, b"abc", offset=0)
    with pytest.raises(RpcError) as repeated:
        await send_one(client, upload_id, b"abc", offset=0)  # a retried, already applied chunk
    assert repeated.value.code == "INVALID_REQUEST"
    assert "received 3 bytes" in repeated.value.message
    answer = await send_one(client, upload_id, b"def", offset=3)
    assert answer["received"] == 6
    await client.call("s3.UploadComplete", {"upload_id": upload_id})
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="offsets.txt")
    assert stored["Body"].read() == b"abcdef"


async def test_sessions_beyond_max_upload_sessions_are_refused(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon({"uploads": {}}, s3={"max_upload_sessions": 2})
    client = await daemon.client()
    first = await start(client, "a")
    await start(client, "b")
    with pytest.raises(RpcError) as raised:
        await start(client, "c")
    assert raised.value.code == "TOO_MANY_UPLOADS"
    assert "s3.max_upload_sessions" in raised.value.message
    await client.call("s3.UploadAbort", {"upload_id": first})
    await start(client, "c")  # room again


async def test_chunk_over_max_upload_buffer_is_refused_and_nothing_applied(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start_daemon({"uploads": {}}, s3={"max_upload_buffer": 1 * MIB})
    client = await daemon.client("msgpack")
    holder = await start(client, "holder.bin")
    await send_one(client, holder, b"h" * (MIB // 2))
    other = await start(client, "other.bin")
    with pytest.raises(RpcError) as raised:
        await send_one(client, other, b"o" * (MIB // 2 + 1))
    assert raised.value.code == "TOO_MANY_UPLOADS"
    assert "s3.max_upload_buffer" in raised.value.message
    assert (await send_one(client, other, b"o" * 100))["received"] == 100  # session intact
    await client.call("s3.UploadAbort", {"upload_id": holder})  # frees its buffer
    assert (await send_one(client, other, b"o" * (MIB // 2)))["received"] == MIB // 2 + 100
    await client.call("s3.UploadComplete", {"upload_id": other})
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="other.bin")
    assert stored["Body"].read() == b"o" * (MIB // 2 + 100)


async def test_bad_visibility_is_refused_at_start(daemon: RunningDaemon) -> None:
    with pytest.raises(RpcError) as raised:
        await daemon.call("s3.UploadStart", {"pathname": "v.txt", "visibility": "world"})
    assert raised.value.code == "INVALID_VISIBILITY"


async def test_daemon_shutdown_aborts_open_sessions(
    s3_endpoint: str, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    physical = physical_buckets("shut")
    config = config_from_mapping(
        daemon_config(s3_endpoint, {"uploads": {"bucket": physical, "part_size": 5 * MIB}})
    )
    async with run_daemon(config, {"uploads": physical}) as daemon:
        client = await daemon.client("msgpack")
        ids = [await start(client, f"open/{i}.bin") for i in range(3)]
        for upload_id in ids:
            await send_one(client, upload_id, os.urandom(5 * MIB + 10))
        assert len(uploads(s3_admin, physical)) == 3
    # Leaving the block shut the daemon down.
    assert uploads(s3_admin, physical) == []
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=physical)


async def test_unregistering_a_bucket_aborts_its_sessions(
    daemon: RunningDaemon, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    physical = physical_buckets("unreg")
    client = await daemon.client("msgpack")
    await client.call(
        "s3.RegisterBucket",
        {"name": "runtime", "server": "local", "bucket": physical, "part_size": 5 * MIB},
    )
    upload_id = await start(client, "r.bin", bucket="runtime")
    await send_one(client, upload_id, os.urandom(5 * MIB + 1))
    assert len(uploads(s3_admin, physical)) == 1
    await client.call("s3.UnregisterBucket", {"name": "runtime"})
    assert uploads(s3_admin, physical) == []
    with pytest.raises(RpcError) as raised:
        await send_one(client, upload_id, b"x")
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "unregistered" in raised.value.message


@pytest.mark.parametrize(
    ("change", "survives"),
    [
        ({"max_concurrent_operations": 7, "visibility": "public"}, True),
        ({"prefix": "moved"}, False),
    ],
    ids=["limits-changed", "prefix-changed"],
)
async def test_a_reload_keeps_an_upload_session_going_unless_where_it_stores_changed(
    make_storage: MakeStorage,
    s3_endpoint: str,
    s3_admin: Any,
    change: dict[str, Any],
    survives: bool,
) -> None:
    storage = await make_storage({"uploads": {"part_size": 5 * MIB}})
    physical = storage.physical["uploads"]
    upload_id = (
        await storage.call("s3.UploadStart", {"pathname": "r/s.bin", "bucket": "uploads"})
    )["upload_id"]
    first, second = os.urandom(6 * MIB), os.urandom(1000)
    await storage.call("s3.UploadChunk", {"upload_id": upload_id, "content": first})
    spec = {"server": "local", "bucket": physical, "part_size": 5 * MIB, **change}
    reloaded = config_from_mapping(
        {"s3": {"servers": {"local": server_spec(s3_endpoint)}, "buckets": {"uploads": spec}}}
    )
    assert (await storage.manager.reload(reloaded.s3)).changed == ["uploads"]
    if survives:
        await storage.call("s3.UploadChunk", {"upload_id": upload_id, "content": second})
        done = await storage.call("s3.UploadComplete", {"upload_id": upload_id})
        assert done["size"] == len(first) + len(second)
        stored = s3_admin.get_object(Bucket=physical, Key="r/s.bin")["Body"].read()
        assert stored == first + second
    else:
        await eventually(
            lambda: storage.manager.sessions.find(upload_id) is None, "the session's abort"
        )
        with pytest.raises(S3RpcError) as info:
            await storage.call("s3.UploadChunk", {"upload_id": upload_id, "content": second})
        assert info.value.code.value == "UPLOAD_NOT_FOUND"
        assert "given other storage by a reload" in info.value.message
    assert uploads(s3_admin, physical) == []

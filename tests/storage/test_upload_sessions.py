"""Chunked upload sessions (s3.UploadStart / UploadChunk / UploadComplete / UploadAbort), through
the daemon's socket against moto."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import RunningDaemon, StartDaemon

from s3rpc.client import AsyncClient, CodecName, RpcError

MIB = 1024 * 1024
WAIT = 20.0


async def start(client: AsyncClient, pathname: str, **options: Any) -> str:
    answer = await client.call("s3.UploadStart", {"pathname": pathname, **options})
    upload_id = answer["upload_id"]
    assert isinstance(upload_id, str)
    return upload_id


async def send(client: AsyncClient, upload_id: str, chunks: list[bytes], start: int = 0) -> int:
    received = start
    for chunk in chunks:
        answer = await client.call(
            "s3.UploadChunk", {"upload_id": upload_id, "content": chunk, "offset": received}
        )
        received += len(chunk)
        assert answer["upload_id"] == upload_id
        assert answer["received"] == received
    return received


async def complete(client: AsyncClient, upload_id: str, size: int) -> Any:
    return await client.call("s3.UploadComplete", {"upload_id": upload_id, "size": size})


async def stop(daemon: RunningDaemon) -> None:
    """Stop a daemon of ``start_daemon`` now, as a restart would (its fixture's teardown then
    has nothing left to do)."""
    for client in list(daemon.clients):
        await client.close()
    daemon.clients.clear()
    daemon.app.should_exit.set()  # not request_shutdown: a second one exits the process
    await eventually(lambda: daemon.app.buckets is None, "the daemon to stop")


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
    big_parts: RunningDaemon, s3_admin: Any, codec: CodecName
) -> None:
    content = os.urandom(12 * MIB + 12345)
    # Uneven: a tiny chunk, chunks straddling part boundaries, one holding a whole part and more.
    chunks = split_unevenly(content, [1, 3 * MIB + 7, 1 * MIB, 6 * MIB + 11, 333])
    client = await big_parts.client(codec)
    upload_id = await start(client, "big/session.bin")
    assert await send(client, upload_id, chunks) == len(content)
    written = await complete(client, upload_id, len(content))
    assert written["success"] is True
    assert written["pathname"] == "big/session.bin"
    assert written["size"] == len(content)
    assert isinstance(written["last_modified"], int)
    physical = big_parts.buckets["uploads"]
    stored = s3_admin.get_object(Bucket=physical, Key="big/session.bin")
    assert stored["Body"].read() == content
    assert stored["ETag"].strip('"').endswith("-3")  # 5 MiB + 5 MiB + the rest
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
    written = await complete(client, upload_id, 12)
    assert written["size"] == 12
    physical = daemon.buckets["uploads"]
    stored = s3_admin.get_object(Bucket=physical, Key="small.txt")
    assert stored["Body"].read() == b"hello world\n"
    assert "-" not in stored["ETag"]
    assert stored["ContentType"].startswith("text/plain")
    assert uploads(s3_admin, physical) == []  # the session's multipart upload is gone


async def test_small_object_without_extension_is_sniffed(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    client = await daemon.client("msgpack")
    upload_id = await start(client, "noext")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    await send(client, upload_id, [png])
    await complete(client, upload_id, len(png))
    head = s3_admin.head_object(Bucket=daemon.buckets["uploads"], Key="noext")
    assert head["ContentType"] == "image/png"


async def test_empty_session_writes_an_empty_object(daemon: RunningDaemon, s3_admin: Any) -> None:
    client = await daemon.client("msgpack")
    upload_id = await start(client, "empty.bin")
    written = await complete(client, upload_id, 0)
    assert written["size"] == 0
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="empty.bin")
    assert stored["Body"].read() == b""


async def test_write_options_of_upload_start_reach_the_object(
    big_parts: RunningDaemon, s3_admin: Any
) -> None:
    client = await big_parts.client("msgpack")
    options = {
        "content_type": "application/x-custom",
        "cache_control": "max-age=60",
        "metadata": {"owner": "alice"},
        "visibility": "private",
    }
    small = await start(client, "opts/small", **options)
    await send(client, small, [b"payload"])
    await complete(client, small, 7)
    large = await start(client, "opts/large", **options)
    await send(client, large, [b"x" * (5 * MIB + 1)])
    await complete(client, large, 5 * MIB + 1)
    for key in ("opts/small", "opts/large"):
        head = s3_admin.head_object(Bucket=big_parts.buckets["uploads"], Key=key)
        assert head["ContentType"] == "application/x-custom"
        assert head["CacheControl"] == "max-age=60"
        assert head["Metadata"] == {"owner": "alice"}


async def test_completed_session_id_is_no_longer_usable(daemon: RunningDaemon) -> None:
    client = await daemon.client()
    upload_id = await start(client, "done.txt")
    await complete(client, upload_id, 0)
    with pytest.raises(RpcError) as raised:
        await client.call("s3.UploadChunk", {"upload_id": upload_id, "content": b"late"})
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "completed" in raised.value.message
    with pytest.raises(RpcError) as again:
        await client.call("s3.UploadAbort", {"upload_id": upload_id})
    assert again.value.code == "UPLOAD_NOT_FOUND"
    with pytest.raises(RpcError) as twice:
        await complete(client, upload_id, 0)
    assert twice.value.code == "UPLOAD_NOT_FOUND"


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
        await complete(client, upload_id, 5 * MIB + 2)
    assert completed.value.code == "UPLOAD_NOT_FOUND"
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=physical)


async def test_active_session_outlives_the_ttl(start_daemon: StartDaemon, s3_admin: Any) -> None:
    daemon = await start_daemon({"uploads": {}}, s3={"upload_session_ttl": 0.6})
    client = await daemon.client("msgpack")
    upload_id = await start(client, "active.txt")
    sent = 0
    for i in range(12):  # 12 x 0.15 s: twice the ttl, never idle for long
        sent = await send(client, upload_id, [b"%d," % i], sent)
        await asyncio.sleep(0.15)
    await complete(client, upload_id, sent)
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="active.txt")
    assert stored["Body"].read() == b"".join(b"%d," % i for i in range(12))


async def send_one(client: AsyncClient, upload_id: str, chunk: bytes, **extra: Any) -> Any:
    return await client.call("s3.UploadChunk", {"upload_id": upload_id, "content": chunk, **extra})


@pytest.mark.parametrize(
    "method", ["s3.UploadChunk", "s3.UploadStatus", "s3.UploadComplete", "s3.UploadAbort"]
)
async def test_unknown_upload_id_is_upload_not_found(daemon: RunningDaemon, method: str) -> None:
    params: dict[str, Any] = {"upload_id": "not-a-session-id"}
    if method == "s3.UploadChunk":
        params["content"] = b"x"
    if method == "s3.UploadComplete":
        params["size"] = 1
    with pytest.raises(RpcError) as raised:
        await daemon.call(method, params)
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "no such upload session" in raised.value.message


async def test_an_id_naming_an_upload_s3_does_not_know_is_upload_not_found(
    daemon: RunningDaemon,
) -> None:
    from s3rpc.storage.sessions import SessionRef

    forged = SessionRef("uploads", "x.bin", "no-such-s3-upload", {}).encode()
    with pytest.raises(RpcError) as raised:
        await daemon.call("s3.UploadStatus", {"upload_id": forged})
    assert raised.value.code == "UPLOAD_NOT_FOUND"
    assert "completed or aborted" in raised.value.message


async def test_upload_ids_are_distinct(daemon: RunningDaemon) -> None:
    client = await daemon.client()
    ids = [await start(client, "ids/same") for _ in range(5)]
    assert len(set(ids)) == len(ids)
    for upload_id in ids:
        await client.call("s3.UploadAbort", {"upload_id": upload_id})


async def test_pipelined_chunks_with_offsets_apply_in_order(
    big_parts: RunningDaemon, s3_admin: Any
) -> None:
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
    await complete(client, upload_id, len(content))
    stored = s3_admin.get_object(Bucket=big_parts.buckets["uploads"], Key="pipelined.bin")
    assert stored["Body"].read() == content


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_pipelined_chunks_then_complete_commit_every_byte_in_wire_order(
    big_parts: RunningDaemon, s3_admin: Any, codec: CodecName
) -> None:
    # The case: under JSON the small Complete used to overtake the large chunk still
    # being decoded and commit a 0-byte object. Without offsets too: wire order decides.
    big, small = os.urandom(3 * MIB), os.urandom(1000)
    client = await big_parts.client(codec)
    for with_offsets in (True, False):
        upload_id = await start(client, f"wire-order-{with_offsets}.bin")
        first: dict[str, Any] = {"offset": 0} if with_offsets else {}
        second: dict[str, Any] = {"offset": len(big)} if with_offsets else {}
        answers = await asyncio.gather(
            send_one(client, upload_id, big, **first),
            send_one(client, upload_id, small, **second),
            complete(client, upload_id, len(big) + len(small)),
        )
        assert answers[2]["size"] == len(big) + len(small)
        stored = s3_admin.get_object(
            Bucket=big_parts.buckets["uploads"], Key=f"wire-order-{with_offsets}.bin"
        )
        assert stored["Body"].read() == big + small


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_concurrent_chunks_without_offsets_apply_in_wire_order(
    big_parts: RunningDaemon, s3_admin: Any, codec: CodecName
) -> None:
    sizes = [3 * MIB, 17, 2 * MIB + 3, 5, 1 * MIB, 4 * MIB + 1, 900]
    chunks = [bytes([65 + i]) * size for i, size in enumerate(sizes)]
    client = await big_parts.client(codec)
    upload_id = await start(client, "concurrent.bin")
    await asyncio.gather(*(send_one(client, upload_id, chunk) for chunk in chunks))
    written = await complete(client, upload_id, sum(sizes))
    assert written["size"] == sum(sizes)
    stored = s3_admin.get_object(Bucket=big_parts.buckets["uploads"], Key="concurrent.bin")
    assert stored["Body"].read() == b"".join(chunks)


async def test_wrong_offset_is_upload_offset_mismatch_and_a_resend_overwrites(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    client = await daemon.client("msgpack")
    upload_id = await start(client, "offsets.txt")
    await send_one(client, upload_id, b"abc", offset=0)
    with pytest.raises(RpcError) as gap:
        await send_one(client, upload_id, b"xyz", offset=10)  # bytes 3..9 never came
    assert gap.value.code == "UPLOAD_OFFSET_MISMATCH"
    assert "expects offset 3" in gap.value.message
    # A retried chunk (already applied) is taken again: the same bytes at the same place.
    assert (await send_one(client, upload_id, b"abc", offset=0))["received"] == 3
    assert (await send_one(client, upload_id, b"def", offset=3))["received"] == 6
    with pytest.raises(RpcError) as short:
        await complete(client, upload_id, 5)
    assert short.value.code == "UPLOAD_OFFSET_MISMATCH"
    assert "holds 6 bytes" in short.value.message
    await complete(client, upload_id, 6)
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="offsets.txt")
    assert stored["Body"].read() == b"abcdef"


async def test_many_sessions_of_one_client_lock_no_one_out(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    # max_upload_sessions only bounds what one daemon remembers: beyond it, sessions are
    # reloaded from S3 when used, never refused.
    daemon = await start_daemon({"uploads": {}}, s3={"max_upload_sessions": 3})
    greedy = await daemon.client("msgpack")
    hoarded = [await start(greedy, f"hoard/{i}") for i in range(12)]
    other = await daemon.client("msgpack")
    mine = await start(other, "mine.txt")
    await send(other, mine, [b"mine"])
    assert (await complete(other, mine, 4))["size"] == 4
    # The hoarded ones still work, every one of them.
    for i, upload_id in enumerate(hoarded):
        await send(greedy, upload_id, [b"%d" % i])
        await complete(greedy, upload_id, len(b"%d" % i))
    assert uploads(s3_admin, daemon.buckets["uploads"]) == []


async def test_session_tails_stay_within_max_upload_buffer_also_while_waiting_for_a_slot(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    # The case: the cap was checked before the slot wait, so 30 chunks waiting for
    # one slot were all admitted against it. Now tails are reserved once the slot is held,
    # and idle tails are dropped (their clients re-send) rather than anyone being refused.
    cap = 2 * MIB
    daemon = await start_daemon(
        {"uploads": {"max_concurrent_operations": 1}}, s3={"max_upload_buffer": cap}
    )
    manager = daemon.app.buckets
    client = await daemon.client("msgpack")
    ids = [await start(client, f"cap/{i}") for i in range(8)]
    chunk = b"c" * (MIB // 2 + 1)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, manager.sessions.buffered)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        answers = await asyncio.gather(*(send_one(client, i, chunk, offset=0) for i in ids))
    finally:
        watcher.cancel()
    assert all(answer["received"] == len(chunk) for answer in answers)
    assert manager.sessions.buffered <= cap
    assert peak <= cap
    # The first ones' tails were dropped to make room: they say so and resume from 0.
    with pytest.raises(RpcError) as dropped:
        await send_one(client, ids[0], b"more", offset=len(chunk))
    assert dropped.value.code == "UPLOAD_OFFSET_MISMATCH"
    status = await client.call("s3.UploadStatus", {"upload_id": ids[0]})
    assert status["offset"] == 0
    await send(client, ids[0], [chunk, b"more"])
    await complete(client, ids[0], len(chunk) + 4)
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="cap/0")
    assert stored["Body"].read() == chunk + b"more"
    # The last one's tail is still there.
    await send(client, ids[-1], [b"more"], len(chunk))
    await complete(client, ids[-1], len(chunk) + 4)


async def test_bad_visibility_is_refused_at_start(daemon: RunningDaemon) -> None:
    with pytest.raises(RpcError) as raised:
        await daemon.call("s3.UploadStart", {"pathname": "v.txt", "visibility": "world"})
    assert raised.value.code == "INVALID_VISIBILITY"


async def test_a_session_survives_a_restart_and_resumes_from_upload_status(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    spec = {"part_size": 5 * MIB}
    first = await start_daemon({"uploads": dict(spec)})
    physical = first.buckets["uploads"]
    content = os.urandom(11 * MIB + 10)
    client = await first.client("msgpack")
    upload_id = await start(client, "restart.bin")
    sent = await send(client, upload_id, [content[: 6 * MIB]])  # 5 MiB committed, 1 MiB tail
    status = await client.call("s3.UploadStatus", {"upload_id": upload_id})
    assert status == {"upload_id": upload_id, "offset": 5 * MIB, "received": sent}
    await stop(first)
    assert len(uploads(s3_admin, physical)) == 1  # shutdown ended nothing

    second = await start_daemon({"uploads": {**spec, "bucket": physical}})
    client = await second.client("json")
    with pytest.raises(RpcError) as lost:
        await send_one(client, upload_id, content[sent : sent + 10], offset=sent)
    assert lost.value.code == "UPLOAD_OFFSET_MISMATCH"
    assert f"expects offset {5 * MIB}" in lost.value.message
    with pytest.raises(RpcError) as short:
        await complete(client, upload_id, sent)
    assert short.value.code == "UPLOAD_OFFSET_MISMATCH"
    resume = (await client.call("s3.UploadStatus", {"upload_id": upload_id}))["offset"]
    assert resume == 5 * MIB
    await send(client, upload_id, [content[resume : 9 * MIB], content[9 * MIB :]], resume)
    written = await complete(client, upload_id, len(content))
    assert written["size"] == len(content)
    stored = s3_admin.get_object(Bucket=physical, Key="restart.bin")["Body"].read()
    assert stored == content
    assert uploads(s3_admin, physical) == []


async def test_a_restarted_daemon_aborts_uploads_left_idle_by_a_killed_one(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    first = await start_daemon({"uploads": {}})
    physical = first.buckets["uploads"]
    client = await first.client("msgpack")
    await start(client, "left/behind.bin")
    await stop(first)  # as good as killed: the session's upload is still open
    assert len(uploads(s3_admin, physical)) == 1
    await asyncio.sleep(1.1)
    await start_daemon({"uploads": {"bucket": physical}}, s3={"upload_session_ttl": 1})
    await eventually(lambda: uploads(s3_admin, physical) == [], "the start-up sweep")


async def test_abort_and_complete_racing_on_two_daemons_exactly_one_wins(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    one = await start_daemon({"uploads": {"part_size": 5 * MIB}})
    physical = one.buckets["uploads"]
    two = await start_daemon({"uploads": {"part_size": 5 * MIB, "bucket": physical}})
    content = os.urandom(5 * MIB + 100)
    for round_ in range(4):
        key = f"race/{round_}.bin"
        first = await one.client("msgpack")
        upload_id = await start(first, key)
        await send(first, upload_id, [content])
        second = await two.client("msgpack")
        results = await asyncio.gather(
            complete(first, upload_id, len(content)),
            second.call("s3.UploadAbort", {"upload_id": upload_id}),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1, results
        assert isinstance(losses[0], RpcError)
        assert losses[0].code == "UPLOAD_NOT_FOUND"
        listed = s3_admin.list_objects_v2(Bucket=physical, Prefix=key).get("Contents", [])
        if isinstance(results[0], BaseException):
            assert listed == []
        else:
            body = s3_admin.get_object(Bucket=physical, Key=key)["Body"].read()
            assert body == content
    assert uploads(s3_admin, physical) == []


async def test_abort_arriving_while_complete_waits_for_a_slot(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    # The case: Complete waiting for the bucket's only slot, Abort meanwhile; Complete
    # then stored a truncated object and both answered success.
    daemon = await start_daemon({"uploads": {"part_size": 5 * MIB, "max_concurrent_operations": 1}})
    physical = daemon.buckets["uploads"]
    content = os.urandom(6 * MIB)
    client = await daemon.client("msgpack")
    upload_id = await start(client, "slot-race.bin")
    await send(client, upload_id, [content])
    slot = daemon.app.buckets.get("uploads").slot()
    await slot.acquire()
    other = await daemon.client("msgpack")
    try:
        completing = asyncio.ensure_future(complete(client, upload_id, len(content)))
        aborting = asyncio.ensure_future(other.call("s3.UploadAbort", {"upload_id": upload_id}))
        await asyncio.sleep(0.2)
    finally:
        slot.release()
    results = await asyncio.gather(completing, aborting, return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1, results
    loser = next(r for r in results if isinstance(r, BaseException))
    assert isinstance(loser, RpcError)
    assert loser.code == "UPLOAD_NOT_FOUND"
    listed = s3_admin.list_objects_v2(Bucket=physical).get("Contents", [])
    assert (
        listed == []
        or s3_admin.get_object(Bucket=physical, Key="slot-race.bin")["Body"].read() == content
    )
    assert uploads(s3_admin, physical) == []


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


async def test_unregister_during_a_chunk_never_answers_success_for_an_ended_session(
    daemon: RunningDaemon, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    physical = physical_buckets("unreg2")
    client = await daemon.client("msgpack")
    await client.call(
        "s3.RegisterBucket",
        {"name": "runtime", "server": "local", "bucket": physical, "part_size": 5 * MIB},
    )
    upload_id = await start(client, "r.bin", bucket="runtime")
    bucket = daemon.app.buckets.get("runtime")
    entered, release = asyncio.Event(), asyncio.Event()
    real = bucket.client.upload_part

    async def gated(**kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await real(**kwargs)

    bucket.client.upload_part = gated
    try:
        chunk = asyncio.ensure_future(send_one(client, upload_id, os.urandom(5 * MIB + 1)))
        await asyncio.wait_for(entered.wait(), WAIT)
        admin = await daemon.client("msgpack")
        unregister = asyncio.ensure_future(admin.call("s3.UnregisterBucket", {"name": "runtime"}))
        await asyncio.sleep(0.2)
        release.set()
        with pytest.raises(RpcError) as ended:
            await asyncio.wait_for(chunk, WAIT)
        await asyncio.wait_for(unregister, WAIT)
    finally:
        release.set()
        bucket.client.upload_part = real
    # The bucket went while the chunk ran: the session ended with it, its upload aborted, and
    # the chunk says so rather than success.
    assert ended.value.code == "UPLOAD_NOT_FOUND"
    assert "unregistered" in ended.value.message
    assert uploads(s3_admin, physical) == []
    with pytest.raises(RpcError) as raised:
        await send_one(client, upload_id, b"x", offset=5 * MIB + 1)
    assert raised.value.code == "UPLOAD_NOT_FOUND"


@pytest.mark.parametrize(
    ("change", "survives"),
    [
        ({"max_concurrent_operations": 7, "visibility": "public"}, True),
        ({"part_size": 6 * MIB}, True),
        ({"prefix": "moved"}, False),
    ],
    ids=["limits-changed", "part-size-changed", "prefix-changed"],
)
async def test_a_reload_keeps_an_upload_session_going_unless_where_it_stores_changed(
    start_daemon: StartDaemon, s3_admin: Any, change: dict[str, Any], survives: bool
) -> None:
    daemon = await start_daemon({"uploads": {"part_size": 5 * MIB}})
    physical = daemon.buckets["uploads"]
    client = await daemon.client("msgpack")
    upload_id = await start(client, "r/s.bin")
    first, second = os.urandom(6 * MIB), os.urandom(6 * MIB)
    await send(client, upload_id, [first])
    s3 = daemon.config.s3
    spec = s3.buckets["uploads"].model_copy(update=change)
    reloaded = s3.model_copy(update={"buckets": {"uploads": spec}})
    assert (await daemon.app.buckets.reload(reloaded)).changed == ["uploads"]
    if survives:
        await send(client, upload_id, [second], len(first))
        size = len(first) + len(second)
        assert (await complete(client, upload_id, size))["size"] == size
        stored = s3_admin.get_object(Bucket=physical, Key="r/s.bin")["Body"].read()
        assert stored == first + second
    else:
        await eventually(lambda: uploads(s3_admin, physical) == [], "the session's abort")
        with pytest.raises(RpcError) as info:
            await send_one(client, upload_id, second, offset=len(first))
        assert info.value.code == "UPLOAD_NOT_FOUND"
        assert "given other storage by a reload" in info.value.message
    assert uploads(s3_admin, physical) == []


async def test_session_calls_count_on_the_bucket_gauges_while_they_run(
    start_daemon: StartDaemon,
) -> None:
    # Section 6 of the issue: session calls bypassed the metered slot, so
    # rr_s3_inflight_operations and rr_s3_semaphore_waiters never counted them.
    daemon = await start_daemon(
        {"uploads": {"part_size": 5 * MIB, "max_concurrent_operations": 1}},
        metrics={"address": "127.0.0.1:0"},
    )
    assert daemon.app.server is not None
    metrics = daemon.app.server.state.metrics
    assert metrics is not None

    def gauges() -> tuple[float | None, float | None]:
        get = metrics.registry.get_sample_value
        return (
            get("rr_s3_inflight_operations", {"bucket": "uploads"}),
            get("rr_s3_semaphore_waiters", {"bucket": "uploads"}),
        )

    bucket = daemon.app.buckets.get("uploads")
    client = await daemon.client("msgpack")
    upload_id = await start(client, "gauges.bin")
    content = os.urandom(5 * MIB + 1)

    # Waiting for the bucket's only slot (held here): a waiter.
    await bucket.slot().acquire()
    try:
        chunk = asyncio.ensure_future(send_one(client, upload_id, content, offset=0))
        await eventually(lambda: gauges()[1] == 1, "the chunk to wait for the slot")
    finally:
        bucket.slot().release()

    # Holding it while S3 works: in flight.
    for name in ("upload_part", "complete_multipart_upload"):
        entered, release = asyncio.Event(), asyncio.Event()
        real = getattr(bucket.client, name)

        async def gated(
            real: Any = real, entered: Any = entered, release: Any = release, **kw: Any
        ) -> Any:
            entered.set()
            await release.wait()
            return await real(**kw)

        setattr(bucket.client, name, gated)
        try:
            call = (
                chunk
                if name == "upload_part"
                else asyncio.ensure_future(complete(client, upload_id, len(content)))
            )
            await asyncio.wait_for(entered.wait(), WAIT)
            assert gauges() == (1, 0)
            release.set()
            await asyncio.wait_for(call, WAIT)
        finally:
            release.set()
            setattr(bucket.client, name, real)
    assert gauges() == (0, 0)


async def test_a_reload_changing_part_size_during_a_chunk_neither_kills_nor_garbles_it(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start_daemon({"uploads": {"part_size": 5 * MIB}})
    physical = daemon.buckets["uploads"]
    manager = daemon.app.buckets
    client = await daemon.client("msgpack")
    upload_id = await start(client, "reload-mid-chunk.bin")
    content = os.urandom(10 * MIB + 7 * MIB + 3)
    bucket = manager.get("uploads")
    entered, release = asyncio.Event(), asyncio.Event()
    real = bucket.client.list_parts

    async def gated(**kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await real(**kwargs)

    bucket.client.list_parts = gated  # the check before the chunk's parts go up
    try:
        chunk = asyncio.ensure_future(send_one(client, upload_id, content[: 10 * MIB], offset=0))
        await asyncio.wait_for(entered.wait(), WAIT)
        spec = daemon.config.s3.buckets["uploads"].model_copy(update={"part_size": 6 * MIB})
        reloaded = daemon.config.s3.model_copy(update={"buckets": {"uploads": spec}})
        assert (await manager.reload(reloaded)).changed == ["uploads"]
        bucket.client.list_parts = real
        release.set()
        answer = await asyncio.wait_for(chunk, WAIT)
    finally:
        release.set()
        bucket.client.list_parts = real
    assert answer["received"] == 10 * MIB
    assert answer["committed"] == 10 * MIB  # two parts of the size the chunk began with
    await send(client, upload_id, [content[10 * MIB :]], 10 * MIB)  # a 6 MiB part, then the rest
    await complete(client, upload_id, len(content))
    stored = s3_admin.get_object(Bucket=physical, Key="reload-mid-chunk.bin")["Body"].read()
    assert stored == content
    assert uploads(s3_admin, physical) == []


async def test_if_none_match_on_an_existing_object_refuses_the_start(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    physical = daemon.buckets["uploads"]
    s3_admin.put_object(Bucket=physical, Key="there.txt", Body=b"old")
    with pytest.raises(RpcError) as raised:
        await daemon.call("s3.UploadStart", {"pathname": "there.txt", "if_none_match": "*"})
    assert raised.value.code == "PRECONDITION_FAILED"
    assert uploads(s3_admin, physical) == []

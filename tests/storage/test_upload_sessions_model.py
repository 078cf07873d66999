"""Upload sessions against a reference model: random programs of Start / Chunk / Status /
Complete / Abort, pipelined on one connection and concurrent over several, with daemon
restarts in between, through the daemon's socket.

The model knows what S3 must hold: the committed bytes are whole parts (``part_size`` each), a
daemon's tail is the rest, a restart loses the tail but not the session. Every answer is
compared with the model's, and after every example the stored objects and the open multipart
uploads are compared with it too.

Examples per run: ``S3RPC_SESSION_EXAMPLES`` (default 30, about 15 s on moto); the seed is fixed
(``S3RPC_SESSION_SEED``, default below) and printed, so a failure replays exactly.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, seed, settings
from hypothesis import strategies as st
from tests.conftest import RunningDaemon, StartDaemon

from s3rpc.client import AsyncClient, CodecName, RpcError

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part: the model's parts
SLOTS = 3
SEED = int(os.environ.get("S3RPC_SESSION_SEED", "20261208"))
EXAMPLES = int(os.environ.get("S3RPC_SESSION_EXAMPLES", "30"))
#: Chunk sizes: mostly small, sometimes one that fills a part (S3 forbids small parts, so
#: crossing part boundaries takes 5 MiB chunks; they are the expensive ones).
SIZES = st.sampled_from([0, 1, 700, 3000, 3000, 700, PART + 17, PART - 5])
OFFSETS = st.sampled_from(["next", "next", "next", "none", "resend", "gap", "behind"])

Op = tuple[Any, ...]
chunk_ops = st.tuples(st.just("chunk"), SIZES, OFFSETS)
batch_ops = st.one_of(
    *[chunk_ops] * 6,
    st.tuples(st.just("status")),
    st.tuples(st.just("complete"), st.sampled_from(["right", "right", "wrong"])),
    st.tuples(st.just("abort")),
)
#: A batch: calls of one slot's session sent pipelined on one connection.
batches = st.tuples(st.integers(0, SLOTS - 1), st.lists(batch_ops, min_size=1, max_size=5))
steps = st.one_of(
    st.tuples(st.just("start"), st.integers(0, SLOTS - 1)),
    # Batches of distinct slots, each on its own connection, all at once.
    st.tuples(st.just("run"), st.lists(batches, min_size=1, max_size=3, unique_by=lambda b: b[0])),
    *[st.tuples(st.just("run"), st.lists(batches, min_size=1, max_size=1))] * 3,
    st.tuples(st.just("restart")),
)
#: Every slot starts with a session; more starts replace them later.
programs = st.lists(steps, min_size=2, max_size=14).map(
    lambda rest: [("start", slot) for slot in range(SLOTS)] + rest
)


@dataclass
class Expected:
    """One session as the model sees it."""

    upload_id: str
    pathname: str
    data: memoryview
    state: str = "open"  # open, completed, aborted
    committed: int = 0
    end: int = 0
    #: The running daemon remembers aborting it (Abort again answers success).
    abort_remembered: bool = False


@dataclass
class World:
    daemon: RunningDaemon
    physical: str
    prefix: str
    codec: CodecName
    slots: dict[int, Expected] = field(default_factory=dict)
    ended: list[Expected] = field(default_factory=list)
    generation: int = 0


def expect_chunk(model: Expected, size: int, how: str) -> tuple[int | None, Any]:
    """(offset to send, expected answer or error code) for a chunk, updating the model."""
    if how == "next":
        offset: int | None = model.end
    elif how == "none":
        offset = None
    elif how == "resend":
        offset = model.committed
    elif how == "gap":
        offset = model.end + 1
    else:  # behind: before the committed bytes (or a gap when there are none)
        offset = model.committed - 1 if model.committed else model.end + 1
    if model.state != "open":
        return offset, "UPLOAD_NOT_FOUND"
    at = model.end if offset is None else offset
    if not model.committed <= at <= model.end:
        return offset, "UPLOAD_OFFSET_MISMATCH"
    model.end = at + size
    model.committed = PART * (model.end // PART)
    return offset, {"received": model.end, "committed": model.committed}


def expect_complete(model: Expected, how: str) -> tuple[int, Any]:
    size = model.end if how == "right" else model.end + 1
    if model.state != "open":
        return size, "UPLOAD_NOT_FOUND"
    if size != model.end:
        return size, "UPLOAD_OFFSET_MISMATCH"
    model.state = "completed"
    return size, {"success": True, "size": size}


def expect_abort(model: Expected) -> Any:
    if model.state == "open" or (model.state == "aborted" and model.abort_remembered):
        model.state, model.abort_remembered = "aborted", True
        return {"success": True}
    return "UPLOAD_NOT_FOUND"


def expect_status(model: Expected) -> Any:
    if model.state != "open":
        return "UPLOAD_NOT_FOUND"
    return {"offset": model.committed, "received": model.end}


async def answer(call: Any) -> Any:
    try:
        return await call
    except RpcError as exc:
        return exc.code


def matches(got: Any, expected: Any) -> bool:
    if isinstance(expected, str):
        return got == expected
    return isinstance(got, dict) and all(got.get(k) == v for k, v in expected.items())


async def run_batch(world: World, client: AsyncClient, slot: int, ops: list[Op]) -> list[str]:
    """Send ``ops`` pipelined (written in this order before any answer is read); compare every
    answer with the model's. The problems found, as text."""
    model = world.slots.get(slot)
    if model is None:
        return []
    calls, wanted = [], []
    for op in ops:
        params: dict[str, Any] = {"upload_id": model.upload_id}
        if op[0] == "chunk":
            size = op[1] if model.end + op[1] <= len(model.data) else 1
            offset, want = expect_chunk(model, size, op[2])
            start = model.end - size if isinstance(want, dict) else (offset or 0)
            params["content"] = bytes(model.data[start : start + size])
            if offset is not None:
                params["offset"] = offset
            method = "s3.UploadChunk"
        elif op[0] == "status":
            want, method = expect_status(model), "s3.UploadStatus"
        elif op[0] == "complete":
            params["size"], want = expect_complete(model, op[1])
            method = "s3.UploadComplete"
        else:
            want, method = expect_abort(model), "s3.UploadAbort"
        # Started now, in this order: each writes its frame before its first await.
        calls.append(asyncio.ensure_future(answer(client.call(method, params, timeout=60))))
        wanted.append((method, op, want))
    got = await asyncio.gather(*calls)
    for (method, _, _), result in zip(wanted, got, strict=True):
        event(f"{method}: {result if isinstance(result, str) else 'ok'}")
        if isinstance(result, dict) and result.get("committed"):
            event("a part committed")
    if len(ops) > 1:
        event("pipelined")
    return [
        f"slot {slot} {method} {op}: got {result!r}, model says {want!r}"
        for (method, op, want), result in zip(wanted, got, strict=True)
        if not matches(result, want)
    ]


async def check_storage(world: World, s3_admin: Any) -> list[str]:
    problems = []
    listed = await asyncio.to_thread(
        s3_admin.list_objects_v2, Bucket=world.physical, Prefix=world.prefix
    )
    stored = {item["Key"] for item in listed.get("Contents", [])}
    for model in [*world.slots.values(), *world.ended]:
        if model.state == "completed":
            body = await asyncio.to_thread(
                lambda m=model: s3_admin.get_object(Bucket=world.physical, Key=m.pathname)[
                    "Body"
                ].read()
            )
            if body != model.data[: model.end].tobytes():
                problems.append(f"{model.pathname}: {len(body)} bytes stored, {model.end} sent")
        elif model.pathname in stored:
            problems.append(f"{model.pathname} exists but was never completed")
    return problems


async def restart(world: World, start_daemon: StartDaemon) -> None:
    from tests.storage.test_upload_sessions import stop

    await stop(world.daemon)
    world.daemon = await start_daemon({"uploads": {"bucket": world.physical, "part_size": PART}})
    world.generation += 1
    for model in [*world.slots.values(), *world.ended]:
        if model.state == "open":
            model.end = model.committed  # the tail was in the old daemon's memory
        model.abort_remembered = False


class Shared(dict[str, Any]):
    """State kept across the examples of one run: the daemon, the data, a counter."""

    def __repr__(self) -> str:
        return f"<shared: example {self.get('example')}>"


@pytest.fixture
def shared() -> Shared:
    print(f"hypothesis seed {SEED}, {EXAMPLES} examples (S3RPC_SESSION_SEED, _EXAMPLES)")
    return Shared(example=0, data=os.urandom(7 * PART + 1000))


@pytest.mark.slow
@pytest.mark.timeout(900)
@seed(SEED)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs, codec=st.sampled_from(["json", "msgpack"]))
# Always run too: parts committed, a restart losing a tail, resending from the committed
# offset, pipelined and concurrent sessions.
@example(
    program=[
        *[("start", slot) for slot in range(SLOTS)],
        ("run", [(0, [("chunk", PART + 17, "next"), ("chunk", 3000, "next")])]),
        ("run", [(1, [("chunk", PART - 5, "next"), ("chunk", 700, "none")])]),
        ("restart",),
        (
            "run",
            [
                (0, [("chunk", 700, "next"), ("status",), ("chunk", 3000, "resend")]),
                (1, [("chunk", 1, "gap"), ("complete", "right")]),
                (2, [("chunk", 700, "next"), ("abort",), ("abort",)]),
            ],
        ),
        (
            "run",
            [(0, [("chunk", PART + 17, "next"), ("complete", "wrong"), ("complete", "right")])],
        ),
        ("run", [(1, [("chunk", 1, "behind"), ("status",)])]),
        ("run", [(1, [("chunk", 700, "next"), ("complete", "right"), ("abort",)])]),
    ],
    codec="json",
)
async def test_sessions_follow_the_model(
    start_daemon: StartDaemon,
    s3_admin: Any,
    shared: Shared,
    program: list[Op],
    codec: CodecName,
) -> None:
    if "daemon" not in shared:
        shared["daemon"] = await start_daemon({"uploads": {"part_size": PART}})
        shared["physical"] = shared["daemon"].buckets["uploads"]
    shared["example"] += 1
    data: bytes = shared["data"]
    world = World(shared["daemon"], shared["physical"], f"ex{shared['example']}/", codec)
    problems: list[str] = []
    clients: list[AsyncClient] = []

    async def connect() -> None:
        while len(clients) < SLOTS:
            clients.append(await world.daemon.client(codec))

    try:
        for number, step in enumerate(program):
            if step[0] == "restart":
                for client in clients:
                    await client.close()
                clients.clear()
                await restart(world, start_daemon)
                event("restart")
                shared["daemon"] = world.daemon
                continue
            await connect()
            if step[0] == "start":
                old = world.slots.pop(step[1], None)
                if old is not None:
                    world.ended.append(old)
                pathname = f"{world.prefix}{number}-{step[1]}.bin"
                answered = await clients[0].call("s3.UploadStart", {"pathname": pathname})
                skip = random.Random(number).randrange(1000)
                world.slots[step[1]] = Expected(
                    answered["upload_id"], pathname, memoryview(data)[skip : skip + 7 * PART]
                )
                continue
            found = await asyncio.gather(
                *(run_batch(world, clients[i], slot, ops) for i, (slot, ops) in enumerate(step[1]))
            )
            problems += [p for batch in found for p in batch]
            assert not problems, f"seed {SEED}, step {number} {step}: {problems}"
        problems += await check_storage(world, s3_admin)
        # Whatever is still open is aborted; then no multipart upload is left.
        await connect()
        for model in [*world.slots.values(), *world.ended]:
            if model.state == "open":
                await clients[0].call("s3.UploadAbort", {"upload_id": model.upload_id})
        left = await asyncio.to_thread(
            s3_admin.list_multipart_uploads, Bucket=world.physical, Prefix=world.prefix
        )
        problems += [f"left open: {u['Key']}" for u in left.get("Uploads", [])]
        assert not problems, f"seed {SEED}: {problems}"
        # The S3 server keeps what is stored in memory: clear the example's objects.
        for model in [*world.slots.values(), *world.ended]:
            if model.state == "completed":
                await asyncio.to_thread(
                    s3_admin.delete_object, Bucket=world.physical, Key=model.pathname
                )
    finally:
        for client in clients:
            await client.close()

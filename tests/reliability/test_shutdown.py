"""SIGTERM to the daemon process: every call answered, nothing partial, a bounded, clean exit.

Extends tests/test_app.py (5 writes drained) and tests/server/test_drain.py (in-process drain):
here 200 writes are in flight through a proxy that holds every PUT, frames keep arriving after
the signal, and a client that never reads its answers tries to hold the shutdown open.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import msgpack

from s3rpc.client import AsyncClient, RpcError, open_connection
from s3rpc.goridge.rpc import encode_request

from .daemon_process import (
    MIB,
    CountingProxy,
    DaemonProcess,
    config_for,
    counting_proxy,  # noqa: F401  (fixture)
    spawn_daemon,  # noqa: F401  (fixture)
)

MSGPACK_FLAG, ERROR_FLAG = 0x10, 0x40
WAIT = 60.0
SpawnDaemon = Callable[[dict[str, Any]], DaemonProcess]
ALLOWED_FAILURES = {"SHUTTING_DOWN", "OPERATION_TIMEOUT"}


def frame(method: str, params: dict[str, Any], seq: int) -> bytes:
    return b"".join(encode_request(MSGPACK_FLAG, seq, method, msgpack.packb(params)))


async def read_answer(reader: asyncio.StreamReader, timeout: float) -> tuple[int, int, bytes]:
    """One response frame: (seq, flags, body)."""
    header = await asyncio.wait_for(reader.readexactly(20), timeout)  # 12 bytes + 2 options
    length = int.from_bytes(header[2:6], "little")
    method_len = int.from_bytes(header[16:20], "little")
    payload = await asyncio.wait_for(reader.readexactly(length), timeout)
    return int.from_bytes(header[12:16], "little"), header[1], payload[method_len:]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def wait_exit(daemon: DaemonProcess, timeout: float) -> int:
    return await asyncio.to_thread(daemon.wait, timeout)


def assert_clean_output(daemon: DaemonProcess) -> None:
    output = daemon.output
    assert "Traceback" not in output, output[-3000:]
    assert "CancelledError" not in output, output[-3000:]
    events = daemon.log_events()
    assert events, output[-3000:]
    assert events[-1]["event"] == "exited", events[-3:]


def spawn(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    proxy: CountingProxy,
    bucket: str,
    shutdown_timeout: float,
    **bucket_spec: Any,
) -> DaemonProcess:
    return spawn_daemon(
        config_for(
            proxy.endpoint,
            {"uploads": {"bucket": bucket, **bucket_spec}},
            s3={"shutdown_timeout": shutdown_timeout},
        )
    )


# --- 200 writes in flight ----------------------------------------------------------------------

CONNECTIONS, WRITES_PER_CONNECTION = 10, 20
SHUTDOWN_TIMEOUT = 3.0


async def test_sigterm_with_200_writes_in_flight_answers_every_call_and_stores_no_partial_object(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    counting_proxy: CountingProxy,  # noqa: F811
    physical_buckets: Callable[..., str],
    s3_admin: Any,
) -> None:
    bucket = physical_buckets("term")
    daemon = spawn(spawn_daemon, counting_proxy, bucket, SHUTDOWN_TIMEOUT)
    counting_proxy.delays["PUT"] = 1.5  # PutObject and UploadPart: a write takes >= 1.5 s
    clients = [await AsyncClient.connect(daemon.address, "msgpack") for _ in range(CONNECTIONS)]
    expected: dict[str, bytes] = {}
    calls = []
    for c, client in enumerate(clients):
        for i in range(WRITES_PER_CONNECTION):
            name = f"w/{c}-{i}.bin"
            size = 6 * MIB if i == 0 else random.randint(1, 16 * 1024)  # 10 multipart writes
            expected[name] = random.randbytes(size)
            calls.append(
                asyncio.ensure_future(
                    client.call(
                        "s3.Write",
                        {"pathname": name, "content": expected[name]},
                        timeout=WAIT,
                    )
                )
            )
    try:
        await wait_until(lambda: counting_proxy.count("PUT") >= 50, WAIT, "50 PUTs in flight")
        signalled = time.monotonic()
        daemon.signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
        code = await wait_exit(daemon, SHUTDOWN_TIMEOUT + 15)
        took = time.monotonic() - signalled
    finally:
        for client in clients:
            await client.close()
    names = list(expected)
    succeeded = {n for n, r in zip(names, results, strict=True) if isinstance(r, dict)}
    failures = [r for r in results if not isinstance(r, dict)]
    print(
        f"\nSIGTERM with {len(calls)} writes in flight: {len(succeeded)} stored, "
        f"{len(failures)} answered {sorted({getattr(f, 'code', repr(f)) for f in failures})}, "
        f"exit {code} after {took:.1f} s (shutdown_timeout {SHUTDOWN_TIMEOUT} s)"
    )
    for failure in failures:
        assert isinstance(failure, RpcError), f"not answered: {failure!r}"
        assert failure.code in ALLOWED_FAILURES, failure.text
    for name, result in zip(names, results, strict=True):
        if isinstance(result, dict):
            assert result["success"] is True, result
            assert result["size"] == len(expected[name]), result
    assert code == 0, daemon.output[-3000:]
    assert_clean_output(daemon)
    stored = {
        obj["Key"]: obj["Size"]
        for page in s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    }
    assert succeeded <= set(stored), "an answered success is missing from S3"
    for name in stored:  # whatever is stored is whole: answered or not, never partial
        body = s3_admin.get_object(Bucket=bucket, Key=name)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(expected[name]).digest(), name
    assert s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- frames arriving after SIGTERM --------------------------------------------------------------


async def test_frames_sent_after_sigterm_on_an_open_connection_are_answered_shutting_down(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    counting_proxy: CountingProxy,  # noqa: F811
    physical_buckets: Callable[..., str],
) -> None:
    daemon = spawn(spawn_daemon, counting_proxy, physical_buckets("late"), shutdown_timeout=15)
    counting_proxy.delays["PUT"] = 3.0
    reader, writer = await asyncio.wait_for(open_connection(daemon.address), WAIT)
    try:
        writer.write(frame("s3.Write", {"pathname": "slow.txt", "content": b"slow"}, 1))
        await wait_until(lambda: counting_proxy.count("PUT") >= 1, WAIT, "the PUT")
        daemon.signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait_for_event, "shutdown_requested", WAIT)
        writer.write(frame("s3.Exists", {"pathname": "slow.txt"}, 2))
        writer.write(frame("s3.Read", {"pathname": "slow.txt"}, 3))
        answers = {}
        for _ in range(3):
            seq, flags, body = await read_answer(reader, WAIT)
            answers[seq] = (flags, body)
        tail = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    assert answers[1][0] & ERROR_FLAG == 0, answers[1]
    assert msgpack.unpackb(answers[1][1])["success"] is True
    for seq in (2, 3):
        flags, body = answers[seq]
        assert flags & ERROR_FLAG, (seq, body)
        assert body.decode().startswith("SHUTTING_DOWN: "), body
    assert tail == b"", "the connection is closed once its calls are answered"
    assert await wait_exit(daemon, 30) == 0
    assert_clean_output(daemon)


# --- a client that never reads ------------------------------------------------------------------


async def test_client_that_never_reads_cannot_hold_shutdown_past_the_timeout(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    counting_proxy: CountingProxy,  # noqa: F811
    physical_buckets: Callable[..., str],
    s3_admin: Any,
) -> None:
    bucket = physical_buckets("noread")
    s3_admin.put_object(Bucket=bucket, Key="big.bin", Body=random.randbytes(4 * MIB))
    daemon = spawn(spawn_daemon, counting_proxy, bucket, shutdown_timeout=SHUTDOWN_TIMEOUT)
    conns = [await asyncio.wait_for(open_connection(daemon.address), WAIT) for _ in range(3)]
    try:
        for _, writer in conns:
            writer.write(
                b"".join(frame("s3.Read", {"pathname": "big.bin"}, s) for s in range(1, 101))
            )
        await wait_until(lambda: counting_proxy.count("GET") >= 6, WAIT, "GETs")
        await asyncio.sleep(1)  # answers pile up unread
        signalled = time.monotonic()
        daemon.signal(signal.SIGTERM)
        code = await wait_exit(daemon, SHUTDOWN_TIMEOUT + 15)
        took = time.monotonic() - signalled
    finally:
        for _, writer in conns:
            writer.close()
    print(f"\nnon-reading clients: exit {code} {took:.1f} s after SIGTERM")
    assert code == 0, daemon.output[-3000:]
    assert_clean_output(daemon)

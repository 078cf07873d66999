"""The captured PHP requests replayed, in order, against a live daemon backed by moto's S3.

One connection carries every vector, as the PHP process did (JSON and msgpack share it), and
each answer is checked field by field against what the PHP client needs.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from .wire import ERROR_FLAG, JSON_FLAG, close, connect, read_response

# The project's copy of ../shared/goridge-vectors (tests/goridge/vectors/README.md).
VECTORS_PATH = Path(__file__).resolve().parents[1] / "goridge" / "vectors" / "vectors.json"
ALL_BYTES = bytes(range(256))
PUBLIC_URL = "http://fake-s3.local/uploads"
ERROR_CODES = {1: "FILE_NOT_FOUND", 8: "BUCKET_NOT_FOUND"}


def _storage_ready() -> bool:
    try:
        storage = importlib.import_module("s3rpc.storage")
    except ImportError:
        return False
    return hasattr(storage, "BucketManager") and hasattr(storage, "build_methods")


pytestmark = [
    pytest.mark.skipif(not _storage_ready(), reason="s3rpc.storage does not export it yet"),
]


def load_vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS_PATH.read_text())["vectors"] if VECTORS_PATH.exists() else []


def expected_value(value: Any) -> Any:
    """The vectors' JSON stand-ins for msgpack bin / non-UTF-8 str, as Python values."""
    if isinstance(value, dict):
        if set(value) == {"$bytes_hex"}:
            return bytes.fromhex(value["$bytes_hex"])
        if set(value) == {"$str_bytes_hex"}:
            return bytes.fromhex(value["$str_bytes_hex"])
        return {k: expected_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expected_value(v) for v in value]
    return value


def decode_body(flags: int, body: bytes) -> Any:
    if flags & JSON_FLAG:
        return orjson.loads(body)
    return msgpack.unpackb(body, raw=False)


def check_response(vector: dict[str, Any], resp: Any) -> None:
    index = vector["index"]
    req = vector["request"]
    codec = int(req["header"]["flags_hex"], 16)
    label = f"vector {index} ({vector['name']})"
    assert resp.seq == req["seq"], label
    assert resp.method == req["method"].encode(), label
    if index in ERROR_CODES:
        assert resp.flags == codec | ERROR_FLAG, f"{label}: flags 0x{resp.flags:02x}"
        assert ERROR_CODES[index] in resp.text, f"{label}: {resp.text}"
        return
    assert resp.flags == codec, f"{label}: flags 0x{resp.flags:02x}, body {resp.body[:200]!r}"
    got = decode_body(resp.flags, resp.body)
    want = expected_value(vector["response"]["body_decoded"])
    assert isinstance(got, dict), label
    # Every field the captured answer has, with its value; newer fields may be added (Read and
    # GetMetadata also answer content_type, metadata, range and total_size), as PHP code reads
    # fields by name.
    assert set(want) <= set(got), f"{label}: {got}"
    for key, value in want.items():
        if key == "last_modified":
            assert isinstance(got[key], int), f"{label}: last_modified {got[key]!r}"
            assert not isinstance(got[key], bool)
        else:
            assert got[key] == value, f"{label}: {key} = {got[key]!r}, want {value!r}"
    if index == 7:
        marker = resp.body.index(b"\xa7content") + len(b"\xa7content")
        assert resp.body[marker] in (0xC4, 0xC5, 0xC6), "content must be msgpack bin"
        assert got["content"] == ALL_BYTES


def vector_buckets() -> dict[str, dict[str, Any]]:
    return {
        "uploads": {"visibility": "public", "public_url": PUBLIC_URL},
        "private-docs": {"visibility": "private"},
    }


async def replay_all(address: str) -> None:
    vectors = load_vectors()
    reader, writer = await connect(address)
    try:
        for vector in vectors:
            writer.write(bytes.fromhex(vector["request"]["hex"]))
            await asyncio.wait_for(writer.drain(), 10)
            resp = await read_response(reader, timeout=30)
            check_response(vector, resp)
    finally:
        await close(writer)


async def test_vectors_replayed_in_order_over_one_tcp_connection(start_daemon: Any) -> None:
    daemon = await start_daemon(vector_buckets())
    assert daemon.address.startswith("tcp://127.0.0.1:")
    await replay_all(daemon.address)


async def test_vectors_replayed_over_a_unix_socket(start_daemon: Any, sock_dir: Path) -> None:
    daemon = await start_daemon(vector_buckets(), rpc={"listen": f"unix://{sock_dir}/rpc.sock"})
    assert daemon.address == f"unix://{sock_dir}/rpc.sock"
    await replay_all(daemon.address)


async def test_vectors_pipelined_in_one_write_are_answered_by_seq(start_daemon: Any) -> None:
    """All requests in one write, answered out of order if need be, each under its own seq."""
    daemon = await start_daemon(vector_buckets())
    vectors = load_vectors()
    # Seed the objects first so every later vector sees the state it was captured with.
    await replay_all(daemon.address)
    reader, writer = await connect(daemon.address)
    try:
        writer.write(b"".join(bytes.fromhex(v["request"]["hex"]) for v in vectors))
        await writer.drain()
        answers = {}
        for _ in vectors:
            resp = await read_response(reader, timeout=30)
            answers[resp.seq] = resp
        for vector in vectors:
            resp = answers[vector["request"]["seq"]]
            check_response(vector, resp)
    finally:
        await close(writer)

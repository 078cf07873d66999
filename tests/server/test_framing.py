"""RpcServer over real TCP and unix sockets: framing violations, error frames, pipelining, load."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import socket
import stat
import struct
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.goridge import encode_frame

from .conftest import StartServer
from .wire import (
    ERROR_FLAG,
    GOB_FLAG,
    JSON_FLAG,
    MSGPACK_FLAG,
    PROTO_FLAG,
    RAW_FLAG,
    Response,
    assert_closed_by_server,
    call,
    close,
    connect,
    raw_request,
    read_response,
    request,
)

CODECS = {"json": JSON_FLAG, "msgpack": MSGPACK_FLAG}
ALL_BYTES = bytes(range(256))


def encode(flag: int, value: Any) -> bytes:
    return orjson.dumps(value) if flag == JSON_FLAG else msgpack.packb(value, use_bin_type=True)


def decode(flag: int, body: bytes) -> Any:
    if flag == JSON_FLAG:
        return orjson.loads(body)
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def assert_ok(resp: Response, *, flag: int, seq: int, method: str) -> Any:
    assert resp.flags == flag, f"flags 0x{resp.flags:02x}, body {resp.body[:200]!r}"
    assert resp.seq == seq
    assert resp.method == method.encode()
    return decode(flag, resp.body)


def assert_error(resp: Response, code: ErrorCode, *, flag: int, seq: int, method: bytes) -> str:
    assert resp.flags == flag | ERROR_FLAG, f"flags 0x{resp.flags:02x}"
    assert resp.seq == seq
    assert resp.method == method
    text = resp.text
    assert text.startswith(f"{code.value}: "), text
    return text


async def echo_works(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seq: int) -> None:
    resp = await call(reader, writer, request(JSON_FLAG, seq, "test.Echo", b'{"ping":1}'))
    assert assert_ok(resp, flag=JSON_FLAG, seq=seq, method="test.Echo") == {"echo": {"ping": 1}}


def good_json_request(seq: int = 1) -> bytes:
    return request(JSON_FLAG, seq, "test.Echo", b'{"a":1}')


def with_bad_crc() -> bytes:
    frame = bytearray(good_json_request())
    frame[6] ^= 0xFF
    return bytes(frame)


def with_option_count(n: int) -> bytes:
    """A frame whose CRC is right but whose header carries ``n`` options (HL = 3 + n)."""
    options = (1, len(b"test.Echo"), 7, 7)[:n]
    return encode_frame(JSON_FLAG, options, b'test.Echo{"a":1}')


def with_method_length_beyond_payload() -> bytes:
    return encode_frame(JSON_FLAG, (1, 500), b'test.Echo{"a":1}')


BROKEN_STREAMS = {
    "bad_crc": with_bad_crc(),
    "hl4_one_option": with_option_count(1),
    "hl6_three_options": with_option_count(3),
    "method_length_beyond_payload": with_method_length_beyond_payload(),
}


# --- framing violations close only the offending connection ----------------------------------


@pytest.mark.parametrize("garbage", BROKEN_STREAMS.values(), ids=BROKEN_STREAMS.keys())
async def test_framing_violation_closes_only_that_connection(
    start_server: StartServer, garbage: bytes
) -> None:
    server = await start_server()
    other_r, other_w = await connect(server.bound)
    await echo_works(other_r, other_w, 1)
    bad_r, bad_w = await connect(server.bound)
    bad_w.write(garbage)
    await bad_w.drain()
    await assert_closed_by_server(bad_r)
    await echo_works(other_r, other_w, 2)
    await close(bad_w)
    await close(other_w)


async def test_framing_violation_after_good_calls_still_closes(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    await echo_works(reader, writer, 1)
    writer.write(with_bad_crc())
    await writer.drain()
    await assert_closed_by_server(reader)
    await close(writer)


async def test_oversize_declared_length_is_answered_from_the_header_without_allocating(
    start_server: StartServer,
) -> None:
    server = await start_server(max_frame_size=1024)
    other_r, other_w = await connect(server.bound)
    await echo_works(other_r, other_w, 1)
    big_r, big_w = await connect(server.bound)
    prefix = struct.pack("<BBI", 0x15, JSON_FLAG, 0xFFFFFFF0)
    header = prefix + struct.pack("<I", zlib.crc32(prefix)) + b"\0\0" + struct.pack("<II", 7, 9)
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        # Only the header and the method go out: the answer must not wait for the payload.
        big_w.write(header + b"test.Echo")
        await big_w.drain()
        resp = await read_response(big_r, timeout=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = assert_error(resp, ErrorCode.FRAME_TOO_LARGE, flag=JSON_FLAG, seq=7, method=b"test.Echo")
    assert "rpc.max_frame_size" in text
    assert "s3.WriteFromFile" in text
    assert peak - baseline < 4 * 1024 * 1024, f"peak grew by {peak - baseline} bytes"
    await echo_works(other_r, other_w, 2)
    await close(big_w)
    await close(other_w)


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
async def test_frame_over_max_frame_size_is_refused_and_the_connection_keeps_serving(
    start_server: StartServer, codec: int
) -> None:
    server = await start_server(max_frame_size=64)
    reader, writer = await connect(server.bound)
    big = request(codec, 1, "test.Echo", encode(codec, {"pad": "x" * 5000}))
    small = request(codec, 2, "test.Echo", encode(codec, {"b": 2}))
    # Pipelined: the oversized payload is skipped byte for byte, the next frame is read as usual.
    writer.write(big + small)
    await writer.drain()
    resp = await read_response(reader)
    assert_error(resp, ErrorCode.FRAME_TOO_LARGE, flag=codec, seq=1, method=b"test.Echo")
    resp = await read_response(reader)
    assert assert_ok(resp, flag=codec, seq=2, method="test.Echo") == {"echo": {"b": 2}}
    await close(writer)


async def test_oversized_frame_with_an_overlong_method_closes_the_connection(
    start_server: StartServer,
) -> None:
    server = await start_server(max_frame_size=64)
    reader, writer = await connect(server.bound)
    prefix = struct.pack("<BBI", 0x15, JSON_FLAG, 1 << 20)
    header = prefix + struct.pack("<I", zlib.crc32(prefix)) + b"\0\0" + struct.pack("<II", 1, 5000)
    writer.write(header)
    await writer.drain()
    await assert_closed_by_server(reader)
    await close(writer)


# --- bad payloads inside good frames get an ERROR frame; the connection keeps serving -------


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
async def test_unknown_method_gets_error_frame_and_connection_keeps_serving(
    start_server: StartServer, codec: int
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(codec, 41, "s3.NoSuchThing", encode(codec, {"a": 1})))
    text = assert_error(
        resp, ErrorCode.UNKNOWN_METHOD, flag=codec, seq=41, method=b"s3.NoSuchThing"
    )
    assert "s3.NoSuchThing" in text
    resp = await call(reader, writer, request(codec, 42, "test.Echo", encode(codec, {"b": 2})))
    assert assert_ok(resp, flag=codec, seq=42, method="test.Echo") == {"echo": {"b": 2}}
    await close(writer)


BAD_PARAMS = {
    "json_string": (JSON_FLAG, "test.Echo", b'"x"'),
    "json_list": (JSON_FLAG, "test.Echo", b"[1,2]"),
    "json_number": (JSON_FLAG, "test.Echo", b"5"),
    "json_invalid": (JSON_FLAG, "test.Echo", b'{"a":'),
    "json_bad_base64": (JSON_FLAG, "test.BytesEcho", b'{"content":"!!not base64!!"}'),
    "json_content_not_string": (JSON_FLAG, "test.BytesEcho", b'{"content":5}'),
    "msgpack_string": (MSGPACK_FLAG, "test.Echo", msgpack.packb("x")),
    "msgpack_list": (MSGPACK_FLAG, "test.Echo", msgpack.packb([1, 2])),
    "msgpack_invalid": (MSGPACK_FLAG, "test.Echo", b"\xc1"),
    "msgpack_truncated": (MSGPACK_FLAG, "test.Echo", b"\x81\xa1a"),
    "msgpack_content_not_bytes": (MSGPACK_FLAG, "test.BytesEcho", msgpack.packb({"content": 5})),
}


@pytest.mark.parametrize(("codec", "method", "body"), BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
async def test_bad_params_get_invalid_request_and_next_call_succeeds(
    start_server: StartServer, codec: int, method: str, body: bytes
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(codec, 3, method, body))
    assert_error(resp, ErrorCode.INVALID_REQUEST, flag=codec, seq=3, method=method.encode())
    await echo_works(reader, writer, 4)
    await close(writer)


UNSUPPORTED = {"raw": RAW_FLAG, "gob": GOB_FLAG, "proto": PROTO_FLAG, "no_codec": 0}


@pytest.mark.parametrize("flag", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
async def test_unsupported_codec_gets_error_frame_with_its_codec_bit(
    start_server: StartServer, flag: int
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(flag, 9, "test.Echo", b"\x01\x02"))
    assert_error(resp, ErrorCode.UNSUPPORTED_CODEC, flag=flag, seq=9, method=b"test.Echo")
    await echo_works(reader, writer, 10)
    await close(writer)


EMPTY_PARAMS = {
    "json_empty_body": (JSON_FLAG, b""),
    "json_empty_array": (JSON_FLAG, b"[]"),
    "json_empty_object": (JSON_FLAG, b"{}"),
    "json_null": (JSON_FLAG, b"null"),
    "msgpack_empty_body": (MSGPACK_FLAG, b""),
    "msgpack_empty_array": (MSGPACK_FLAG, b"\x90"),
    "msgpack_empty_map": (MSGPACK_FLAG, b"\x80"),
    "msgpack_nil": (MSGPACK_FLAG, b"\xc0"),
}


@pytest.mark.parametrize(("codec", "body"), EMPTY_PARAMS.values(), ids=EMPTY_PARAMS.keys())
async def test_empty_params_mean_no_params(
    start_server: StartServer, codec: int, body: bytes
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(codec, 5, "test.Echo", body))
    assert assert_ok(resp, flag=codec, seq=5, method="test.Echo") == {"echo": {}}
    await close(writer)


async def test_msgpack_params_with_integer_keys_are_accepted(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    body = msgpack.packb({1: "one", "name": "x", 2: [3]})
    resp = await call(reader, writer, request(MSGPACK_FLAG, 6, "test.Echo", body))
    echoed = assert_ok(resp, flag=MSGPACK_FLAG, seq=6, method="test.Echo")["echo"]
    assert echoed["name"] == "x"
    assert {str(k) for k in echoed} == {"1", "name", "2"}
    await close(writer)


async def test_handler_bug_gets_internal_error_and_daemon_keeps_serving(
    start_server: StartServer,
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    for seq, codec in ((1, JSON_FLAG), (2, MSGPACK_FLAG)):
        resp = await call(reader, writer, request(codec, seq, "test.Boom", encode(codec, {})))
        text = assert_error(
            resp, ErrorCode.INTERNAL_ERROR, flag=codec, seq=seq, method=b"test.Boom"
        )
        assert "handler bug" not in text, "the handler's own exception text must not leak"
    await echo_works(reader, writer, 3)
    other_r, other_w = await connect(server.bound)
    await echo_works(other_r, other_w, 1)
    await close(writer)
    await close(other_w)


@pytest.mark.parametrize("seq", [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
async def test_seq_is_echoed_verbatim(start_server: StartServer, seq: int) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(JSON_FLAG, seq, "test.Echo", b"{}"))
    assert_ok(resp, flag=JSON_FLAG, seq=seq, method="test.Echo")
    resp = await call(reader, writer, request(MSGPACK_FLAG, seq, "test.Nope", b"\x80"))
    assert_error(resp, ErrorCode.UNKNOWN_METHOD, flag=MSGPACK_FLAG, seq=seq, method=b"test.Nope")
    await close(writer)


async def test_repeated_seqs_are_answered_each_time(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    writer.write(
        b"".join(request(JSON_FLAG, 7, "test.Echo", orjson.dumps({"i": i})) for i in range(3))
    )
    await writer.drain()
    bodies = []
    for _ in range(3):
        resp = await read_response(reader)
        bodies.append(assert_ok(resp, flag=JSON_FLAG, seq=7, method="test.Echo")["echo"]["i"])
    assert sorted(bodies) == [0, 1, 2]
    await close(writer)


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
async def test_none_result_is_sent_as_a_non_empty_body(
    start_server: StartServer, codec: int
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(codec, 1, "test.Nothing", b""))
    assert resp.body  # read_response checks this for every frame; this is the sharpest case
    assert assert_ok(resp, flag=codec, seq=1, method="test.Nothing") is None
    await close(writer)


async def test_request_error_bit_is_not_echoed_on_success(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(JSON_FLAG | ERROR_FLAG, 1, "test.Echo", b"{}"))
    assert_ok(resp, flag=JSON_FLAG, seq=1, method="test.Echo")
    await close(writer)


async def test_non_utf8_method_name_is_echoed_byte_for_byte(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    method = b"s3.\xff\xfeRead"
    resp = await call(reader, writer, raw_request(JSON_FLAG, 3, method, b"{}"))
    assert resp.flags == JSON_FLAG | ERROR_FLAG
    assert resp.method == method
    await close(writer)


# --- object bytes follow the codec --------------------------------------------------------------


async def test_json_bytes_field_is_base64_both_ways(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    body = orjson.dumps({"content": base64.b64encode(ALL_BYTES).decode()})
    resp = await call(reader, writer, request(JSON_FLAG, 1, "test.BytesEcho", body))
    result = assert_ok(resp, flag=JSON_FLAG, seq=1, method="test.BytesEcho")
    assert result["type"] == "bytes"
    assert result["size"] == 256
    assert base64.b64decode(result["content"]) == ALL_BYTES
    await close(writer)


@pytest.mark.parametrize("as_bin", [False, True], ids=["str", "bin"])
async def test_msgpack_bytes_field_is_raw_in_and_bin_out(
    start_server: StartServer, as_bin: bool
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    # ext-msgpack sends PHP strings as str even when they are not UTF-8 (str16 = da 01 00).
    body = b"\x81\xa7content" + (b"\xc5\x01\x00" if as_bin else b"\xda\x01\x00") + ALL_BYTES
    resp = await call(reader, writer, request(MSGPACK_FLAG, 1, "test.BytesEcho", body))
    result = assert_ok(resp, flag=MSGPACK_FLAG, seq=1, method="test.BytesEcho")
    assert result == {"content": ALL_BYTES, "type": "bytes", "size": 256}
    marker = resp.body.index(b"\xa7content") + len(b"\xa7content")
    assert resp.body[marker] in (0xC4, 0xC5, 0xC6), "content must go out as msgpack bin"
    await close(writer)


# --- pipelining and concurrency ---------------------------------------------------------------


async def test_fifty_pipelined_requests_in_one_write_are_all_answered(
    start_server: StartServer,
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    sent: dict[int, tuple[int, int]] = {}
    frames = []
    for i in range(50):
        seq = 1000 + i * 7
        codec = JSON_FLAG if i % 2 else MSGPACK_FLAG
        sent[seq] = (codec, i)
        frames.append(request(codec, seq, "test.Echo", encode(codec, {"i": i, "pad": "p" * i})))
    writer.write(b"".join(frames))
    await writer.drain()
    answered: dict[int, Any] = {}
    for _ in range(50):
        resp = await read_response(reader)
        assert resp.seq in sent
        assert resp.seq not in answered
        codec, i = sent[resp.seq]
        answered[resp.seq] = assert_ok(resp, flag=codec, seq=resp.seq, method="test.Echo")
        assert answered[resp.seq] == {"echo": {"i": i, "pad": "p" * i}}
    assert set(answered) == set(sent)
    await close(writer)


async def test_slow_calls_on_one_connection_run_concurrently(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    started = time.monotonic()
    writer.write(
        b"".join(request(JSON_FLAG, s, "test.Slow", b'{"delay":0.3}') for s in range(1, 11))
    )
    await writer.drain()
    seqs = {(await read_response(reader)).seq for _ in range(10)}
    assert seqs == set(range(1, 11))
    # Ten 0.3 s sleeps one after another would take 3 s.
    assert time.monotonic() - started < 2.0
    await close(writer)


async def test_inflight_bound_still_answers_every_call(start_server: StartServer) -> None:
    server = await start_server(max_inflight_per_connection=2)
    reader, writer = await connect(server.bound)
    started = time.monotonic()
    writer.write(
        b"".join(request(JSON_FLAG, s, "test.Slow", b'{"delay":0.2,"tag":"t"}') for s in range(6))
    )
    await writer.drain()
    responses = [await read_response(reader) for _ in range(6)]
    assert sorted(r.seq for r in responses) == list(range(6))
    assert all(not r.is_error for r in responses)
    # At most two at a time: three rounds of 0.2 s at the very least.
    assert time.monotonic() - started >= 0.55
    await close(writer)


async def test_five_hundred_concurrent_connections_are_all_answered(
    start_server: StartServer,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = await start_server()
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(5):  # batches of 100 so the accept queue is never swamped
            conns += await asyncio.gather(*(connect(server.bound) for _ in range(100)))
        for i, (_, writer) in enumerate(conns):
            writer.write(request(JSON_FLAG, i, "test.Echo", orjson.dumps({"i": i})))
        responses = await asyncio.gather(*(read_response(r, timeout=30) for r, _ in conns))
        for i, resp in enumerate(responses):
            assert assert_ok(resp, flag=JSON_FLAG, seq=i, method="test.Echo") == {"echo": {"i": i}}
    finally:
        await asyncio.gather(*(close(w) for _, w in conns))


# --- unix sockets ------------------------------------------------------------------------------


async def test_unix_socket_serves_calls_with_default_mode_0660(
    start_server: StartServer, sock_dir: Path
) -> None:
    path = sock_dir / "rpc.sock"
    server = await start_server(listen=f"unix://{path}")
    assert server.bound == f"unix://{path}"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    reader, writer = await connect(server.bound)
    await echo_works(reader, writer, 1)
    resp = await call(
        reader, writer, request(MSGPACK_FLAG, 2, "test.Echo", msgpack.packb({"k": "v"}))
    )
    assert assert_ok(resp, flag=MSGPACK_FLAG, seq=2, method="test.Echo") == {"echo": {"k": "v"}}
    await close(writer)


async def test_unix_socket_gets_configured_mode(start_server: StartServer, sock_dir: Path) -> None:
    path = sock_dir / "rpc.sock"
    await start_server(listen=f"unix://{path}", socket_mode="0600")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_unix_socket_framing_violation_closes_only_that_connection(
    start_server: StartServer, sock_dir: Path
) -> None:
    server = await start_server(listen=f"unix://{sock_dir / 'rpc.sock'}")
    other_r, other_w = await connect(server.bound)
    await echo_works(other_r, other_w, 1)
    bad_r, bad_w = await connect(server.bound)
    bad_w.write(with_bad_crc())
    await bad_w.drain()
    await assert_closed_by_server(bad_r)
    await echo_works(other_r, other_w, 2)
    await close(bad_w)
    await close(other_w)


async def test_unix_socket_pipelined_calls_and_error_frames(
    start_server: StartServer, sock_dir: Path
) -> None:
    server = await start_server(listen=f"unix://{sock_dir / 'rpc.sock'}")
    reader, writer = await connect(server.bound)
    writer.write(
        request(JSON_FLAG, 1, "test.Slow", b'{"delay":0.2}')
        + request(MSGPACK_FLAG, 2, "test.Missing", b"\x80")
        + request(RAW_FLAG, 3, "test.Echo", b"raw")
        + request(JSON_FLAG, 4, "test.Echo", b'"x"')
        + request(MSGPACK_FLAG, 5, "test.Echo", msgpack.packb({"n": 5}))
    )
    await writer.drain()
    by_seq = {r.seq: r for r in [await read_response(reader) for _ in range(5)]}
    assert assert_ok(by_seq[1], flag=JSON_FLAG, seq=1, method="test.Slow")["slept"] == 0.2
    assert_error(
        by_seq[2], ErrorCode.UNKNOWN_METHOD, flag=MSGPACK_FLAG, seq=2, method=b"test.Missing"
    )
    assert_error(by_seq[3], ErrorCode.UNSUPPORTED_CODEC, flag=RAW_FLAG, seq=3, method=b"test.Echo")
    assert_error(by_seq[4], ErrorCode.INVALID_REQUEST, flag=JSON_FLAG, seq=4, method=b"test.Echo")
    assert assert_ok(by_seq[5], flag=MSGPACK_FLAG, seq=5, method="test.Echo") == {"echo": {"n": 5}}
    await close(writer)


async def test_stale_unix_socket_file_is_replaced(
    start_server: StartServer, sock_dir: Path
) -> None:
    path = sock_dir / "rpc.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a killed daemon leaves behind
    stale.close()
    server = await start_server(listen=f"unix://{path}")
    assert stat.S_ISSOCK(path.stat().st_mode)
    reader, writer = await connect(server.bound)
    await echo_works(reader, writer, 1)
    await close(writer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660


async def test_regular_file_at_unix_socket_path_is_refused(
    start_server: StartServer, sock_dir: Path
) -> None:
    path = sock_dir / "rpc.sock"
    path.write_text("precious data")
    with pytest.raises(S3RpcError) as caught:
        await start_server(listen=f"unix://{path}")
    assert caught.value.code == ErrorCode.INVALID_CONFIG
    assert path.read_text() == "precious data"


async def test_live_unix_socket_of_another_process_is_refused(
    start_server: StartServer, sock_dir: Path
) -> None:
    path = sock_dir / "rpc.sock"
    first = await start_server(listen=f"unix://{path}")
    with pytest.raises(S3RpcError) as caught:
        await start_server(listen=f"unix://{path}")
    assert caught.value.code == ErrorCode.INVALID_CONFIG
    reader, writer = await connect(first.bound)
    await echo_works(reader, writer, 1)
    await close(writer)


async def test_unix_socket_is_removed_on_shutdown(
    start_server: StartServer, sock_dir: Path
) -> None:
    path = sock_dir / "rpc.sock"
    server = await start_server(listen=f"unix://{path}")
    reader, writer = await connect(server.bound)
    await echo_works(reader, writer, 1)
    await asyncio.wait_for(server.shutdown(2), 15)
    assert not os.path.lexists(path)
    await close(writer)


# --- the stream itself ---------------------------------------------------------------------------


async def test_wrong_frame_version_closes_connection(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    prefix = struct.pack("<BBI", 0x25, JSON_FLAG, 11)
    crc = struct.pack("<I", zlib.crc32(prefix))
    writer.write(prefix + crc + b"\0\0" + struct.pack("<II", 1, 9) + b"test.Echo{}")
    await writer.drain()
    await assert_closed_by_server(reader)
    await close(writer)


async def test_request_trickled_byte_by_byte_is_answered(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    frame = request(MSGPACK_FLAG, 77, "test.Echo", msgpack.packb({"slow": "drip"}))
    for i in range(len(frame)):
        writer.write(frame[i : i + 1])
        await writer.drain()
        if i % 8 == 0:
            await asyncio.sleep(0.001)
    resp = await read_response(reader)
    assert assert_ok(resp, flag=MSGPACK_FLAG, seq=77, method="test.Echo") == {
        "echo": {"slow": "drip"}
    }
    await close(writer)


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
async def test_multi_megabyte_content_round_trips(start_server: StartServer, codec: int) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    content = os.urandom(3 * 1024 * 1024)
    if codec == JSON_FLAG:
        body = orjson.dumps({"content": base64.b64encode(content).decode()})
    else:
        body = msgpack.packb({"content": content}, use_bin_type=True)
    resp = await call(reader, writer, request(codec, 1, "test.BytesEcho", body))
    result = assert_ok(resp, flag=codec, seq=1, method="test.BytesEcho")
    got = base64.b64decode(result["content"]) if codec == JSON_FLAG else result["content"]
    assert result["size"] == len(content)
    assert got == content
    await close(writer)


async def test_multi_megabyte_php_style_content_round_trips(start_server: StartServer) -> None:
    """PHP's ext-msgpack packs binary strings as msgpack ``str``, and json_encode escapes
    every ``/`` of base64 as ``\\/``: both large forms are taken from the frame intact."""
    server = await start_server()
    reader, writer = await connect(server.bound)
    content = os.urandom(3 * 1024 * 1024 + 7)
    php_msgpack = msgpack.packb({"content": content}, use_bin_type=False)
    php_json = orjson.dumps({"content": base64.b64encode(content).decode()}).replace(b"/", b"\\/")
    for seq, (codec, body) in enumerate([(MSGPACK_FLAG, php_msgpack), (JSON_FLAG, php_json)]):
        resp = await call(reader, writer, request(codec, seq, "test.BytesEcho", body))
        result = assert_ok(resp, flag=codec, seq=seq, method="test.BytesEcho")
        got = base64.b64decode(result["content"]) if codec == JSON_FLAG else result["content"]
        assert result["size"] == len(content)
        assert got == content
    await close(writer)


async def test_client_vanishing_mid_call_does_not_disturb_others(start_server: StartServer) -> None:
    server = await start_server()
    _gone_r, gone_w = await connect(server.bound)
    gone_w.write(request(JSON_FLAG, 1, "test.Slow", b'{"delay":0.2}'))
    await gone_w.drain()
    gone_w.transport.abort()  # RST with a call in flight
    reader, writer = await connect(server.bound)
    resp = await call(reader, writer, request(JSON_FLAG, 2, "test.Slow", b'{"delay":0.3}'))
    assert assert_ok(resp, flag=JSON_FLAG, seq=2, method="test.Slow")["slept"] == 0.3
    await echo_works(reader, writer, 3)
    await close(writer)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_loopback_listener_reports_bracketed_address(start_server: StartServer) -> None:
    server = await start_server(listen="tcp://[::1]:0")
    assert server.bound.startswith("tcp://[::1]:")
    reader, writer = await connect(server.bound)
    await echo_works(reader, writer, 1)
    await close(writer)

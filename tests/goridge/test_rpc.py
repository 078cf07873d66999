"""The RPC mapping over frames: parsing requests, encoding responses and ERROR frames."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3rpc.goridge import (
    RPC_HEADER_SIZE,
    Flag,
    Frame,
    FrameDecoder,
    encode_error,
    encode_request,
    encode_response,
    parse_request,
)
from s3rpc.goridge.codec import JSON, MSGPACK

SETTINGS = settings(max_examples=200, deadline=None)


def decode(data: bytes) -> Frame:
    decoder = FrameDecoder()
    decoder.receive_data(data)
    frame = decoder.next_frame()
    assert isinstance(frame, Frame)
    return frame


def test_parse_request_splits_method_and_body() -> None:
    frame = Frame(0x08, (42, 7), b's3.Read{"a":1}')
    request = parse_request(frame)
    assert (request.seq, request.flags, request.method) == (42, 0x08, "s3.Read")
    assert bytes(request.body) == b'{"a":1}'
    assert isinstance(request.body, memoryview)


@pytest.mark.parametrize("extra", [Flag.ERROR, Flag.CONTROL, Flag.ERROR | Flag.CONTROL])
def test_request_codec_flags_drop_error_and_control(extra: Flag) -> None:
    request = parse_request(Frame(Flag.MSGPACK | extra, (1, 0), b""))
    assert request.codec_flags == Flag.MSGPACK


@pytest.mark.parametrize("codec_flag", [Flag.JSON, Flag.MSGPACK])
def test_response_keeps_request_codec_and_drops_error_and_control(codec_flag: Flag) -> None:
    out = b"".join(encode_response(codec_flag | Flag.CONTROL | Flag.ERROR, 3, "s3.X", b"{}"))
    assert out[1] == codec_flag


def test_response_body_is_passed_through_uncopied() -> None:
    body = b"x" * 1000
    parts = encode_response(Flag.JSON, 1, "s3.Read", body)
    assert parts[-1] is body


@pytest.mark.parametrize(
    ("request_flags", "expected"),
    [(0x08, 0x48), (0x10, 0x50), (0x00, 0x40), (0x08 | 0x01, 0x48), (0x48, 0x48)],
)
def test_error_frame_flags_are_request_codec_plus_error(request_flags: int, expected: int) -> None:
    out = encode_error(request_flags, 1, "s3.Read", "FILE_NOT_FOUND: x")
    assert out[1] == expected


def test_error_frame_body_is_plain_utf8_text_even_for_msgpack() -> None:
    text = "BUCKET_NOT_FOUND: bucket 'n\u00e9' is not configured"
    request = parse_request(decode(encode_error(Flag.MSGPACK, 9, "s3.Exists", text)))
    assert request.method == "s3.Exists"
    assert bytes(request.body) == text.encode()


def test_seq_is_echoed_modulo_two_to_the_32() -> None:
    out = b"".join(encode_response(Flag.JSON, 2**32 + 5, "m", b"{}"))
    assert struct.unpack_from("<I", out, 12)[0] == 5


@SETTINGS
@given(
    flags=st.sampled_from([Flag.JSON, Flag.MSGPACK]),
    seq=st.integers(0, 2**32 - 1),
    method=st.text(min_size=1, max_size=30),
    text=st.text(max_size=200),
    is_error=st.booleans(),
)
def test_every_response_has_canonical_header(
    flags: Flag, seq: int, method: str, text: str, is_error: bool
) -> None:
    if is_error:
        out = encode_error(flags, seq, method, text)
    else:
        out = b"".join(encode_response(flags, seq, method, JSON.encode(text)))
    method_b = method.encode()
    assert out[0] == 0x15
    assert out[10:12] == b"\x00\x00"
    assert struct.unpack_from("<I", out, 6)[0] == zlib.crc32(out[:6])
    assert struct.unpack_from("<II", out, 12) == (seq, len(method_b))
    assert struct.unpack_from("<I", out, 2)[0] == len(out) - RPC_HEADER_SIZE
    assert out[RPC_HEADER_SIZE:].startswith(method_b)
    request = parse_request(decode(out))
    assert (request.seq, request.method) == (seq, method)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@SETTINGS
@given(json_values)
def test_codecs_never_produce_an_empty_success_body(value: object) -> None:
    # PHP fails on an empty success body, so every encoded result must carry bytes.
    assert JSON.encode(value)
    assert MSGPACK.encode(value)


def test_request_round_trips_through_decoder() -> None:
    data = b"".join(encode_request(Flag.MSGPACK, 11, "s3.GetPublicURL", b"\x80"))
    request = parse_request(decode(data))
    assert (request.seq, request.flags, request.method, bytes(request.body)) == (
        11,
        Flag.MSGPACK,
        "s3.GetPublicURL",
        b"\x80",
    )

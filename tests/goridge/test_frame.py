"""The sans-IO frame decoder and encoder, fed byte strings only."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3rpc.goridge import (
    HEADER_SIZE,
    NEED_DATA,
    RPC_HEADER_SIZE,
    Flag,
    Frame,
    FrameDecoder,
    ProtocolError,
    encode_frame,
)
from s3rpc.goridge.frame import OversizedFrame, encode_header
from s3rpc.goridge.rpc import encode_request, parse_request

SETTINGS = settings(max_examples=200, deadline=None)
U32 = st.integers(min_value=0, max_value=2**32 - 1)


def rpc_frame(flags: int, seq: int, method: bytes, body: bytes) -> bytes:
    return encode_frame(flags, (seq, len(method)), method + body)


def drain(decoder: FrameDecoder) -> list[Frame]:
    frames = []
    while (frame := decoder.next_frame()) is not NEED_DATA:
        assert isinstance(frame, Frame)
        frames.append(frame)
    return frames


def with_prefix(byte0: int, flags: int, length: int, options: bytes = b"") -> bytes:
    """A header with a *correct* CRC, so only the field under test is wrong."""
    prefix = struct.pack("<BBI", byte0, flags, length)
    return prefix + struct.pack("<I", zlib.crc32(prefix)) + b"\x00\x00" + options


frame_parts = st.tuples(
    st.integers(min_value=0, max_value=255),
    U32,
    st.binary(max_size=40),
    st.binary(max_size=300),
)


# --- incremental decoding ----------------------------------------------------------------


@SETTINGS
@given(st.lists(frame_parts, min_size=1, max_size=5))
def test_bytes_fed_one_at_a_time_decode_to_the_same_frames(
    parts: list[tuple[int, int, bytes, bytes]],
) -> None:
    stream = b"".join(rpc_frame(*p) for p in parts)
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(stream)):
        decoder.receive_data(stream[i : i + 1])
        frames.extend(drain(decoder))
    assert [(f.flags, f.options[0], f.payload) for f in frames] == [
        (flags, seq, method + body) for flags, seq, method, body in parts
    ]
    assert decoder.buffered == 0


@SETTINGS
@given(st.lists(frame_parts, min_size=1, max_size=5), st.data())
def test_bytes_fed_in_random_chunks_decode_to_the_same_frames(
    parts: list[tuple[int, int, bytes, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(rpc_frame(*p) for p in parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        frames.extend(drain(decoder))
    assert frames == [
        Frame(flags, (seq, len(method)), method + body) for flags, seq, method, body in parts
    ]


def test_several_frames_in_one_chunk_all_decode() -> None:
    stream = (
        rpc_frame(0x08, 1, b"s3.Read", b"{}")
        + rpc_frame(0x10, 2, b"s3.Exists", b"\x80")
        + rpc_frame(0x08, 3, b"s3.ListBuckets", b"[]")
    )
    decoder = FrameDecoder()
    decoder.receive_data(stream)
    frames = drain(decoder)
    assert [parse_request(f).method for f in frames] == ["s3.Read", "s3.Exists", "s3.ListBuckets"]
    assert [f.options[0] for f in frames] == [1, 2, 3]
    assert decoder.buffered == 0


def test_partial_frame_after_whole_frame_waits_for_the_rest() -> None:
    first, second = rpc_frame(0x08, 1, b"a", b"{}"), rpc_frame(0x08, 2, b"b", b"[]")
    decoder = FrameDecoder()
    decoder.receive_data(first + second[:21])
    assert [f.options[0] for f in drain(decoder)] == [1]
    decoder.receive_data(second[21:])
    assert [f.options[0] for f in drain(decoder)] == [2]


def test_empty_payload_frame_decodes() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(0x08, (7, 0), b""))
    assert decoder.next_frame() == Frame(0x08, (7, 0), b"")


# --- round trips ---------------------------------------------------------------------------


@SETTINGS
@given(
    flags=st.integers(min_value=0, max_value=255),
    seq=U32,
    method=st.text(max_size=40),
    body=st.binary(max_size=2000),
)
def test_encode_then_decode_round_trips(flags: int, seq: int, method: str, body: bytes) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"".join(encode_request(flags, seq, method, body)))
    frame = decoder.next_frame()
    assert isinstance(frame, Frame)
    assert frame.flags == flags
    request = parse_request(frame)
    assert (request.seq, request.method, bytes(request.body)) == (seq, method, body)


@pytest.mark.parametrize("seq", [0, 1, 2**31, 2**32 - 1])
def test_seq_extremes_round_trip(seq: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(rpc_frame(0x08, seq, b"s3.Read", b"{}"))
    frame = decoder.next_frame()
    assert isinstance(frame, Frame)
    assert parse_request(frame).seq == seq


def test_encode_header_matches_encode_frame_layout() -> None:
    payload = b"s3.Read{}"
    header = encode_header(0x08, (5, 7), len(payload))
    assert len(header) == RPC_HEADER_SIZE
    assert header + payload == encode_frame(0x08, (5, 7), payload)
    assert header[0] == 0x15
    assert struct.unpack_from("<I", header, 6)[0] == zlib.crc32(header[:6])


# --- rejecting bad headers -------------------------------------------------------------------


def test_bad_crc_raises_as_soon_as_twelve_bytes_are_in() -> None:
    frame = bytearray(rpc_frame(0x08, 1, b"s3.Read", b"{}"))
    frame[6] ^= 0xFF
    decoder = FrameDecoder()
    decoder.receive_data(bytes(frame[: HEADER_SIZE - 1]))
    assert decoder.next_frame() is NEED_DATA
    decoder.receive_data(bytes(frame[HEADER_SIZE - 1 : HEADER_SIZE]))
    with pytest.raises(ProtocolError, match="CRC"):
        decoder.next_frame()


@pytest.mark.parametrize("flip", [0, 1, 2, 5])
def test_corrupted_crc_covered_byte_is_rejected(flip: int) -> None:
    frame = bytearray(rpc_frame(0x08, 1, b"s3.Read", b"{}"))
    frame[flip] ^= 0x01
    decoder = FrameDecoder()
    decoder.receive_data(bytes(frame))
    with pytest.raises(ProtocolError, match="CRC"):
        decoder.next_frame()


@pytest.mark.parametrize("words", [3, 4, 6, 15])
def test_header_length_other_than_five_words_is_rejected(words: int) -> None:
    options = struct.pack(f"<{words - 3}I", *range(1, words - 2)) if words > 3 else b""
    data = with_prefix(0x10 | words, 0x08, 2, options) + b"{}"
    decoder = FrameDecoder()
    decoder.receive_data(data)
    with pytest.raises(ProtocolError, match="exactly 2 options"):
        decoder.next_frame()


@pytest.mark.parametrize("words", [3, 4, 6])
def test_wrong_option_count_is_rejected_from_the_first_twelve_bytes(words: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(with_prefix(0x10 | words, 0x08, 100))
    with pytest.raises(ProtocolError):
        decoder.next_frame()


@pytest.mark.parametrize("version", [0, 2, 15])
def test_unsupported_version_is_rejected(version: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(with_prefix((version << 4) | 5, 0x08, 2, struct.pack("<II", 1, 0)))
    with pytest.raises(ProtocolError, match="version"):
        decoder.next_frame()


def test_method_length_beyond_payload_is_rejected() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(with_prefix(0x15, 0x08, 4, struct.pack("<II", 1, 5)))
    with pytest.raises(ProtocolError, match="method length"):
        decoder.next_frame()


def test_method_length_equal_to_payload_is_accepted() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(rpc_frame(0x08, 1, b"s3.Read", b""))
    frame = decoder.next_frame()
    assert isinstance(frame, Frame)
    assert parse_request(frame).method == "s3.Read"


def test_oversized_frame_is_reported_from_its_header_and_its_payload_skipped() -> None:
    decoder = FrameDecoder(max_payload=1024)
    decoder.receive_data(encode_header(0x08, (9, 7), 5000) + b"s3.Writ" + b"x" * 100)
    event = decoder.next_frame()
    assert isinstance(event, OversizedFrame)
    assert (event.flags, event.seq, event.method) == (0x08, 9, b"s3.Writ")
    assert (event.declared, event.limit) == (5000, 1024)
    assert decoder.buffered == 0, "nothing of the payload is kept"
    assert decoder.pending_payload == 5000 - 7 - 100
    assert not decoder.idle
    # The rest of the payload is dropped as it arrives; the next frame decodes normally.
    decoder.receive_data(b"y" * (5000 - 7 - 100) + rpc_frame(0x08, 10, b"m", b"{}"))
    frame = decoder.next_frame()
    assert isinstance(frame, Frame)
    assert frame.options == (10, 1)
    assert decoder.idle


def test_oversized_frame_payload_skipped_across_many_small_reads() -> None:
    decoder = FrameDecoder(max_payload=16)
    data = rpc_frame(0x10, 3, b"m", b"z" * 99) + rpc_frame(0x10, 4, b"m", b"ok")
    events = []
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1])
        while (event := decoder.next_frame()) is not NEED_DATA:
            events.append(event)
    assert [type(e).__name__ for e in events] == ["OversizedFrame", "Frame"]
    assert events[1].payload == b"mok"


def test_oversized_frame_with_a_huge_method_length_is_a_protocol_error() -> None:
    decoder = FrameDecoder(max_payload=1024)
    decoder.receive_data(encode_header(0x08, (1, 100_000), 2**32 - 1))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.next_frame()
    assert decoder.buffered == 0


def test_oversized_frame_waits_for_its_header_before_reporting() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_header(0x08, (1, 7), 2**32 - 1)[:HEADER_SIZE])
    assert decoder.next_frame() is NEED_DATA


def test_payload_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_payload=16)
    decoder.receive_data(rpc_frame(0x08, 1, b"m", b"x" * 15))
    assert isinstance(decoder.next_frame(), Frame)


def test_decoder_buffers_only_what_it_was_given_while_waiting_for_payload() -> None:
    decoder = FrameDecoder(max_payload=10 * 1024 * 1024)
    decoder.receive_data(encode_header(0x08, (1, 7), 10 * 1024 * 1024))
    assert decoder.next_frame() is NEED_DATA
    assert decoder.buffered == 0
    assert decoder.pending_payload == 10 * 1024 * 1024
    decoder.receive_data(b"s3.Read")
    assert decoder.next_frame() is NEED_DATA
    assert decoder.buffered == 7
    assert decoder.pending_payload == 10 * 1024 * 1024 - 7


def test_decoder_is_unusable_after_an_error() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x00" * RPC_HEADER_SIZE)
    with pytest.raises(ProtocolError) as first:
        decoder.next_frame()
    good = rpc_frame(0x08, 1, b"s3.Read", b"{}")
    with pytest.raises(ProtocolError) as again:
        decoder.receive_data(good)
    assert again.value is first.value
    with pytest.raises(ProtocolError):
        decoder.next_frame()
    assert decoder.buffered == 0


def test_encode_frame_refuses_more_options_than_the_header_can_describe() -> None:
    with pytest.raises(ValueError, match="at most 12 options"):
        encode_frame(0x08, tuple(range(13)), b"")


@settings(max_examples=50, deadline=None)
@given(
    size=st.integers(min_value=64 * 1024 + 1, max_value=300 * 1024),
    chunk=st.integers(min_value=1, max_value=100_000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_large_payloads_received_in_place_decode_like_small_ones(
    size: int, chunk: int, seed: int
) -> None:
    body = random.Random(seed).randbytes(size)
    big = encode_frame(Flag.MSGPACK, (7, 2), b"s3" + body)
    small = encode_frame(Flag.JSON, (8, 2), b"s3{}")
    stream = big + small + big
    decoder = FrameDecoder()
    frames = []
    for start in range(0, len(stream), chunk):
        decoder.receive_data(stream[start : start + chunk])
        while isinstance(frame := decoder.next_frame(), Frame):
            frames.append(frame)
    assert [f.options for f in frames] == [(7, 2), (8, 2), (7, 2)]
    assert bytes(frames[0].payload) == b"s3" + body == bytes(frames[2].payload)
    assert bytes(frames[1].payload) == b"s3{}"
    assert decoder.buffered == 0
    assert decoder.pending_payload == 0

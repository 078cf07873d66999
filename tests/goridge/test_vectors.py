"""The captured PHP client frames (``vectors/vectors.json``) as table-driven cases.

Request bytes are authoritative (we must parse them exactly); response bytes are one valid
answer, so re-encoding is checked field by field and, where the body is reused, byte for byte.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from s3rpc.goridge import (
    NEED_DATA,
    RPC_HEADER_SIZE,
    Flag,
    Frame,
    FrameDecoder,
    ProtocolError,
    codec_for_flags,
    encode_error,
    encode_response,
    parse_request,
)
from s3rpc.goridge.codec import JSON, MSGPACK

# A copy of ../shared/goridge-vectors; see vectors/README.md for where it came from.
VECTORS_FILE = Path(__file__).resolve().parent / "vectors" / "vectors.json"

DATA: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = DATA["vectors"]
TOLERANCE: dict[str, Any] = DATA["php_client_tolerance"]
ALL_BYTES = bytes(range(256))

by_name = pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
ok_vectors = [v for v in VECTORS if "body_error_text" not in v["response"]]
error_vectors = [v for v in VECTORS if "body_error_text" in v["response"]]


def expected_value(node: Any) -> Any:
    """Turn the file's JSON stand-ins into what our codecs produce.

    ``{"$bytes_hex"}`` is a msgpack bin (Python ``bytes``); ``{"$str_bytes_hex"}`` is a msgpack
    str that is not UTF-8, which our msgpack codec yields as a surrogate-escaped ``str``.
    """
    if isinstance(node, dict):
        if set(node) == {"$bytes_hex"}:
            return bytes.fromhex(node["$bytes_hex"])
        if set(node) == {"$str_bytes_hex"}:
            return bytes.fromhex(node["$str_bytes_hex"]).decode("utf-8", "surrogateescape")
        return {key: expected_value(value) for key, value in node.items()}
    if isinstance(node, list):
        return [expected_value(value) for value in node]
    return node


def decode_one(data: bytes) -> Frame:
    decoder = FrameDecoder()
    decoder.receive_data(data)
    frame = decoder.next_frame()
    assert isinstance(frame, Frame)
    assert decoder.next_frame() is NEED_DATA
    assert decoder.buffered == 0
    return frame


def header_fields(data: bytes) -> dict[str, Any]:
    byte0, flags, length, crc, b10, b11, seq, method_len = struct.unpack_from("<BBIIBBII", data)
    return {
        "byte0": byte0,
        "flags": flags,
        "length": length,
        "crc": crc,
        "crc_ok": zlib.crc32(data[:6]) == crc,
        "byte10": b10,
        "byte11": b11,
        "options": [seq, method_len],
    }


def assert_canonical(data: bytes, *, flags: int, seq: int, method: str) -> bytes:
    """The layout every response of ours must have; returns the body after the method."""
    method_b = method.encode()
    fields = header_fields(data)
    assert fields["byte0"] == 0x15
    assert fields["flags"] == flags
    assert fields["crc_ok"]
    assert fields["byte10"] == 0
    assert fields["byte11"] == 0
    assert fields["options"] == [seq, len(method_b)]
    assert fields["length"] == len(data) - RPC_HEADER_SIZE
    payload = data[RPC_HEADER_SIZE:]
    assert payload.startswith(method_b)
    body = payload[len(method_b) :]
    assert body, "a response must always carry a body"
    return body


# --- requests ------------------------------------------------------------------------------


@by_name
def test_request_parses_to_listed_seq_method_and_flags(vector: dict[str, Any]) -> None:
    req = vector["request"]
    frame = decode_one(bytes.fromhex(req["hex"]))
    assert frame.flags == int(req["header"]["flags_hex"], 16)
    assert list(frame.options) == req["header"]["options"]
    request = parse_request(frame)
    assert request.seq == req["seq"]
    assert request.method == req["method"]
    assert bytes(request.body) == bytes.fromhex(req["body_hex"])


@by_name
def test_request_body_decodes_to_listed_params(vector: dict[str, Any]) -> None:
    req = vector["request"]
    request = parse_request(decode_one(bytes.fromhex(req["hex"])))
    codec = codec_for_flags(request.flags)
    assert codec.decode(request.body) == expected_value(req["body_decoded"])


def test_all_requests_decode_from_one_connection_stream_in_order() -> None:
    stream = b"".join(bytes.fromhex(v["request"]["hex"]) for v in VECTORS)
    decoder = FrameDecoder()
    decoder.receive_data(stream)
    seqs = []
    while (frame := decoder.next_frame()) is not NEED_DATA:
        assert isinstance(frame, Frame)
        seqs.append(parse_request(frame).seq)
    assert seqs == [v["request"]["seq"] for v in VECTORS]
    assert decoder.buffered == 0


def test_json_write_content_base64_decodes_to_all_byte_values() -> None:
    vector = VECTORS[3]
    assert vector["name"] == "json_write_binary_unicode_path"
    request = parse_request(decode_one(bytes.fromhex(vector["request"]["hex"])))
    params = JSON.decode(request.body)
    assert params["pathname"] == "golden/na\u00efve \u00fc.bin"
    assert JSON.to_bytes(params["content"], "content") == ALL_BYTES


def test_msgpack_write_content_arrives_as_str_and_converts_to_exact_raw_bytes() -> None:
    vector = VECTORS[6]
    assert vector["name"] == "msgpack_write_binary"
    request = parse_request(decode_one(bytes.fromhex(vector["request"]["hex"])))
    params = MSGPACK.decode(request.body)
    # ext-msgpack packs PHP strings as str (da 01 00 + raw bytes): never base64, not UTF-8.
    assert b"\xa7content\xda\x01\x00" + ALL_BYTES in bytes(request.body)
    assert isinstance(params["content"], str)
    assert MSGPACK.to_bytes(params["content"], "content") == ALL_BYTES


@pytest.mark.parametrize(
    "vector", [VECTORS[4], VECTORS[9]], ids=["json_empty_array", "msgpack_empty_array"]
)
def test_empty_php_array_params_decode_to_empty_list(vector: dict[str, Any]) -> None:
    request = parse_request(decode_one(bytes.fromhex(vector["request"]["hex"])))
    assert codec_for_flags(request.flags).decode(request.body) == []


# --- responses -----------------------------------------------------------------------------


@by_name
def test_response_parses_with_echoed_seq_and_method(vector: dict[str, Any]) -> None:
    resp = vector["response"]
    frame = decode_one(bytes.fromhex(resp["hex"]))
    parsed = parse_request(frame)
    assert parsed.seq == vector["request"]["seq"] == resp["seq"]
    assert parsed.method == vector["request"]["method"] == resp["method"]
    assert frame.flags == int(resp["header"]["flags_hex"], 16)


@pytest.mark.parametrize("vector", ok_vectors, ids=[v["name"] for v in ok_vectors])
def test_success_response_body_decodes_with_request_codec(vector: dict[str, Any]) -> None:
    resp = vector["response"]
    parsed = parse_request(decode_one(bytes.fromhex(resp["hex"])))
    assert not parsed.flags & Flag.ERROR
    codec = codec_for_flags(int(vector["request"]["header"]["flags_hex"], 16))
    assert codec.decode(parsed.body) == expected_value(resp["body_decoded"])


@pytest.mark.parametrize("vector", error_vectors, ids=[v["name"] for v in error_vectors])
def test_error_response_body_is_plain_utf8_text(vector: dict[str, Any]) -> None:
    resp = vector["response"]
    parsed = parse_request(decode_one(bytes.fromhex(resp["hex"])))
    assert parsed.flags & Flag.ERROR
    assert bytes(parsed.body).decode("utf-8") == resp["body_error_text"]


@pytest.mark.parametrize("vector", ok_vectors, ids=[v["name"] for v in ok_vectors])
def test_encode_response_with_vector_body_reproduces_response_bytes(
    vector: dict[str, Any],
) -> None:
    req, resp = vector["request"], vector["response"]
    request = parse_request(decode_one(bytes.fromhex(req["hex"])))
    out = b"".join(
        encode_response(request.flags, request.seq, request.method, bytes.fromhex(resp["body_hex"]))
    )
    assert_canonical(
        out, flags=int(resp["header"]["flags_hex"], 16), seq=req["seq"], method=req["method"]
    )
    assert out[6:10].hex() == resp["header"]["crc32_hex_le_bytes"]
    assert out == bytes.fromhex(resp["hex"])


@pytest.mark.parametrize("vector", error_vectors, ids=[v["name"] for v in error_vectors])
def test_encode_error_with_vector_text_reproduces_response_bytes(vector: dict[str, Any]) -> None:
    req, resp = vector["request"], vector["response"]
    request = parse_request(decode_one(bytes.fromhex(req["hex"])))
    out = encode_error(request.flags, request.seq, request.method, resp["body_error_text"])
    flags = int(resp["header"]["flags_hex"], 16)
    assert flags == request.flags | Flag.ERROR
    assert_canonical(out, flags=flags, seq=req["seq"], method=req["method"])
    assert out[6:10].hex() == resp["header"]["crc32_hex_le_bytes"]
    assert out == bytes.fromhex(resp["hex"])


@pytest.mark.parametrize("vector", ok_vectors, ids=[v["name"] for v in ok_vectors])
def test_reencoding_decoded_result_with_our_codec_is_equivalent(vector: dict[str, Any]) -> None:
    req, resp = vector["request"], vector["response"]
    codec = codec_for_flags(int(req["header"]["flags_hex"], 16))
    value = expected_value(resp["body_decoded"])
    out = b"".join(encode_response(codec.flag, req["seq"], req["method"], codec.encode(value)))
    body = assert_canonical(out, flags=codec.flag, seq=req["seq"], method=req["method"])
    assert codec.decode(body) == value


def test_msgpack_read_response_content_is_bin_holding_the_written_bytes() -> None:
    vector = VECTORS[7]
    assert vector["name"] == "msgpack_read_binary"
    value = expected_value(vector["response"]["body_decoded"])
    assert value["content"] == ALL_BYTES
    body = MSGPACK.encode(value)
    assert b"\xa7content\xc5\x01\x00" + ALL_BYTES in body
    assert msgpack.unpackb(body, raw=False)["content"] == ALL_BYTES


# --- what the PHP client tolerates versus what we send ---------------------------------------

CASES: list[dict[str, Any]] = TOLERANCE["cases"]
by_case = pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
TOLERANCE_REQUEST = bytes.fromhex(TOLERANCE["request_hex"])
CANONICAL_RESULT = {
    "success": True,
    "pathname": "golden/hello.txt",
    "size": 6,
    "last_modified": 1767225600,
}


def our_answer(case: dict[str, Any]) -> bytes:
    """What our encoder sends for the tolerance request, in place of the case's frame."""
    request = parse_request(decode_one(TOLERANCE_REQUEST))
    if case["name"].startswith("error_frame"):
        text = bytes.fromhex(case["response_hex"])[RPC_HEADER_SIZE + 8 :].decode()
        return encode_error(request.flags, request.seq, request.method, text)
    body = JSON.encode(CANONICAL_RESULT)
    return b"".join(encode_response(request.flags, request.seq, request.method, body))


def test_tolerance_request_is_vector_zero_request() -> None:
    assert TOLERANCE["request_hex"] == VECTORS[0]["request"]["hex"]


@by_case
def test_our_encoder_always_produces_canonical_layout(case: dict[str, Any]) -> None:
    out = our_answer(case)
    is_error = case["name"].startswith("error_frame")
    flags = int(Flag.JSON | Flag.ERROR) if is_error else int(Flag.JSON)
    assert_canonical(out, flags=flags, seq=1, method="s3.Write")
    # ...and our own strict decoder accepts it.
    decode_one(out)


@by_case
def test_our_answer_matches_the_case_only_when_the_case_is_canonical(
    case: dict[str, Any],
) -> None:
    canonical = {"canonical", "error_frame"}
    theirs = bytes.fromhex(case["response_hex"])
    if case["name"] in canonical:
        assert our_answer(case) == theirs
    else:
        assert our_answer(case) != theirs


@pytest.mark.parametrize("name", ["crc_zeroed", "version_0", "no_options_hl3", "three_options"])
def test_strict_decoder_rejects_malformed_tolerance_frames(name: str) -> None:
    (case,) = [c for c in CASES if c["name"] == name]
    decoder = FrameDecoder()
    decoder.receive_data(bytes.fromhex(case["response_hex"]))
    with pytest.raises(ProtocolError):
        decoder.next_frame()

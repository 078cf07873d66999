"""Large object bytes taken from the frame and written into it without copies
(:mod:`s3rpc.goridge.zerocopy`), seen through the codecs that use it."""

from __future__ import annotations

import base64
import mmap
import os

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3rpc.goridge import CodecError
from s3rpc.goridge.codec import JSON, MSGPACK, STEP
from s3rpc.goridge.zerocopy import Base64InPlace

# --- large object bytes taken from a msgpack frame without a copy ---------------------------

LARGE_CONTENT = os.urandom(200_000)
RAW = frozenset({"content"})


def _php_style(fields: dict[str, object]) -> bytes:
    """Packed as PHP's ext-msgpack does: every string, binary or not, as msgpack ``str``."""
    return msgpack.packb(fields, use_bin_type=False)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"pathname": "a.bin", "content": LARGE_CONTENT, "meta": {"k": [1, 2.5]}}),
        _php_style({"pathname": "a.bin", "content": LARGE_CONTENT, "meta": {"k": [1, 2.5]}}),
    ],
    ids=["bin", "php-str"],
)
def test_msgpack_large_content_is_a_view_into_the_frame_not_a_copy(body: bytes) -> None:
    value = MSGPACK.decode(body, RAW)
    content = value["content"]
    assert isinstance(content, memoryview)
    assert content.obj is body  # the frame's own buffer
    assert MSGPACK.to_bytes(content, "content") == LARGE_CONTENT
    assert value["pathname"] == "a.bin"
    assert value["meta"] == {"k": [1, 2.5]}


def test_msgpack_only_named_fields_become_views() -> None:
    body = msgpack.packb({"pathname": "p", "content": LARGE_CONTENT, "other": LARGE_CONTENT})
    value = MSGPACK.decode(body, RAW)
    assert isinstance(value["content"], memoryview)
    assert value["other"] == LARGE_CONTENT
    assert isinstance(value["other"], bytes)


def test_msgpack_small_content_and_small_bodies_decode_as_before() -> None:
    body = msgpack.packb({"pathname": "p", "content": b"tiny", "pad": "x" * 100_000})
    assert MSGPACK.decode(body, RAW) == msgpack.unpackb(body)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**63), max_value=2**64 - 1)
            | st.floats(allow_nan=False)
            | st.text(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=6,
        ),
        max_size=5,
    ),
    content=st.sampled_from([b"", b"small", LARGE_CONTENT]),
    cut=st.integers(min_value=0, max_value=40),
)
def test_msgpack_split_decoding_matches_unpackb_or_refuses_alike(
    fields: dict[str, object], content: bytes, cut: int
) -> None:
    body = msgpack.packb({**fields, "content": content})
    expected = msgpack.unpackb(body, strict_map_key=False)
    value = MSGPACK.decode(body, RAW)
    assert {k: bytes(v) if isinstance(v, memoryview) else v for k, v in value.items()} == expected
    truncated = body[: len(body) - cut] if cut else body + b"\xc0"
    with pytest.raises(CodecError):
        MSGPACK.decode(truncated, RAW)


def test_msgpack_deep_nesting_in_a_large_body_is_refused_not_a_recursion_error() -> None:
    body = b"\x82\xa7content\xc4\x01x\xa1n" + b"\x91" * 200_000 + b"\xc0"
    with pytest.raises(CodecError):
        MSGPACK.decode(body, RAW)


# --- large base64 JSON content decoded where it lies in the frame -----------------------------


def _json_frame(document: bytes) -> memoryview:
    """A request body as the server holds it: a writable view into the frame's payload."""
    payload = bytearray(b"s3.Write" + document)
    return memoryview(payload)[len(b"s3.Write") :]


@pytest.mark.parametrize("size", [70_000, 3 * STEP + 5, 3 * STEP])
@pytest.mark.parametrize("php_slashes", [False, True], ids=["plain", "php-escaped-slashes"])
def test_json_large_content_is_decoded_in_place_byte_exact(size: int, php_slashes: bool) -> None:
    data = os.urandom(size)
    text = orjson.dumps(
        {"pathname": "a/b.bin", "content": base64.b64encode(data).decode(), "meta": {"k": "v/w"}}
    )
    if php_slashes:  # PHP's json_encode writes every "/" as "\/"
        text = text.replace(b"/", b"\\/")
    body = _json_frame(text)
    value = JSON.decode(body, RAW)
    assert isinstance(value["content"], Base64InPlace)
    content = JSON.to_bytes(value["content"], "content")
    assert content == data
    assert isinstance(content, memoryview)
    assert content.obj is body.obj  # the frame's own buffer, no copy
    assert value["pathname"] == "a/b.bin"
    assert value["meta"] == {"k": "v/w"}


def test_json_in_place_decoding_takes_only_the_top_level_field() -> None:
    text = base64.b64encode(os.urandom(100_000)).decode()
    value = JSON.decode(_json_frame(orjson.dumps({"meta": {"content": text}})), RAW)
    assert value == {"meta": {"content": text}}  # nested: parsed as usual
    later_wins = b'{"content":"' + text.encode() + b'","content":"QUFB"}'
    assert JSON.decode(_json_frame(later_wins), RAW) == {"content": "QUFB"}


def test_json_other_escapes_in_large_content_fall_back_to_the_parser() -> None:
    document = b'{"content":"' + b"QUFB" * 30_000 + b'\\u0041AAA"}'
    value = JSON.decode(_json_frame(document), RAW)
    assert value["content"] == "QUFB" * 30_000 + "AAAA"


@pytest.mark.parametrize(
    "text", ["A" * 100_001, "QUFB" * 30_000 + "=QUF", "QUFB" * 30_000 + "!!!!"]
)
def test_json_invalid_large_base64_in_place_names_the_field(text: str) -> None:
    value = JSON.decode(_json_frame(orjson.dumps({"content": text})), RAW)
    with pytest.raises(CodecError, match="field 'content'"):
        JSON.to_bytes(value["content"], "content")


def test_json_read_only_or_small_bodies_are_parsed_as_before() -> None:
    document = orjson.dumps({"content": base64.b64encode(os.urandom(100_000)).decode()})
    assert JSON.decode(document, RAW) == orjson.loads(document)
    small = orjson.dumps({"content": "QUFB"})
    assert JSON.decode(_json_frame(small), RAW) == {"content": "QUFB"}


# --- large result bytes encoded as base64 where they lie ---------------------------------------


def _with_room_in_front(data: bytes) -> memoryview:
    """How the storage layer receives a large body: at the end of an anonymous mapping with
    room for its base64 text in front."""
    room = -(-len(data) // 3) * 4 - len(data)
    whole = mmap.mmap(-1, room + len(data))
    whole[room:] = data
    return memoryview(whole)[room:]


@pytest.mark.parametrize("size", [3 * STEP, 3 * STEP + 1, 3 * STEP + 2])
def test_json_result_bytes_with_room_in_front_are_encoded_in_place(size: int) -> None:
    data = os.urandom(size)
    view = _with_room_in_front(data)
    parts = list(JSON.encode_parts({"size": size, "content": view}))
    assert b"".join(parts) == JSON.encode({"size": size, "content": data})
    text = max(parts, key=len)
    assert isinstance(text, memoryview)
    assert text.obj is view.obj  # written over the receiving buffer, not beside it
    assert len([p for p in parts if p == b""]) >= 3  # and a step at a time


def test_json_result_bytes_without_room_are_encoded_beside_them() -> None:
    data = os.urandom(2 * STEP)
    tail = memoryview(bytearray(b"x" * 10 + data))[10:]  # too little room in front
    parts = list(JSON.encode_parts({"content": tail}))
    assert b"".join(parts) == JSON.encode({"content": data})
    assert bytes(tail) == data  # untouched


def test_an_escaped_slash_across_a_step_boundary_is_unescaped_whole() -> None:
    text = b"QUFB" * (STEP // 4 - 1) + b"QUF\\/" + b"QUFB" * 10  # the backslash ends step one
    assert text.index(b"\\") == STEP - 1
    value = JSON.decode(_json_frame(b'{"content":"' + text + b'"}'), RAW)
    assert isinstance(value["content"], Base64InPlace)
    expected = base64.b64decode(text.replace(b"\\/", b"/"))
    assert JSON.to_bytes(value["content"], "content") == expected

"""The JSON and msgpack body codecs, and how each carries object bytes."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3rpc.goridge import CodecError, Flag, codec_for_flags
from s3rpc.goridge.codec import JSON, MSGPACK, STEP, Codec

SETTINGS = settings(max_examples=200, deadline=None)


# --- choosing a codec ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "codec"),
    [
        (Flag.JSON, JSON),
        (Flag.MSGPACK, MSGPACK),
        (Flag.JSON | Flag.ERROR, JSON),
        (Flag.MSGPACK | Flag.CONTROL, MSGPACK),
    ],
)
def test_codec_for_flags_picks_json_or_msgpack(flags: int, codec: object) -> None:
    assert codec_for_flags(flags) is codec


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (0x04, "raw"),
        (0x20, "gob"),
        (0x80, "proto"),
        (0x00, "none"),
        (0x40, "none"),
        (0x18, "json+msgpack"),
    ],
)
def test_unsupported_codec_flags_raise_codec_error_naming_the_codec(flags: int, name: str) -> None:
    with pytest.raises(CodecError, match=re.escape(f"codec {name} (flags 0x{flags:02x})")):
        codec_for_flags(flags)


# --- JSON ------------------------------------------------------------------------------------


def test_json_decodes_php_escapes() -> None:
    assert JSON.decode(b'{"pathname":"a\\/na\\u00efve"}') == {"pathname": "a/na\u00efve"}


def test_json_decodes_memoryview_body() -> None:
    assert JSON.decode(memoryview(b'xx{"a":1}')[2:]) == {"a": 1}


def test_json_encode_is_compact_utf8() -> None:
    assert JSON.encode({"exists": True, "p": "\u00fc"}) == '{"exists":true,"p":"\u00fc"}'.encode()


def test_json_encodes_bytes_as_base64_text() -> None:
    raw = bytes(range(256))
    out = orjson.loads(JSON.encode({"content": raw}))
    assert out["content"] == base64.b64encode(raw).decode()


def test_json_invalid_body_raises_codec_error() -> None:
    with pytest.raises(CodecError, match="not valid JSON"):
        JSON.decode(b"{nope")


def test_json_to_bytes_decodes_base64() -> None:
    assert JSON.to_bytes("aGVsbG8K", "content") == b"hello\n"
    assert JSON.to_bytes("", "content") == b""


@pytest.mark.parametrize("bad", ["not base64!", "aGVsbG8", "aGVs\nbG8K", "QUFB=", "QQ==QUFB"])
def test_json_invalid_base64_names_the_field(bad: str) -> None:
    with pytest.raises(CodecError, match=r"field 'content'.*base64"):
        JSON.to_bytes(bad, "content")


@pytest.mark.parametrize(
    ("value", "kind"), [(None, "null"), (12, "number"), ([1], "array"), ({}, "object")]
)
def test_json_to_bytes_of_non_string_names_the_field_and_type(value: object, kind: str) -> None:
    with pytest.raises(CodecError, match=rf"field 'content'.*got {kind}"):
        JSON.to_bytes(value, "content")


# --- msgpack ---------------------------------------------------------------------------------


def test_msgpack_decodes_map() -> None:
    body = msgpack.packb({"bucket": "uploads", "expires_in": 0})
    assert MSGPACK.decode(body) == {"bucket": "uploads", "expires_in": 0}


def test_msgpack_encodes_bytes_as_bin_not_base64() -> None:
    raw = bytes(range(256))
    out = MSGPACK.encode({"content": raw})
    assert out == b"\x81\xa7content\xc5\x01\x00" + raw


def test_msgpack_encodes_text_as_str() -> None:
    assert MSGPACK.encode("hi") == b"\xa2hi"


def test_msgpack_accepts_integer_map_keys() -> None:
    # PHP sends a list with holes, or an int-keyed array, as a map with int keys.
    assert MSGPACK.decode(msgpack.packb({0: "a", 5: "b"})) == {0: "a", 5: "b"}


def test_msgpack_non_utf8_str_survives_decode_and_reencode() -> None:
    raw = b"\xff\xfe\x00abc\x80"
    body = msgpack.packb({"content": raw}, use_bin_type=False)  # packed as str, like PHP
    value = MSGPACK.decode(body)
    assert isinstance(value["content"], str)
    assert MSGPACK.to_bytes(value["content"], "content") == raw
    assert MSGPACK.encode(value) == body


def test_msgpack_to_bytes_accepts_bin() -> None:
    value = MSGPACK.decode(msgpack.packb({"content": b"\x00\xff"}, use_bin_type=True))
    assert value["content"] == b"\x00\xff"
    assert MSGPACK.to_bytes(value["content"], "content") == b"\x00\xff"


def test_msgpack_to_bytes_does_not_base64_decode() -> None:
    assert MSGPACK.to_bytes("aGVsbG8K", "content") == b"aGVsbG8K"


@pytest.mark.parametrize(("value", "kind"), [(None, "null"), (3, "number"), ([b"x"], "array")])
def test_msgpack_to_bytes_of_other_types_names_the_field(value: object, kind: str) -> None:
    with pytest.raises(CodecError, match=rf"field 'content'.*got {kind}"):
        MSGPACK.to_bytes(value, "content")


@pytest.mark.parametrize("body", [b"\xc1", b"\x92\x01", b"\x81\xa1a"])
def test_msgpack_invalid_body_raises_codec_error(body: bytes) -> None:
    with pytest.raises(CodecError, match="not valid msgpack"):
        MSGPACK.decode(body)


@SETTINGS
@given(st.binary(max_size=1000))
def test_msgpack_content_packed_as_str_by_php_comes_back_as_the_original_bytes(
    raw: bytes,
) -> None:
    # use_bin_type=False packs bytes in the str/raw family, exactly as ext-msgpack does.
    body = msgpack.packb(
        {"bucket": "b", "pathname": "p", "content": raw, "visibility": "private"},
        use_bin_type=False,
    )
    value = MSGPACK.decode(body)
    assert value["bucket"] == "b"
    assert MSGPACK.to_bytes(value["content"], "content") == raw


@SETTINGS
@given(st.binary(max_size=1000))
def test_msgpack_content_sent_as_bin_comes_back_as_the_original_bytes(raw: bytes) -> None:
    value = MSGPACK.decode(MSGPACK.encode({"content": raw}))
    assert MSGPACK.to_bytes(value["content"], "content") == raw


@SETTINGS
@given(st.binary(max_size=1000))
def test_json_content_round_trips_through_base64(raw: bytes) -> None:
    value = JSON.decode(JSON.encode({"content": raw}))
    assert JSON.to_bytes(value["content"], "content") == raw


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@SETTINGS
@given(json_values)
def test_json_and_msgpack_round_trip_plain_values(value: object) -> None:
    assert JSON.decode(JSON.encode(value)) == value
    assert MSGPACK.decode(MSGPACK.encode(value)) == value


# --- large values, a step at a time ---------------------------------------------------------

BIG = os.urandom(3 * STEP + 12345)


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_encode_parts_join_to_exactly_what_encode_returns(codec: Codec) -> None:
    value = {"content": BIG, "size": len(BIG), "mime_type": "a/b", "small": b"xyz"}
    parts = list(codec.encode_parts(value))
    assert len(parts) > 3, "a large value is produced in several steps"
    assert b"".join(parts) == codec.encode(value)
    assert codec.decode(b"".join(parts))["size"] == len(BIG)


def test_msgpack_encode_parts_sends_large_bytes_without_copying_them() -> None:
    parts = list(MSGPACK.encode_parts({"content": BIG}))
    assert any(part is BIG for part in parts)


def test_json_large_base64_decodes_in_steps_to_the_same_bytes() -> None:
    text = base64.b64encode(BIG).decode("ascii")
    steps = JSON.to_bytes_steps(text, "content")
    count = 0
    while True:
        try:
            next(steps)
            count += 1
        except StopIteration as done:
            result = done.value
            break
    assert count >= 3
    assert result == BIG


@pytest.mark.parametrize(
    "text",
    [
        "A" * (2 * STEP + 1),  # not a multiple of 4
        "QQ==" * (STEP // 4) + "QUFB" * 10,  # padding in the middle
        "!" * (2 * STEP),  # not base64 at all
    ],
    ids=["length", "inner-padding", "alphabet"],
)
def test_json_large_invalid_base64_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(CodecError, match="field 'content'"):
        JSON.to_bytes(text, "content")


# --- decoding limits: measure() before decode() ----------------------------------------------

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(_TEXT, inner, max_size=8),
    max_leaves=60,
)


@given(value=_VALUES)
@settings(max_examples=60, deadline=None)
def test_measure_bounds_what_msgpack_decoding_allocates(value: object) -> None:
    # Counted allocations; msgpack allocates nothing but the objects it builds. (orjson's
    # parser reserves far more than it touches, so JSON is measured by RSS below.)
    import tracemalloc

    body = MSGPACK.encode(value)
    tracemalloc.start()
    try:
        decoded = MSGPACK.decode(body)
        peak = tracemalloc.get_traced_memory()[1]
        del decoded
    finally:
        tracemalloc.stop()
    assert peak <= MSGPACK.measure(body) + 1024


_RSS_PROBE = """
import sys
from s3rpc.goridge.codec import JSON, MSGPACK

def peak_kib():  # VmHWM: the peak RSS since the last reset
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

codec = {"json": JSON, "msgpack": MSGPACK}[sys.argv[1]]
with open(sys.argv[2], "rb") as fh:
    body = fh.read()
codec.decode(codec.encode([[], {}, "x"]))
cost = codec.measure(body, max_items=200_000)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset VmHWM to the current RSS
before = peak_kib()
value = codec.decode(body)
print((peak_kib() - before) * 1024, cost)
"""
_SHAPES = {
    "empty-lists": lambda n: [[]] * n,
    "empty-maps": lambda n: [{}] * n,
    "many-keys": lambda n: {f"k{i}": [] for i in range(n)},
    "small-maps": lambda n: [{"": None}] * (n // 2),
    "astral-strings": lambda n: ["\U0001f600" + "a" * 200] * (n // 10),
    "short-strings": lambda n: ["ab"] * n,
    "numbers": lambda n: [2**40] * n,
}


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
@pytest.mark.parametrize("shape", sorted(_SHAPES))
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux /proc only")
def test_measure_bounds_the_rss_of_the_worst_shapes(
    codec: Codec, shape: str, tmp_path: Path
) -> None:
    # 200,000 items (more than any method allows, for a clear signal), decoded in a fresh
    # interpreter that only ever held the body: its peak RSS growth must stay within what
    # measure() promised.
    import subprocess
    import sys

    path = tmp_path / "body"
    path.write_bytes(codec.encode(_SHAPES[shape](200_000)))
    done = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, codec.name, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    grown, cost = map(int, done.stdout.split())
    assert grown <= cost, f"decoding grew RSS by {grown} bytes, measure() said {cost}"
    assert cost < 16 * grown + (4 << 20), f"measure() said {cost}, decoding took {grown}"


@pytest.mark.parametrize(
    ("codec", "body"),
    [
        (MSGPACK, b"\x81\xa9pathnames\xdd" + (1 << 24).to_bytes(4, "big") + b"\x90" * (1 << 24)),
        # A map32 that only claims 4 G entries (past the quick bounds' 16 KiB).
        (MSGPACK, b"\xdf\xff\xff\xff\xff" + b"\xc0" * 20_000),
        (JSON, b'{"pathnames":[' + b",".join([b"[]"] * (1 << 20)) + b"]}"),
        (JSON, b"[" + b"1," * 5000 + b"1]"),
    ],
    ids=["msgpack-array32", "msgpack-claimed-map", "json-empty-arrays", "json-numbers"],
)
def test_too_many_items_are_refused_by_the_scan(codec: Codec, body: bytes) -> None:
    with pytest.raises(CodecError, match=r"more than 4096 array items and map entries"):
        codec.measure(body)


def test_a_method_may_allow_more_items() -> None:
    body = orjson.dumps({"pathnames": ["a"] * 10_000})
    with pytest.raises(CodecError):
        JSON.measure(body)
    assert JSON.measure(body, max_items=10_064) > 0
    assert MSGPACK.measure(msgpack.packb({"pathnames": ["a"] * 10_000}), max_items=10_064) > 0


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_nesting_deeper_than_the_limit_is_refused(codec: Codec) -> None:
    value: list[object] = []
    for _ in range(16):
        value = [value]
    with pytest.raises(CodecError, match="nest containers more than 16 deep"):
        codec.measure(codec.encode(value))
    codec.measure(codec.encode(value[0]))  # 16 deep is fine


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_a_long_string_costs_more_outside_the_bytes_fields(codec: Codec) -> None:
    # Object bytes cost what the codec's bytes path costs; any other string its worst case as
    # a Python str (4 bytes a character); a nested "content" is not a bytes field.
    content = b"x" * (600 * 1024)
    carried = base64.b64encode(content).decode() if codec is JSON else content
    body = codec.encode({"pathname": "a.txt", "content": carried})
    as_bytes = codec.measure(body, frozenset({"content"}))
    as_text = codec.measure(body)
    assert len(content) <= as_bytes < as_text
    assert as_text >= 4 * len(content)
    nested = codec.encode({"meta": {"content": carried}})
    assert codec.measure(nested, frozenset({"content"})) >= 4 * len(content)


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_the_quick_bounds_of_small_bodies_hold(codec: Codec, shape: str) -> None:
    # Bodies up to 16 KiB are measured by counts at C speed; the worst shapes at that size.
    import tracemalloc

    body = codec.encode(_SHAPES[shape](15))
    assert len(body) <= 16 * 1024
    tracemalloc.start()
    try:
        decoded = codec.decode(body)
        peak = tracemalloc.get_traced_memory()[1]
        del decoded
    finally:
        tracemalloc.stop()
    assert peak <= codec.measure(body)

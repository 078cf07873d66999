"""Bodies built to blow up when decoded, through the daemon's real socket: refused with
INVALID_REQUEST before they are decoded, memory stays near the frame's own size, and the same
connection serves the next call (issue 14: a 16 MB msgpack frame of empty arrays took the
daemon from 76 to 1,194 MiB). ``benchmarks/decode_memory.py`` measures the daemon's RSS."""

from __future__ import annotations

import tracemalloc

import msgpack
import orjson
import pytest

from conftest import RunningDaemon
from server import wire

MIB = 1024 * 1024


def msgpack_empty_arrays(count: int) -> bytes:
    """``{"bucket": "uploads", "pathnames": [[], [], ...]}``: an array32 of ``count`` items."""
    head = b"\x82\xa6bucket\xa7uploads\xa9pathnames"
    return head + b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


def json_empty_arrays(count: int) -> bytes:
    return b'{"bucket":"uploads","pathnames":[' + b",".join([b"[]"] * count) + b"]}"


async def _call(daemon: RunningDaemon, frames: list[bytes]) -> list[wire.Response]:
    reader, writer = await wire.connect(daemon.address)
    try:
        return [await wire.call(reader, writer, frame, timeout=60) for frame in frames]
    finally:
        await wire.close(writer)


@pytest.mark.parametrize(
    ("flags", "body"),
    [
        (wire.MSGPACK_FLAG, msgpack_empty_arrays(16 * MIB)),
        (wire.JSON_FLAG, json_empty_arrays(5 * MIB)),
    ],
    ids=["msgpack-16MB", "json-15MB"],
)
async def test_a_frame_of_empty_arrays_is_refused_before_it_is_decoded(
    daemon: RunningDaemon, flags: int, body: bytes
) -> None:
    good = msgpack.packb({"bucket": "uploads", "pathnames": ["missing.txt"]})
    frames = [
        wire.request(flags, 1, "s3.DeleteMany", body),
        wire.request(0x10, 2, "s3.DeleteMany", good),
    ]
    del body
    tracemalloc.start()
    try:
        bomb, after = await _call(daemon, frames)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bomb.is_error
    assert bomb.text.startswith("INVALID_REQUEST: ")
    assert "array items and map entries" in bomb.text
    assert "before decoding" in bomb.text
    assert not after.is_error, after.text  # the connection serves the next call
    assert msgpack.unpackb(after.body)["deleted"] == ["missing.txt"]
    # The frame itself (16 MB) and little else; decoded, it took more than 1 GiB.
    print(f"\ntraced peak {peak / MIB:.1f} MiB for a {len(frames[0]) / MIB:.0f} MB frame")
    assert peak < 2 * len(frames[0]) + 8 * MIB


async def test_nesting_deeper_than_16_is_refused_before_decoding(daemon: RunningDaemon) -> None:
    deep = b'{"bucket":"uploads","pathnames":' + b"[" * 40 + b"]" * 40 + b"}"
    answers = await _call(
        daemon,
        [
            wire.request(wire.JSON_FLAG, 1, "s3.DeleteMany", deep),
            wire.request(wire.JSON_FLAG, 2, "s3.Exists", b'{"pathname":"a.txt"}'),
        ],
    )
    assert answers[0].text.startswith("INVALID_REQUEST: params nest containers more than 16")
    assert not answers[1].is_error, answers[1].text


async def test_a_long_string_reserves_its_worst_case_before_decoding(
    daemon: RunningDaemon,
) -> None:
    # A 2 MiB pathname (refused by the model: INVALID_PATHNAME) may become a str of 8 MiB
    # (4 bytes a character once one character is beyond U+FFFF): that much is reserved first.
    huge = orjson.dumps({"bucket": "uploads", "pathname": "\U0001f600" + "a" * (2 * MIB)})
    (answer,) = await _call(daemon, [wire.request(wire.JSON_FLAG, 1, "s3.Exists", huge)])
    assert answer.text.startswith("INVALID_PATHNAME: "), answer.text[:100]
    assert daemon.app.server.state.budget.peak >= 4 * 2 * MIB


async def test_the_longest_legitimate_delete_many_is_accepted(daemon: RunningDaemon) -> None:
    names = [f"dir/file-{i:05d}.txt" for i in range(10_000)]
    for flags, body in (
        (wire.JSON_FLAG, orjson.dumps({"bucket": "uploads", "pathnames": names})),
        (wire.MSGPACK_FLAG, msgpack.packb({"bucket": "uploads", "pathnames": names})),
    ):
        (answer,) = await _call(daemon, [wire.request(flags, 1, "s3.DeleteMany", body)])
        assert not answer.is_error, answer.text

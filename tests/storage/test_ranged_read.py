"""Ranged s3.Read (offset/length → range, total_size) and the stored content_type/metadata in
s3.Read and s3.GetMetadata, through the daemon's socket."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningDaemon
from s3rpc.client import RpcError

DATA = bytes(range(256)) * 40  # 10240 bytes, every position distinguishable by its value


async def put(daemon: RunningDaemon, pathname: str, content: bytes, **options: Any) -> None:
    await daemon.call("s3.Write", {"pathname": pathname, "content": content, **options})


async def error(daemon: RunningDaemon, method: str, params: dict[str, Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        await daemon.call(method, params)
    return info.value


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_offset_and_length_return_that_slice_with_its_range(
    daemon: RunningDaemon, codec: str
) -> None:
    await put(daemon, "r/data.bin", DATA)
    result = await daemon.call(
        "s3.Read", {"pathname": "r/data.bin", "offset": 1000, "length": 300}, codec=codec
    )
    assert result["content"] == DATA[1000:1300]
    assert result["size"] == 300
    assert result["range"] == f"bytes 1000-1299/{len(DATA)}"
    assert result["total_size"] == len(DATA)


async def test_offset_without_length_reads_to_the_end(daemon: RunningDaemon) -> None:
    await put(daemon, "r/tail.bin", DATA)
    result = await daemon.call("s3.Read", {"pathname": "r/tail.bin", "offset": 10000})
    assert result["content"] == DATA[10000:]
    assert result["range"] == f"bytes 10000-10239/{len(DATA)}"
    assert result["total_size"] == len(DATA)


async def test_length_past_the_end_is_cut_at_the_end(daemon: RunningDaemon) -> None:
    await put(daemon, "r/short.bin", DATA)
    result = await daemon.call(
        "s3.Read", {"pathname": "r/short.bin", "offset": 10200, "length": 1000}
    )
    assert result["content"] == DATA[10200:]
    assert result["size"] == 40
    assert result["range"] == f"bytes 10200-10239/{len(DATA)}"


async def test_length_alone_reads_the_first_bytes(daemon: RunningDaemon) -> None:
    await put(daemon, "r/head.bin", DATA)
    result = await daemon.call("s3.Read", {"pathname": "r/head.bin", "length": 16})
    assert result["content"] == DATA[:16]
    assert result["range"] == f"bytes 0-15/{len(DATA)}"


async def test_whole_read_reports_the_full_range_and_total(daemon: RunningDaemon) -> None:
    await put(daemon, "r/whole.bin", DATA)
    result = await daemon.call("s3.Read", {"pathname": "r/whole.bin", "offset": None})
    assert result["content"] == DATA
    assert result["range"] == f"bytes 0-{len(DATA) - 1}/{len(DATA)}"
    assert result["total_size"] == len(DATA)


async def test_reading_chunk_by_chunk_reassembles_the_object(daemon: RunningDaemon) -> None:
    await put(daemon, "r/chunks.bin", DATA)
    pieces, offset = [], 0
    for _ in range(20):  # bounded: 10240 bytes in 1000-byte chunks take 11 calls
        result = await daemon.call(
            "s3.Read", {"pathname": "r/chunks.bin", "offset": offset, "length": 1000}
        )
        pieces.append(result["content"])
        offset += result["size"]
        if offset >= result["total_size"]:
            break
    assert b"".join(pieces) == DATA


async def test_offset_at_the_end_reads_nothing(daemon: RunningDaemon) -> None:
    await put(daemon, "r/end.bin", DATA)
    result = await daemon.call(
        "s3.Read", {"pathname": "r/end.bin", "offset": len(DATA), "length": 10}
    )
    assert result["content"] == b""
    assert result["size"] == 0
    assert result["range"] == f"bytes */{len(DATA)}"
    assert result["total_size"] == len(DATA)


async def test_ranged_read_of_an_empty_object_is_empty(daemon: RunningDaemon) -> None:
    await put(daemon, "r/empty.bin", b"")
    result = await daemon.call("s3.Read", {"pathname": "r/empty.bin", "offset": 0, "length": 5})
    assert result["content"] == b""
    assert result["total_size"] == 0
    assert result["range"] == "bytes */0"


async def test_offset_past_the_end_is_a_coded_error(daemon: RunningDaemon) -> None:
    await put(daemon, "r/past.bin", DATA)
    exc = await error(daemon, "s3.Read", {"pathname": "r/past.bin", "offset": len(DATA) + 1})
    assert exc.code == "INVALID_REQUEST"
    assert "field 'offset'" in exc.message
    assert "past the end" in exc.message
    assert f"holds {len(DATA)} bytes" in exc.message


async def test_ranged_read_of_a_missing_object_is_file_not_found(daemon: RunningDaemon) -> None:
    exc = await error(daemon, "s3.Read", {"pathname": "r/none.bin", "offset": 5, "length": 5})
    assert exc.code == "FILE_NOT_FOUND"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"offset": -1}, "field 'offset'"),
        ({"offset": "10"}, "field 'offset'"),
        ({"offset": 1.0}, "field 'offset'"),
        ({"offset": True}, "field 'offset'"),
        ({"length": 0}, "field 'length'"),
        ({"length": -5}, "field 'length'"),
        ({"length": "5"}, "field 'length'"),
    ],
)
async def test_bad_offset_or_length_is_refused_by_the_model(
    daemon: RunningDaemon, params: dict[str, Any], expected: str
) -> None:
    exc = await error(daemon, "s3.Read", {"pathname": "r/any.bin", **params})
    assert exc.code == "INVALID_REQUEST"
    assert expected in exc.message


async def test_read_and_metadata_return_stored_content_type_and_metadata(
    daemon: RunningDaemon,
) -> None:
    await put(
        daemon,
        "m/doc.dat",
        b"hello",
        content_type="application/x-custom",
        metadata={"author": "ana", "rev": "7"},
    )
    read = await daemon.call("s3.Read", {"pathname": "m/doc.dat"})
    assert read["content_type"] == "application/x-custom"
    assert read["mime_type"] == "application/x-custom"
    assert read["metadata"] == {"author": "ana", "rev": "7"}
    ranged = await daemon.call("s3.Read", {"pathname": "m/doc.dat", "offset": 1, "length": 2})
    assert ranged["content"] == b"el"
    assert ranged["metadata"] == {"author": "ana", "rev": "7"}
    meta = await daemon.call("s3.GetMetadata", {"pathname": "m/doc.dat"})
    assert meta["content_type"] == "application/x-custom"
    assert meta["metadata"] == {"author": "ana", "rev": "7"}


async def test_objects_without_user_metadata_report_an_empty_map(daemon: RunningDaemon) -> None:
    await put(daemon, "m/plain.txt", b"x")
    read = await daemon.call("s3.Read", {"pathname": "m/plain.txt"}, codec="msgpack")
    assert read["metadata"] == {}
    assert read["content_type"] == "text/plain"
    meta = await daemon.call("s3.GetMetadata", {"pathname": "m/plain.txt"}, codec="msgpack")
    assert meta["metadata"] == {}

"""s3.WriteFromFile within rpc.max_inflight_bytes whatever the file's size (issue 14): fewer
parts in flight when the bucket's ``concurrency`` parts would not fit the byte budget, and a
source over S3's 5 TiB object limit refused before a byte is read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import StartDaemon
from s3rpc.client import RpcError
from s3rpc.storage.multipart import MAX_OBJECT_SIZE, MAX_PARTS, parts_in_flight

MIB = 1024 * 1024
TIB = 1024**4


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    path = tmp_path / "allowed"
    path.mkdir()
    return path


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_parts_in_flight_are_capped_by_the_byte_budget(
    start_daemon: StartDaemon, allowed: Path, s3_admin: Any, codec: str
) -> None:
    # concurrency 5 x 5 MiB parts = 25 MiB wanted; the budget holds 12 MiB: two parts at once.
    daemon = await start_daemon(
        {"uploads": {"part_size": 5 * MIB, "concurrency": 5}},
        rpc={"max_inflight_bytes": 12 * MIB},
        s3={"local_paths": [str(allowed)]},
    )
    content = os.urandom(23 * MIB)
    source = allowed / "big.bin"
    source.write_bytes(content)
    written = await daemon.call(
        "s3.WriteFromFile", {"pathname": "big.bin", "source_path": str(source)}, codec=codec
    )
    assert written["size"] == len(content)
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="big.bin")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(content).digest()
    budget = daemon.app.server.state.budget
    # Counted reservations: two parts (10 MiB) and the small frames, never five parts.
    assert 10 * MIB <= budget.peak <= 12 * MIB
    assert budget.used == 0


async def test_a_source_over_five_tib_is_refused_unread(
    start_daemon: StartDaemon, allowed: Path, s3_admin: Any
) -> None:
    daemon = await start_daemon(
        {"uploads": {"concurrency": 1, "operation_timeout": 5}},
        s3={"local_paths": [str(allowed)]},
    )
    source = allowed / "sparse.bin"
    with open(source, "wb") as fh:
        fh.truncate(MAX_OBJECT_SIZE + 1)  # sparse: no disk space, no bytes to read
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.WriteFromFile", {"pathname": "huge.bin", "source_path": str(source)})
    assert info.value.code == "OBJECT_TOO_LARGE"
    assert f"is {MAX_OBJECT_SIZE + 1} bytes" in info.value.message
    assert "at most 5 TiB" in info.value.message
    bucket = daemon.buckets["uploads"]
    assert s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert daemon.app.server.state.budget.peak < MIB  # nothing reserved for parts


@pytest.mark.parametrize("size", [2 * TIB, 5 * TIB])
def test_a_huge_file_holds_one_part_not_concurrency_parts(size: int) -> None:
    # The plan for the sparse 2 TiB file (1.1 GiB peak before: 5 parts of 220 MB)
    # under the default 256 MiB budget; a 5 TiB file's parts (550 MB) exceed any budget a
    # part can be split to (10,000 parts at most), so one is uploaded at a time.
    part_size = -(-size // MAX_PARTS)
    assert parts_in_flight(5, MAX_PARTS, part_size, 256 * MIB) == 1
    assert parts_in_flight(5, MAX_PARTS, 5 * MIB, 256 * MIB) == 5
    assert parts_in_flight(5, MAX_PARTS, 100 * MIB, 256 * MIB) == 2

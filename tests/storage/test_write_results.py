"""Write results without a HEAD: every write's size and last_modified come from what was sent
and from S3's answer, and agree with the stored object."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3rpc.storage import copying
from s3rpc.storage.objects import stored_at

from .conftest import MakeStorage, Storage, server_spec

MIB = 1024 * 1024


def count_heads(storage: Storage) -> list[str]:
    """Keys of every HeadObject any of ``storage``'s clients sends from now on."""
    keys: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        keys.append(params["Key"])

    clients = {id(b.client): b.client for b in storage.manager._buckets.values()}
    for client in clients.values():
        client.meta.events.register("before-parameter-build.s3.HeadObject", record)
    return keys


def assert_matches_stored(result: dict[str, Any], s3_admin: Any, physical: str, key: str) -> None:
    head = s3_admin.head_object(Bucket=physical, Key=key)
    assert result["size"] == head["ContentLength"]
    # S3 stamps the object while answering: within a second of the answer's Date.
    assert abs(result["last_modified"] - int(head["LastModified"].timestamp())) <= 1


@pytest.fixture
async def two(make_storage: MakeStorage, tmp_path: Path, s3_endpoint: str) -> Storage:
    """``a`` (default, 5 MiB parts), ``b`` on the same server, ``far`` through another client."""
    return await make_storage(
        {
            "a": {"part_size": 5 * MIB, "concurrency": 2},
            "b": {"visibility": "public"},
            "far": {"server": "other"},
        },
        servers={"other": server_spec(s3_endpoint, read_timeout=31)},
        default="a",
        local_paths=[str(tmp_path)],
    )


Scenario = Callable[[Storage, Path], Any]


async def _write(storage: Storage, _: Path, size: int) -> Any:
    return await storage.call("s3.Write", {"pathname": "w.bin", "content": os.urandom(size)})


async def _from_file(storage: Storage, tmp: Path, size: int) -> Any:
    source = tmp / "source.bin"
    source.write_bytes(os.urandom(size))
    return await storage.call("s3.WriteFromFile", {"pathname": "w.bin", "source_path": str(source)})


async def _session(storage: Storage, _: Path, size: int) -> Any:
    content = os.urandom(size)
    started = await storage.call("s3.UploadStart", {"pathname": "w.bin"})
    upload_id = started["upload_id"]
    for offset in range(0, size, 3 * MIB):
        chunk = content[offset : offset + 3 * MIB]
        await storage.call(
            "s3.UploadChunk", {"upload_id": upload_id, "offset": offset, "content": chunk}
        )
    return await storage.call("s3.UploadComplete", {"upload_id": upload_id})


@pytest.mark.parametrize("size", [1000, 6 * MIB + 5], ids=["single", "multipart"])
@pytest.mark.parametrize("scenario", [_write, _from_file, _session])
async def test_writes_send_no_head_and_report_the_stored_object(
    two: Storage, s3_admin: Any, tmp_path: Path, scenario: Any, size: int
) -> None:
    heads = count_heads(two)
    result = await scenario(two, tmp_path, size)
    assert heads == []
    assert result["success"] is True
    assert result["pathname"] == "w.bin"
    assert result["size"] == size
    assert_matches_stored(result, s3_admin, two.physical["a"], "w.bin")


@pytest.mark.parametrize(
    ("dest", "limit"),
    [("b", None), ("a", None), ("b", 5 * MIB), ("far", None)],
    ids=["copy-object", "onto-itself", "upload-part-copy", "streamed"],
)
@pytest.mark.parametrize("method", ["s3.Copy", "s3.Move"])
async def test_copies_head_only_their_source_and_report_the_stored_copy(
    two: Storage,
    s3_admin: Any,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    dest: str,
    limit: int | None,
) -> None:
    if limit is not None:
        monkeypatch.setattr(copying, "MAX_COPY_OBJECT_SIZE", limit)
    size = 6 * MIB + 5 if limit is not None else 2000
    await two.call("s3.Write", {"pathname": "src.bin", "content": os.urandom(size)})
    target = "src.bin" if dest == "a" else "dst.bin"
    heads = count_heads(two)
    result = await two.call(
        method,
        {
            "source_pathname": "src.bin",
            "dest_bucket": dest,
            "dest_pathname": target,
        },
    )
    # Only the source is ever looked at: once to pin the version that is copied, once more
    # before a multipart copy completes (parts of two versions are never joined), and for a
    # Move once more after the copy, right before its conditional delete (issue 14, section 3).
    # A Move onto itself only copies (the metadata rewrite), so it never deletes.
    moves = method == "s3.Move" and dest != "a"
    expected = 1 + (limit is not None) + moves
    assert heads == ["src.bin"] * expected
    assert result["pathname"] == target
    assert result["size"] == size
    assert_matches_stored(result, s3_admin, two.physical[dest], target)


def test_stored_at_reads_the_answers_date_header() -> None:
    response = {"ResponseMetadata": {"HTTPHeaders": {"date": "Sun, 06 Nov 1994 08:49:37 GMT"}}}
    assert stored_at(response) == 784111777


@pytest.mark.parametrize(
    "response",
    [{}, {"ResponseMetadata": {}}, {"ResponseMetadata": {"HTTPHeaders": {"date": "soon"}}}],
    ids=["no-metadata", "no-headers", "bad-date"],
)
def test_stored_at_without_a_usable_date_is_now(response: dict[str, Any]) -> None:
    before = int(time.time())
    assert before <= stored_at(response) <= int(time.time())

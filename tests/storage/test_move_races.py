"""Copy and Move racing other writers, through the daemon's socket.

A Move deletes only the source version it copied: a write or delete of the source by another
call during the Move is SOURCE_CHANGED, and the source is kept. Another call is made to land
at an exact step by a botocore event hook on the daemon's own S3 client, so most tests here are
deterministic; the random races run a few rounds each.

Which guarantees depend on the service: S3 and moto honour ``If-Match`` on DeleteObject, Ceph
RGW 16 ignores it, so there a write that lands between the Move's last check and its delete is
still lost. Those cases are marked per backend (:func:`conditional_deletes` probes it).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import RunningDaemon, StartDaemon
from s3rpc.client import RpcError
from s3rpc.storage import copying

MIB = 1024 * 1024
NO_CONDITIONAL_DELETES = (
    "this S3 service ignores If-Match on DeleteObject (Ceph RGW 16): a write or delete that "
    "lands between the Move's last check of the source and its delete is not seen"
)


def conditional_deletes(s3_admin: Any, physical: str) -> bool:
    """Whether the service refuses a DeleteObject whose If-Match names another ETag."""
    key = f"probe-{uuid.uuid4().hex}"
    s3_admin.put_object(Bucket=physical, Key=key, Body=b"probe")
    try:
        s3_admin.delete_object(Bucket=physical, Key=key, IfMatch=f'"{"0" * 32}"')
    except ClientError:
        s3_admin.delete_object(Bucket=physical, Key=key)
        return True
    return False


def body(s3_admin: Any, physical: str, key: str) -> bytes | None:
    try:
        data: bytes = s3_admin.get_object(Bucket=physical, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return None
        raise
    return data


def once_on(daemon: RunningDaemon, event: str, action: Callable[[], Any]) -> None:
    """Run ``action`` (a blocking boto3 call) the first time the daemon's client emits ``event``."""
    assert daemon.app is not None
    assert daemon.app.buckets is not None
    client = daemon.app.buckets.get("uploads").client
    fired = False

    async def hook(**_: Any) -> None:
        nonlocal fired
        if not fired:
            fired = True
            await asyncio.to_thread(action)

    client.meta.events.register(event, hook)


async def move(daemon: RunningDaemon, source: str, dest: str) -> Any:
    return await daemon.call("s3.Move", {"source_pathname": source, "dest_pathname": dest})


# (hook event, what the other call does to the source, holds without conditional deletes)
STEPS = {
    "write-before-copy": ("before-call.s3.CopyObject", "write", True),
    "write-after-copy": ("after-call.s3.CopyObject", "write", True),
    "delete-after-copy": ("after-call.s3.CopyObject", "delete", True),
    "write-before-delete": ("before-call.s3.DeleteObject", "write", False),
    "delete-before-delete": ("before-call.s3.DeleteObject", "delete", False),
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_move_never_deletes_a_version_it_did_not_copy(
    daemon: RunningDaemon, s3_admin: Any, request: pytest.FixtureRequest, step: str
) -> None:
    event, action, holds_everywhere = STEPS[step]
    physical = daemon.buckets["uploads"]
    if not holds_everywhere and not conditional_deletes(s3_admin, physical):
        request.applymarker(pytest.mark.xfail(reason=NO_CONDITIONAL_DELETES, strict=True))
    await daemon.call("s3.Write", {"pathname": "src.txt", "content": b"version one"})
    if action == "write":
        once_on(
            daemon,
            event,
            lambda: s3_admin.put_object(Bucket=physical, Key="src.txt", Body=b"version two"),
        )
    else:
        once_on(daemon, event, lambda: s3_admin.delete_object(Bucket=physical, Key="src.txt"))
    with pytest.raises(RpcError) as info:
        await move(daemon, "src.txt", "dst.txt")
    assert info.value.code == "SOURCE_CHANGED", info.value.text
    if action == "write":
        assert body(s3_admin, physical, "src.txt") == b"version two"
        assert "the source was kept" in info.value.message
    else:
        assert body(s3_admin, physical, "src.txt") is None
    if step != "write-before-copy":  # there, services that ignore CopySourceIfMatch copy v2
        assert body(s3_admin, physical, "dst.txt") == b"version one"
        assert "dst.txt" in info.value.message
        assert "was written and kept" in info.value.message


async def test_two_moves_of_one_source_through_one_daemon_have_one_winner(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    physical = daemon.buckets["uploads"]
    for round_ in range(8):
        content = f"round {round_}".encode()
        await daemon.call("s3.Write", {"pathname": "one.txt", "content": content})
        answers = await asyncio.gather(
            move(daemon, "one.txt", f"a/{round_}.txt"),
            move(daemon, "one.txt", f"b/{round_}.txt"),
            return_exceptions=True,
        )
        won = [answer for answer in answers if isinstance(answer, dict)]
        lost = [answer for answer in answers if isinstance(answer, RpcError)]
        assert len(won) == 1, answers
        assert len(lost) == 1, answers
        assert lost[0].code in ("FILE_NOT_FOUND", "SOURCE_CHANGED"), lost[0].text
        assert body(s3_admin, physical, won[0]["pathname"]) == content
        assert body(s3_admin, physical, "one.txt") is None


async def test_two_moves_of_one_source_through_two_daemons_have_one_winner(
    start_daemon: StartDaemon, s3_admin: Any, request: pytest.FixtureRequest
) -> None:
    first = await start_daemon({"uploads": {}})
    physical = first.buckets["uploads"]
    second = await start_daemon({"uploads": {"bucket": physical}})
    if not conditional_deletes(s3_admin, physical):
        # Without conditional deletes both may pass their checks before either deletes.
        request.applymarker(pytest.mark.xfail(reason=NO_CONDITIONAL_DELETES, strict=False))
    for round_ in range(8):
        await first.call("s3.Write", {"pathname": "two.txt", "content": b"x"})
        answers = await asyncio.gather(
            move(first, "two.txt", f"a/{round_}.txt"),
            move(second, "two.txt", f"b/{round_}.txt"),
            return_exceptions=True,
        )
        won = [answer for answer in answers if isinstance(answer, dict)]
        assert len(won) == 1, answers
        for answer in answers:
            if isinstance(answer, RpcError):
                assert answer.code in ("FILE_NOT_FOUND", "SOURCE_CHANGED"), answer.text


async def test_a_write_racing_a_move_is_never_lost(
    daemon: RunningDaemon, s3_admin: Any, request: pytest.FixtureRequest
) -> None:
    physical = daemon.buckets["uploads"]
    if not conditional_deletes(s3_admin, physical):
        request.applymarker(pytest.mark.xfail(reason=NO_CONDITIONAL_DELETES, strict=False))
    for round_ in range(12):
        old, new = f"old {round_}".encode(), f"new {round_}".encode()
        source, dest = f"race/{round_}.txt", f"moved/{round_}.txt"
        await daemon.call("s3.Write", {"pathname": source, "content": old})

        async def write_later(content: bytes = new, pathname: str = source) -> Any:
            await asyncio.sleep(random.uniform(0, 0.03))
            return await daemon.call("s3.Write", {"pathname": pathname, "content": content})

        moved, written = await asyncio.gather(
            move(daemon, source, dest), write_later(), return_exceptions=True
        )
        assert isinstance(written, dict), written
        assert written["success"]
        if isinstance(moved, RpcError):
            assert moved.code == "SOURCE_CHANGED", moved.text
        else:
            assert isinstance(moved, dict), moved
        kept = body(s3_admin, physical, source), body(s3_admin, physical, dest)
        assert new in kept, f"round {round_}: the answered write is gone ({kept})"


async def test_multipart_copy_of_a_source_replaced_midway_writes_nothing(
    daemon: RunningDaemon, s3_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 5 GiB CopyObject limit lowered so that 11 MiB take the UploadPartCopy path.
    monkeypatch.setattr(copying, "MAX_COPY_OBJECT_SIZE", 10 * MIB)
    physical = daemon.buckets["uploads"]
    await daemon.call("s3.Write", {"pathname": "big.bin", "content": os.urandom(11 * MIB)})
    replacement = os.urandom(11 * MIB)
    once_on(
        daemon,
        "after-call.s3.UploadPartCopy",
        lambda: s3_admin.put_object(Bucket=physical, Key="big.bin", Body=replacement),
    )
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.Copy", {"source_pathname": "big.bin", "dest_pathname": "copy.bin"})
    assert info.value.code == "SOURCE_CHANGED", info.value.text
    assert "nothing was written" in info.value.message
    assert body(s3_admin, physical, "copy.bin") is None
    uploads = s3_admin.list_multipart_uploads(Bucket=physical).get("Uploads", [])
    assert [upload["Key"] for upload in uploads] == []
    assert body(s3_admin, physical, "big.bin") == replacement


@pytest.mark.parametrize("source_written", [True, False])
async def test_copy_refused_with_no_such_bucket_is_source_changed_only_if_the_source_was(
    daemon: RunningDaemon, s3_admin: Any, source_written: bool
) -> None:
    # Some RGW versions answer a failed CopySourceIfMatch with NoSuchBucket: simulated here by
    # sending the CopyObject to a bucket that does not exist (a real NoSuchBucket).
    physical = daemon.buckets["uploads"]
    await daemon.call("s3.Write", {"pathname": "src.txt", "content": b"version one"})
    assert daemon.app is not None
    assert daemon.app.buckets is not None
    client = daemon.app.buckets.get("uploads").client

    def refuse(request: Any, **_: Any) -> None:
        if source_written:
            s3_admin.put_object(Bucket=physical, Key="src.txt", Body=b"version two")
        request.url = request.url.replace(physical, "s3rpc-missing-bucket", 1)

    client.meta.events.register("before-sign.s3.CopyObject", refuse)
    with pytest.raises(RpcError) as info:
        await move(daemon, "src.txt", "dst.txt")
    if source_written:
        assert info.value.code == "SOURCE_CHANGED", info.value.text
        assert "nothing was written" in info.value.message
        assert body(s3_admin, physical, "src.txt") == b"version two"
    else:
        assert info.value.code == "S3_OPERATION_FAILED", info.value.text
        assert "does not exist" in info.value.message
        assert body(s3_admin, physical, "src.txt") == b"version one"
    assert body(s3_admin, physical, "dst.txt") is None

"""s3.UnregisterBucket: run-time buckets only, in-flight calls finish first, clients released."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from conftest import RunningDaemon, StartDaemon
from reliability.faultproxy import Fault, Match
from s3rpc.client import RpcError

from .conftest import MakeStorage, server_spec
from .test_batch import proxied_daemon


async def register(daemon: RunningDaemon, name: str, physical: str, **fields: Any) -> None:
    result = await daemon.call(
        "s3.RegisterBucket", {"name": name, "server": "local", "bucket": physical, **fields}
    )
    assert result["success"] is True


async def test_an_unregistered_bucket_is_gone_and_can_be_registered_again(
    start_daemon: StartDaemon, physical_buckets: Callable[..., str]
) -> None:
    daemon = await start_daemon()
    physical = physical_buckets("runtime")
    await register(daemon, "runtime", physical)
    await daemon.call("s3.Write", {"bucket": "runtime", "pathname": "a.txt", "content": b"1"})
    result = await daemon.call("s3.UnregisterBucket", {"name": "runtime"})
    assert result == {"success": True, "message": "Bucket unregistered successfully"}
    assert "runtime" not in (await daemon.call("s3.ListBuckets", {}))["buckets"]
    with pytest.raises(RpcError) as caught:
        await daemon.call("s3.Exists", {"bucket": "runtime", "pathname": "a.txt"})
    assert caught.value.code == "BUCKET_NOT_FOUND"
    # The objects stay in S3; registering the name again reaches them.
    await register(daemon, "runtime", physical)
    exists = await daemon.call("s3.Exists", {"bucket": "runtime", "pathname": "a.txt"})
    assert exists["exists"] is True


async def test_a_configured_bucket_cannot_be_unregistered(daemon: RunningDaemon) -> None:
    with pytest.raises(RpcError) as caught:
        await daemon.call("s3.UnregisterBucket", {"name": "uploads"})
    assert caught.value.code == "INVALID_CONFIG"
    assert "s3.RegisterBucket" in caught.value.message
    assert (await daemon.call("s3.Exists", {"pathname": "x"}))["exists"] is False


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"name": "never-registered"}, "BUCKET_NOT_FOUND"),
        ({"name": ""}, "INVALID_REQUEST"),
        ({}, "INVALID_REQUEST"),
        ({"name": "x", "force": True}, "INVALID_REQUEST"),
    ],
)
async def test_unregister_refuses_unknown_names_and_bad_params(
    daemon: RunningDaemon, params: dict[str, Any], code: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await daemon.call("s3.UnregisterBucket", params)
    assert caught.value.code == code


async def test_a_call_in_flight_finishes_before_unregister_answers(
    s3_endpoint: str, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    async with proxied_daemon(s3_endpoint, physical_buckets) as (daemon, proxy, _):
        physical = physical_buckets("slow")
        await register(daemon, "slow", physical)
        proxy.add_fault(Fault("delay", match=Match(op="PutObject", key="held"), delay=1.5))
        order: list[str] = []

        async def write() -> Any:
            result = await daemon.call(
                "s3.Write", {"bucket": "slow", "pathname": "held.txt", "content": b"data"}
            )
            order.append("write")
            return result

        async def unregister() -> Any:
            result = await daemon.call("s3.UnregisterBucket", {"name": "slow"})
            order.append("unregister")
            return result

        writing = asyncio.create_task(write())
        for _ in range(200):  # bounded: until the proxy holds the PutObject
            if any(r.op == "PutObject" and "held" in r.key for r in list(proxy.stats.log)):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the write never reached S3")
        unregistering = asyncio.create_task(unregister())
        await asyncio.sleep(0.2)
        # Meanwhile the name is already gone for new calls.
        with pytest.raises(RpcError) as caught:
            await daemon.call("s3.Exists", {"bucket": "slow", "pathname": "held.txt"})
        assert caught.value.code == "BUCKET_NOT_FOUND"
        written, unregistered = await asyncio.wait_for(asyncio.gather(writing, unregistering), 30)
    assert written["success"] is True
    assert unregistered["success"] is True
    assert order == ["write", "unregister"]
    assert s3_admin.get_object(Bucket=physical, Key="held.txt")["Body"].read() == b"data"


async def test_unregister_closes_a_client_only_no_other_bucket_uses(
    make_storage: MakeStorage, s3_endpoint: str, physical_buckets: Callable[..., str]
) -> None:
    storage = await make_storage({"files": {}}, default="files")
    manager = storage.manager
    await storage.call(
        "s3.RegisterBucket",
        {"name": "shared", "server": "local", "bucket": physical_buckets("shared")},
    )
    own_creds = server_spec(s3_endpoint, key="other-key", secret="other-secret")
    await storage.call(
        "s3.RegisterBucket",
        {"name": "own", "bucket": physical_buckets("own"), **own_creds},
    )
    own = manager.get("own")
    assert own.client is not manager.get("files").client
    assert manager.get("shared").client is manager.get("files").client
    # The shared client stays open for "files"; the one only "own" used is closed.
    assert await manager.unregister("shared") is False
    assert await manager.unregister("own") is True
    await storage.call("s3.Write", {"pathname": "still.txt", "content": b"1"})
    assert (await storage.call("s3.Exists", {"pathname": "still.txt"}))["exists"] is True

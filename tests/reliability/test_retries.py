"""``max_attempts`` is the total number of attempts per S3 request, the first included."""

from __future__ import annotations

import pytest

from reliability.conftest import StartProxiedDaemon
from reliability.faultproxy import Fault, FaultProxy, Match
from s3rpc.client import RpcError


@pytest.mark.parametrize("attempts", [1, 2, 3])
async def test_max_attempts_counts_every_attempt_the_first_included(
    attempts: int, fault_proxy: FaultProxy, start_proxied_daemon: StartProxiedDaemon
) -> None:
    daemon = await start_proxied_daemon(
        {"data": {}}, server={"max_attempts": attempts, "read_timeout": 5}
    )
    fault_proxy.add_fault(Fault("status_500", Match(op="PutObject"), times=100))
    with pytest.raises(RpcError) as raised:
        await daemon.call("s3.Write", {"pathname": "retried.txt", "content": "eA=="})
    assert raised.value.code == "S3_OPERATION_FAILED"
    assert fault_proxy.stats.count("PutObject") == attempts


async def test_a_retried_write_succeeds_once_the_server_recovers(
    fault_proxy: FaultProxy, start_proxied_daemon: StartProxiedDaemon
) -> None:
    daemon = await start_proxied_daemon({"data": {}}, server={"max_attempts": 3})
    fault_proxy.add_fault(Fault("status_503", Match(op="PutObject"), times=2))
    result = await daemon.call("s3.Write", {"pathname": "third-time.txt", "content": "eA=="})
    assert result["success"] is True
    assert fault_proxy.stats.count("PutObject") == 3

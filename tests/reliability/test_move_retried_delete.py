"""A Move whose conditional delete was applied but whose answer was lost: the HTTP layer resends
the DELETE, which finds the source gone. That cannot be told from another call having deleted or
moved it, so the Move does not claim success (the loser of two racing Moves must not), and its
error says both."""

from __future__ import annotations

from typing import Any

import pytest

from reliability.conftest import StartProxiedDaemon
from reliability.faultproxy import Fault, FaultProxy, Match
from reliability.test_storage_defects import object_bytes
from s3rpc.client import RpcError


@pytest.mark.backend_differs(
    "rgw",
    reason="RGW 16 ignores If-Match on DeleteObject: the resent DELETE of the gone source is "
    "answered 204 like any unconditional one, so the Move reports success (which it was)",
)
async def test_move_whose_delete_answer_was_lost_says_the_source_is_gone_and_why(
    start_proxied_daemon: StartProxiedDaemon, fault_proxy: FaultProxy, s3_admin: Any
) -> None:
    daemon = await start_proxied_daemon({"data": {}})
    physical = daemon.buckets["data"]
    await daemon.call("s3.Write", {"pathname": "src.txt", "content": b"payload"})
    fault = fault_proxy.add_fault(Fault("lose_response", Match(op="DeleteObject"), times=1))
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.Move", {"source_pathname": "src.txt", "dest_pathname": "d.txt"})
    assert fault.applied == 1
    assert info.value.code == "SOURCE_CHANGED", info.value.text
    assert "is gone" in info.value.message
    assert "this Move's own delete was applied and its answer lost" in info.value.message
    assert "'d.txt' in bucket 'data' was written and kept" in info.value.message
    assert object_bytes(s3_admin, physical, "src.txt") is None
    assert object_bytes(s3_admin, physical, "d.txt") == b"payload"

"""``s3.Ping``: the daemon answers by itself, over the real socket, with either codec."""

from __future__ import annotations

from typing import Any

import pytest

import s3rpc
from s3rpc.client import RpcError


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_ping_answers_pong_and_the_version(daemon: Any, codec: Any) -> None:
    assert await daemon.call("s3.Ping", {}, codec=codec) == {
        "pong": True,
        "version": s3rpc.__version__,
    }


async def test_ping_refuses_params_it_does_not_know(daemon: Any) -> None:
    with pytest.raises(RpcError) as raised:
        await daemon.call("s3.Ping", {"bucket": "uploads"})
    assert raised.value.code == "INVALID_REQUEST"

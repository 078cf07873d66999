"""The memoised User-Agent header is the one botocore builds, request after request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]

from s3rpc.storage.useragent import cache_user_agent

from .conftest import Storage

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("head_object", {"Bucket": "b", "Key": "k"}),
    ("put_object", {"Bucket": "b", "Key": "k/ü", "Body": b"x"}),
    ("get_object", {"Bucket": "b", "Key": "other", "Range": "bytes=0-1"}),
    ("list_objects_v2", {"Bucket": "b", "Prefix": "p/"}),
    ("delete_objects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}}),
]


class Stop(Exception):
    pass


def normalised(agent: str) -> list[str]:
    """The header's components, the (unordered) feature ids of ``m/`` sorted."""
    parts = []
    for part in agent.split(" "):
        if part.startswith("m/"):
            part = "m/" + ",".join(sorted(part[2:].split(",")))
        parts.append(part)
    return parts


async def user_agents(client: Any) -> list[str]:
    sent: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        value = request.headers["User-Agent"]
        sent.append(value.decode() if isinstance(value, bytes) else value)
        raise Stop

    client.meta.events.register("before-send.s3", capture)
    try:
        for name, args in CALLS:
            with pytest.raises(Stop):
                await getattr(client, name)(**args)
    finally:
        client.meta.events.unregister("before-send.s3", capture)
    return sent


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.mark.parametrize(
    "options",
    [
        {"endpoint_url": "http://127.0.0.1:9", "checksums": "when_required"},
        {"region_name": "eu-west-1", "checksums": "when_supported"},
    ],
    ids=["endpoint", "aws"],
)
async def test_cached_user_agent_equals_botocores(
    stack: AsyncExitStack, options: dict[str, Any]
) -> None:
    options = dict(options)
    checksums = options.pop("checksums")
    config = AioConfig(
        retries={"mode": "standard"},
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    session = aioboto3.Session()
    clients = [
        await stack.enter_async_context(
            session.client(
                "s3",
                aws_access_key_id="a",
                aws_secret_access_key="b",
                config=config,
                **{"region_name": "us-east-1", **options},
            )
        )
        for _ in range(2)
    ]
    plain, cached = clients
    assert cache_user_agent(cached)
    assert not cache_user_agent(cached)  # installed once
    expected = await user_agents(plain)
    for _ in range(2):  # built, then from the cache
        got = await user_agents(cached)
        assert [normalised(agent) for agent in got] == [normalised(agent) for agent in expected]


async def test_bucket_manager_clients_cache_their_user_agent(storage: Storage) -> None:
    client = storage.manager.get("files").client
    assert getattr(client._user_agent_creator.to_string, "_s3rpc_cached", False)
    await storage.call("s3.Write", {"pathname": "ua.txt", "content": b"ua"})
    assert (await storage.call("s3.Read", {"pathname": "ua.txt"}))["content"] == b"ua"

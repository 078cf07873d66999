"""The DNS resolver of registered buckets' clients: the ``s3.register`` address rule, enforced on
every answer the client connects with, not only on the one ``s3.RegisterBucket`` saw.

``s3.RegisterBucket`` refuses an endpoint whose host resolves to a link-local or cloud-metadata
address (:mod:`s3rpc.storage.policy`). That check alone resolves the name once; aiohttp resolves
it again when it connects, and a name whose owner answers differently the second time (DNS
rebinding) would reach the metadata service anyway. :class:`EndpointGuard` is handed to the
client's aiohttp connector (aiobotocore's ``AioConfig(connector_args={"resolver": ...})``, the
documented hook), so every address the client could connect to passes the same rule first; an
answer that names any forbidden address is refused as a whole (:class:`ForbiddenAddressError`),
and :mod:`s3rpc.storage.translate` turns that into the policy's INVALID_CONFIG.

aiohttp keeps resolved addresses for ``ttl_dns_cache`` seconds. That is safe: the cache is
filled only through this resolver, so it only ever holds answers that passed the rule, and a
name that is rebound is checked again at the next fill (:data:`DNS_CACHE_TTL` seconds at most).
Literal IP endpoints never reach a resolver; ``s3.RegisterBucket`` checked them once and for all.
"""

from __future__ import annotations

from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from s3rpc.storage.endpoints import (
    ForbiddenAddressError,
    forbidden_address,
    forbidden_name,
    host_address,
)

#: Seconds aiohttp may reuse a checked answer before resolving (and checking) the name again.
DNS_CACHE_TTL = 10


class EndpointGuard(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses any forbidden address."""

    def __init__(self) -> None:
        self._inner: AbstractResolver | None = None

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        if forbidden_name(host):
            raise ForbiddenAddressError(host)
        if self._inner is None:
            self._inner = DefaultResolver()  # needs the running loop: created on first use
        answers = await self._inner.resolve(host, port, family=family)
        for answer in answers:
            address = host_address(answer["host"])
            if address is None or forbidden_address(address):
                raise ForbiddenAddressError(host)
        return answers

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def guarded_connector_args() -> dict[str, Any]:
    """aiobotocore ``connector_args`` for a client whose every connection passes the rule."""
    return {"resolver": EndpointGuard(), "use_dns_cache": True, "ttl_dns_cache": DNS_CACHE_TTL}

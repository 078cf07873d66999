"""Endpoint resolution cached per client, bucket and operation: the object key left out.

botocore resolves every request's URL by evaluating the S3 endpoint ruleset with the call's
parameters. ``Key`` (and ``Prefix``, ``CopySource``) are ruleset parameters that no rule reads,
yet botocore keeps them in the key of its one process-wide 100-entry cache, so each distinct
object key evaluates the whole ruleset again (botocore issue 3528) — about 250 µs per call.

:func:`cache_endpoints` wraps a client's endpoint provider: parameters that no rule of the
loaded ruleset references are dropped before resolving, and results are kept per client. Which
parameters are dropped is read from the ruleset itself, so a botocore whose rules start to read
``Key`` gets it passed again. Everything else — builtins, hooks (region redirects), auth schemes
— still runs per call, exactly as botocore does it; only the rule evaluation is shared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: Results kept per client (one per distinct bucket, kind of operation and region).
CACHE_SIZE = 1024

_TEMPLATE = re.compile(r"\{([A-Za-z0-9_]+)(?:#[^}]*)?\}")


def _references(node: Any, seen: set[int]) -> Iterator[str]:
    """Every parameter name a ruleset node reads: ``{"ref": name}`` or ``"{name}"`` templates."""
    if id(node) in seen:
        return
    if isinstance(node, str):
        yield from _TEMPLATE.findall(node)
        return
    seen.add(id(node))
    if isinstance(node, dict):
        ref = node.get("ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _references(value, seen)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _references(value, seen)
    elif hasattr(node, "__dict__"):
        yield from _references(vars(node), seen)


def unread_parameters(ruleset: Any) -> frozenset[str]:
    """The ruleset's parameters that none of its rules references."""
    read = set(_references(ruleset.rules, set()))
    return frozenset(name for name in ruleset.parameters if name not in read)


class KeylessProvider:
    """An endpoint provider that ignores unread parameters and caches per instance."""

    def __init__(self, provider: Any, unread: frozenset[str], size: int = CACHE_SIZE) -> None:
        self._provider = provider
        self._unread = unread
        self._size = size
        self._cache: dict[tuple[tuple[str, Any], ...], Any] = {}
        #: Rule evaluations run (cache misses); tests read it.
        self.resolved = 0

    @property
    def ruleset(self) -> Any:
        return self._provider.ruleset

    def resolve_endpoint(self, **params: Any) -> Any:
        key = tuple(
            sorted(
                (name, tuple(value) if isinstance(value, list) else value)
                for name, value in params.items()
                if name not in self._unread
            )
        )
        cache = self._cache
        endpoint = cache.get(key)
        if endpoint is None:
            # Errors are not cached: they are raised again, as botocore would.
            endpoint = self._provider.resolve_endpoint(**dict(key))
            self.resolved += 1
            if len(cache) >= self._size:
                del cache[next(iter(cache))]  # the oldest entry
            cache[key] = endpoint
        return endpoint


def cache_endpoints(client: Any) -> KeylessProvider | None:
    """Give ``client`` a :class:`KeylessProvider`; None when it has no ruleset resolver."""
    resolver = getattr(client, "_ruleset_resolver", None)
    provider = getattr(resolver, "_provider", None)
    if resolver is None or provider is None:
        return None
    if isinstance(provider, KeylessProvider):
        return provider
    keyless = KeylessProvider(provider, unread_parameters(provider.ruleset))
    resolver._provider = keyless
    return keyless

"""The User-Agent header built once per set of feature ids, not once per request.

botocore assembles every request's User-Agent from about thirty components, sanitising each
character by character (about 45 µs a request). All of it is fixed per client except the
feature ids (``m/…``): the client's own and those the current request registered in its
botocore context. :func:`cache_user_agent` memoises a client's ``to_string`` on exactly that
set, so the header is the one botocore would send (the ids are an unordered set; botocore
itself joins them in set order).
"""

from __future__ import annotations

from typing import Any

from botocore.context import get_context  # type: ignore[import-untyped, unused-ignore]

#: Distinct feature-id sets remembered per client; more would mean ids carry data.
MAX_VARIANTS = 64


def cache_user_agent(client: Any) -> bool:
    """Memoise ``client``'s User-Agent string per feature-id set; False if it cannot."""
    creator = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if creator is None or build is None or getattr(build, "_s3rpc_cached", False):
        return False
    cache: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(creator._client_features or ()) | frozenset(
            context.features if context is not None else ()
        )
        found = cache.get(features)
        if found is None:
            found = build()
            if len(cache) >= MAX_VARIANTS:
                cache.clear()
            cache[features] = found
        return found

    to_string._s3rpc_cached = True  # type: ignore[attr-defined]
    creator.to_string = to_string
    return True

"""What a served method is, as the RPC edge, the storage layer and the client all see it.

A method is an async handler from a params map to a result, plus the names of the request
fields that carry object bytes (the codec converts those before the handler sees them: base64
under JSON, raw under msgpack). Bytes in a result are converted the same way on the way out.
This module imports nothing from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    handler: Handler
    bytes_fields: frozenset[str] = field(default_factory=frozenset)
    #: Calls of ``in_order`` methods (upload sessions) on one connection run one at a time, in
    #: the order their frames arrived, whatever their decoding takes.
    in_order: bool = False
    #: The most array items and map entries its params may hold, all levels together (the
    #: codec refuses a body with more before decoding it); None: the codec's default, enough
    #: for params without long lists.
    max_items: int | None = None


MethodTable = Mapping[str, Method]

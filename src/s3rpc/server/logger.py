"""A structlog logger that is assembled once per logging configuration, not once per line.

``structlog.get_logger(name)`` returns a lazy proxy that builds a new bound logger for every
line (with ``cache_logger_on_first_use`` off); caching it in structlog would outlive a later
``configure()``. :class:`CachedLogger` rebuilds only when the configuration changed, so a line
costs its processors and nothing else. Tools that edit the processor list in place
(``structlog.testing.capture_logs``) still see every line.
"""

from __future__ import annotations

from typing import Any

import structlog


class CachedLogger:
    __slots__ = ("_key", "_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._key: tuple[Any, ...] = ()
        self._logger: Any = None

    def _current(self) -> Any:
        config = structlog.get_config()
        key = self._key
        if (
            self._logger is None
            or config["processors"] is not key[0]
            or config["logger_factory"] is not key[1]
            or config["wrapper_class"] is not key[2]
            or config["context_class"] is not key[3]
        ):
            self._logger = structlog.get_logger(self._name).bind()
            self._key = (
                config["processors"],
                config["logger_factory"],
                config["wrapper_class"],
                config["context_class"],
            )
        return self._logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)

"""Logging setup: structlog, JSON lines on stdout off a terminal, console output on one.

Every event passes a redaction processor that masks credential fields wherever they appear
(top level or nested), so a secret cannot reach the log even if a caller binds it by mistake.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog

REDACTED = "[redacted]"
_SECRET_KEYS = frozenset(
    {
        "secret",
        "token",
        "password",
        "credentials",
        "secret_key",
        "session_token",
        "aws_secret_access_key",
        "aws_session_token",
        "authorization",
        "x-amz-security-token",
    }
)


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_key(k) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in _SECRET_KEYS


def redact_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        value = event[key]
        if _is_secret_key(key):
            event[key] = REDACTED
        elif isinstance(value, Mapping | list | tuple):
            event[key] = _redact_value(value)
    return event


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _orjson_dumps(value: Any, **_: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        # Text that is not UTF-8 (a client's msgpack string): escaped, never a failed line.
        return json.dumps(value, default=str, ensure_ascii=True)


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    out = stream or sys.stdout
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: list[Any]
    if console:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=out.isatty(),
                exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
                if _has_rich()
                else structlog.dev.plain_traceback,
            )
        ]
    else:
        renderer = [
            # Frame locals could hold credentials: tracebacks carry code locations only.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )

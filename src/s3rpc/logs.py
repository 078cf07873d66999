"""Logging setup: structlog, JSON lines on stdout off a terminal, console output on one.

Every event passes a redaction processor that masks credential fields wherever they appear
(top level or nested), so a secret cannot reach the log even if a caller binds it by mistake.

Lines are cheap enough for one per call: redaction looks at a key once, and debug/info lines
are written once per event-loop iteration, many calls' lines in one write; warnings and errors
are written at once, after whatever is pending.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import sys
import threading
import time
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


#: Whether an event key is a secret's, by key: log keys are names in the code, a small set.
_KEY_IS_SECRET: dict[str, bool] = {}
_SCALARS = frozenset({str, int, float, bool, type(None)})


def redact_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():  # values are replaced, keys never added: safe
        secret = _KEY_IS_SECRET.get(key)
        if secret is None:
            secret = _is_secret_key(key)
            if isinstance(key, str) and len(_KEY_IS_SECRET) < 4096:
                _KEY_IS_SECRET[key] = secret
        if secret:
            event[key] = REDACTED
        elif type(value) not in _SCALARS and isinstance(value, Mapping | list | tuple):
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


_second = -1
_second_text = ""


def add_timestamp(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``timestamp``: ISO 8601 UTC with microseconds (``2024-05-01T12:00:00.123456Z``), the
    date and time formatted once per second."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    event["timestamp"] = f"{_second_text}.{int((now - second) * 1_000_000):06d}Z"
    return event


class LineWriter:
    """structlog's logger: one line per event; debug and info lines are written once per
    event-loop iteration (one write and flush for the lines of many calls), warnings and
    errors at once, after the lines pending. Outside an event loop every line is written at
    once. What is pending at exit is written too."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled

    def _defer(self, message: str) -> None:
        with self._lock:
            self._pending.append(message)
        scheduled = self._loop
        if scheduled is not None and not scheduled.is_closed():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._loop = loop
        loop.call_soon(self.flush)

    def _now(self, message: str) -> None:
        with self._lock:
            self._pending.append(message)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            self._loop = None
            if not self._pending:
                return
            text = "\n".join(self._pending) + "\n"
            self._pending.clear()
            try:
                self._file.write(text)
                self._file.flush()
            except (OSError, ValueError):
                pass  # stdout closed or gone: the daemon keeps serving

    debug = info = msg = _defer
    warning = warn = error = err = critical = fatal = exception = failure = _now


_writers: list[LineWriter] = []


@atexit.register
def _flush_writers() -> None:
    for writer in _writers:
        writer.flush()


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
        add_timestamp,
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
    for old in _writers:
        old.flush()
    writer = LineWriter(out)
    _writers[:] = [writer]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_args: writer,
        cache_logger_on_first_use=False,
    )

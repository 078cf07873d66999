"""Logging setup: structlog, JSON lines on stdout off a terminal, console output on one.

Every event passes a redaction processor that masks credential fields wherever they appear
(top level or nested), so a secret cannot reach the log even if a caller binds it by mistake.

Lines are cheap enough for one per call: redaction looks at a key once, and debug/info lines
are written once per event-loop iteration, many calls' lines in one write; warnings and errors
are written at once, after whatever is pending.

Lines go to stdout, stderr or files (RoadRunner's ``logs.output``); a write that fails is
reported once on ``logs.err_output`` (stderr by default), as RoadRunner's logger reports its own
errors there, and the daemon keeps serving.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
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
    once. What is pending at exit is written too.

    Lines go to every file of ``files``; a file that fails a write is reported once (until it
    works again) on ``errors``, RoadRunner's ``err_output``, and the daemon keeps serving."""

    def __init__(
        self,
        file: TextIO,
        *more: TextIO,
        errors: Sequence[TextIO] = (),
        names: Sequence[str] = (),
        owned: Sequence[TextIO] = (),
    ) -> None:
        self._files = (file, *more)
        self._owned = tuple(owned)
        self._errors = tuple(errors)
        self._names = tuple(names)
        self._failing: set[int] = set()
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
            for index, file in enumerate(self._files):
                try:
                    file.write(text)
                    file.flush()
                except (OSError, ValueError) as exc:
                    self._failed(index, exc)  # stdout closed, disk full: keep serving
                else:
                    if self._failing:
                        self._failing.discard(index)

    def _failed(self, index: int, exc: Exception) -> None:
        if index in self._failing:
            return
        self._failing.add(index)
        name = self._names[index] if index < len(self._names) else f"output {index + 1}"
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        report = f"s3rpc: cannot write log lines to {name}: {reason}\n"
        for err in self._errors:
            try:
                err.write(report)
                err.flush()
            except (OSError, ValueError):
                pass

    def close_files(self) -> None:
        """Close the files opened for this writer (``owned``; never stdout or stderr)."""
        for file in self._owned:
            with contextlib.suppress(OSError, ValueError):
                file.close()

    debug = info = msg = _defer
    warning = warn = error = err = critical = fatal = exception = failure = _now


_writers: list[LineWriter] = []


@atexit.register
def _flush_writers() -> None:
    for writer in _writers:
        writer.flush()


class WholeLines(io.TextIOBase):
    """A stream shared with other processes (the ``rpc.workers`` workers' stdout: a pipe,
    journald's socket): text is written in pieces of whole lines of at most PIPE_BUF bytes, one
    write(2) each, so lines of two processes never interleave (a single line longer than that
    is written alone)."""

    def __init__(self, stream: io.TextIOBase | Any) -> None:
        self._stream = stream
        self._fd: int = stream.fileno()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "surrogateescape")
        while data:
            cut = len(data)
            if cut > _PIPE_BUF:
                cut = data.rfind(b"\n", 0, _PIPE_BUF) + 1 or data.find(b"\n", _PIPE_BUF) + 1 or cut
            piece, data = memoryview(data[:cut]), data[cut:]
            while piece:
                piece = piece[os.write(self._fd, piece) :]
        return len(text)


_PIPE_BUF = 4096


class LogOutputError(Exception):
    """A ``logs.output`` / ``logs.err_output`` file cannot be opened; the message names it."""


def _open_outputs(
    names: Sequence[str], key: str, wrap: Callable[[TextIO], TextIO] | None, owned: list[TextIO]
) -> list[TextIO]:
    """``stdout``, ``stderr`` or a file path (appended to, created 0644, as RoadRunner does);
    the files opened are appended to ``owned``."""
    files: list[TextIO] = []
    for name in names:
        if name.lower() == "stdout":
            file = sys.stdout
        elif name.lower() == "stderr":
            file = sys.stderr
        else:
            try:
                fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                for opened in owned:
                    opened.close()
                raise LogOutputError(f"{key}: cannot open {name}: {exc.strerror or exc}") from None
            file = open(fd, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            owned.append(file)
        files.append(wrap(file) if wrap is not None else file)
    return files


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    *,
    output: Sequence[str] = (),
    err_output: Sequence[str] = (),
    wrap: Callable[[TextIO], TextIO] | None = None,
) -> None:
    """Lines at ``level`` and above, rendered per ``fmt`` (``auto``: console on a terminal),
    to ``output`` (``stdout``, ``stderr``, file paths; empty: ``stream``, else stdout); a failed
    write is reported on ``err_output`` (empty: stderr). ``wrap`` wraps each stream opened here
    (workers: whole-line writes). Raises ``LogOutputError`` for a file that cannot be opened."""
    owned: list[TextIO] = []
    outputs = _open_outputs(output, "logs.output", wrap, owned)
    names = list(output)
    if not outputs:
        outputs = [stream or (wrap(sys.stdout) if wrap is not None else sys.stdout)]
        names = ["stdout" if stream is None else "the log stream"]
    errors = _open_outputs(err_output or ("stderr",), "logs.err_output", None, owned)
    out = outputs[0]
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
                colors=all(file.isatty() for file in outputs),
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
        old.close_files()
    writer = LineWriter(*outputs, errors=errors, names=names, owned=owned)
    _writers[:] = [writer]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_args: writer,
        cache_logger_on_first_use=False,
    )


def set_level(level: str) -> None:
    """Change the level of every logger (a reloaded ``logs.level``); output stays as it is."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))
    )

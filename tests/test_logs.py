"""Logging: secrets are masked at any depth, JSON off a terminal, tracebacks without locals."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from s3rpc.config import config_from_mapping
from s3rpc.logs import REDACTED, LineWriter, LogOutputError, configure_logging, redact_secrets

CANARY = "canary-secret-7c1e9b"


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def redact(**event: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event)))


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- redact_secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
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
        "Secret",
        "TOKEN",
        "Authorization",
    ],
)
def test_secret_keys_are_masked_at_top_level(key: str) -> None:
    event = redact(event="x", **{key: CANARY})
    assert event[key] == REDACTED
    assert event["event"] == "x"


def test_credentials_mapping_is_masked_whole() -> None:
    event = redact(event="x", credentials={"key": "AKIA", "secret": CANARY})
    assert event["credentials"] == REDACTED


def test_secrets_nested_in_mappings_are_masked_at_any_depth() -> None:
    event = redact(
        event="x",
        server={"region": "us-east-1", "credentials": {"key": "k", "secret": CANARY}},
        deep={"a": {"b": {"c": {"token": CANARY, "keep": 1}}}},
    )
    assert event["server"] == {"region": "us-east-1", "credentials": REDACTED}
    assert event["deep"] == {"a": {"b": {"c": {"token": REDACTED, "keep": 1}}}}
    assert CANARY not in repr(event)


def test_secrets_inside_lists_and_tuples_are_masked() -> None:
    event = redact(
        event="x",
        servers=[{"name": "a", "secret": CANARY}, {"name": "b", "password": CANARY}],
        pairs=({"token": CANARY},),
        headers=[[{"Authorization": f"AWS4-HMAC-SHA256 Credential={CANARY}"}]],
    )
    assert event["servers"] == [
        {"name": "a", "secret": REDACTED},
        {"name": "b", "password": REDACTED},
    ]
    assert CANARY not in repr(event)


def test_ordinary_fields_are_left_alone() -> None:
    event = redact(event="call", method="s3.Write", bucket="uploads", seq=3, size=10, keys=["a"])
    assert event == {
        "event": "call",
        "method": "s3.Write",
        "bucket": "uploads",
        "seq": 3,
        "size": 10,
        "keys": ["a"],
    }


# --- output format -----------------------------------------------------------------------------


def test_json_lines_when_the_stream_is_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)
    structlog.get_logger("t").info("call", method="s3.Read", seq=7, duration_ms=1.5)
    (line,) = lines(out)
    assert line["event"] == "call"
    assert line["method"] == "s3.Read"
    assert line["seq"] == 7
    assert line["level"] == "info"
    assert "timestamp" in line


def test_console_output_on_a_tty() -> None:
    out = FakeTty()
    configure_logging("info", "auto", stream=out)
    structlog.get_logger("t").info("call", method="s3.Read")
    text = out.getvalue()
    assert "call" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_json_can_be_forced_on_a_tty() -> None:
    out = FakeTty()
    configure_logging("info", "json", stream=out)
    structlog.get_logger("t").info("call")
    assert lines(out)[0]["event"] == "call"


def test_level_filters_lower_events() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    log = structlog.get_logger("t")
    log.info("hidden")
    log.debug("hidden")
    log.warning("shown")
    assert [line["event"] for line in lines(out)] == ["shown"]


def test_bound_secrets_are_redacted_in_json_output() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    structlog.contextvars.bind_contextvars(token=CANARY)
    structlog.get_logger("t").bind(credentials={"secret": CANARY}).debug(
        "connect", config={"servers": {"local": {"credentials": {"secret": CANARY}}}}
    )
    assert CANARY not in out.getvalue()
    (line,) = lines(out)
    assert line["token"] == REDACTED
    assert line["credentials"] == REDACTED


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_carry_no_frame_locals(fmt: str) -> None:
    out = FakeTty() if fmt == "console" else io.StringIO()
    configure_logging("info", fmt, stream=out)  # type: ignore[arg-type]

    def failing(secret_value: str) -> None:
        local_copy = secret_value  # noqa: F841 - a local that must not be rendered
        raise RuntimeError("boom")

    try:
        failing(CANARY)
    except RuntimeError:
        structlog.get_logger("t").exception("handler_failed")
    text = out.getvalue()
    assert "boom" in text
    assert "failing" in text, "the traceback should still name the frames"
    assert CANARY not in text
    if fmt == "json":
        (line,) = lines(out)
        frames = line["exception"][0]["frames"]
        assert frames
        assert all("locals" not in frame for frame in frames)


def test_a_log_line_with_text_that_is_not_utf8_is_written_escaped() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("t").info("call", pathname="bad-\udcff-name")
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["pathname"] == "bad-\udcff-name"


# --- RoadRunner's logs.output / logs.err_output / level names -----------------------------------


def test_output_files_get_every_line_appended(tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("kept\n", encoding="utf-8")
    configure_logging("info", "json", output=[str(first), str(second)])
    structlog.get_logger("t").info("call", method="s3.Read")
    structlog.get_logger("t").error("failed", method="s3.Write")
    assert first.read_text(encoding="utf-8").splitlines()[0] == "kept"
    for path in (first, second):
        events = [json.loads(line)["event"] for line in path.read_text().splitlines()[-2:]]
        assert events == ["call", "failed"]
    assert second.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_reconfiguring_closes_the_files_it_opened(tmp_path: Path) -> None:
    import s3rpc.logs as logs_module

    configure_logging("info", "json", output=[str(tmp_path / "a.log")])
    (writer,) = logs_module._writers
    opened = list(writer._owned)
    configure_logging("info", "json", stream=io.StringIO())
    assert opened
    assert all(file.closed for file in opened)


def test_an_output_that_cannot_be_opened_names_the_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "s3rpc.log"
    with pytest.raises(LogOutputError, match=r"^logs\.output: cannot open .*no-such-dir"):
        configure_logging("info", "json", output=[str(missing)])
    with pytest.raises(LogOutputError, match=r"^logs\.err_output: cannot open "):
        configure_logging("info", "json", err_output=[str(missing)])


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_failing_output_is_reported_once_on_err_output_and_others_still_get_lines() -> None:
    good, bad, errors = io.StringIO(), BrokenStream(), io.StringIO()
    writer = LineWriter(good, bad, errors=[errors], names=["stdout", "/var/log/full.log"])
    writer.error("one")
    writer.error("two")
    assert good.getvalue() == "one\ntwo\n"
    assert errors.getvalue() == (
        "s3rpc: cannot write log lines to /var/log/full.log: No space left on device\n"
    )


def test_roadrunner_warn_level_from_the_config_filters_info_lines() -> None:
    level = config_from_mapping({"logs": {"level": "warn", "encoding": "json"}}).logs.level
    out = io.StringIO()
    configure_logging(level, "json", stream=out)
    log = structlog.get_logger("t")
    log.info("hidden")
    log.warning("shown")
    log.error("also_shown")
    assert [line["event"] for line in lines(out)] == ["shown", "also_shown"]

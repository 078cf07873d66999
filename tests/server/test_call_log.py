"""``logs.calls``: which calls get a ``call`` line, and what a failed call's line carries."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.logs import LineWriter, configure_logging
from s3rpc.server import Method, RpcServer
from s3rpc.server.rpc_server import CallLines

from .conftest import TABLE, StartServer
from .wire import ERROR_FLAG, JSON_FLAG, call, close, connect, request


async def s3_denied(params: dict[str, Any]) -> Any:
    raise S3RpcError(
        ErrorCode.PERMISSION_DENIED, "read 'a.txt': access denied by S3", "AccessDenied, HTTP 403"
    )


LOG_TABLE = {**TABLE, "test.Denied": Method(s3_denied)}


@pytest.fixture
def serve(start_server: StartServer) -> Callable[[CallLines], Awaitable[RpcServer]]:
    return lambda lines: start_server(table=LOG_TABLE, call_lines=lines)


async def call_lines_for(server: RpcServer) -> list[dict[str, Any]]:
    """One ok call, one S3 failure, one unknown method; the ``call`` lines they logged."""
    reader, writer = await connect(server.bound)
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        ok = await call(reader, writer, request(JSON_FLAG, 1, "test.Echo", b'{"a":1}'))
        denied = await call(reader, writer, request(JSON_FLAG, 2, "test.Denied", b"{}"))
        unknown = await call(reader, writer, request(JSON_FLAG, 3, "test.Nope", b"{}"))
    await close(writer)
    assert ok.flags == JSON_FLAG
    assert denied.flags == JSON_FLAG | ERROR_FLAG
    assert unknown.flags == JSON_FLAG | ERROR_FLAG
    return [entry for entry in logs if entry["event"] == "call"]


async def test_every_call_is_logged_by_default(serve: Any) -> None:
    lines = await call_lines_for(await serve("all"))
    assert [(line["seq"], line["outcome"]) for line in lines] == [
        (1, "ok"),
        (2, "PERMISSION_DENIED"),
        (3, "UNKNOWN_METHOD"),
    ]
    assert "error_message" not in lines[0]


async def test_errors_mode_logs_only_failed_calls_with_their_s3_details(serve: Any) -> None:
    lines = await call_lines_for(await serve("errors"))
    assert [line["seq"] for line in lines] == [2, 3]
    denied, unknown = lines
    assert denied["method"] == "test.Denied"
    assert denied["outcome"] == "PERMISSION_DENIED"
    assert denied["error_message"] == "read 'a.txt': access denied by S3"
    assert denied["details"] == "AccessDenied, HTTP 403"
    assert unknown["outcome"] == "UNKNOWN_METHOD"
    assert "test.Nope" in unknown["error_message"]


async def test_off_mode_logs_no_call_lines(serve: Any) -> None:
    assert await call_lines_for(await serve("off")) == []


async def test_the_daemon_config_accepts_logs_calls() -> None:
    from s3rpc.config import config_from_mapping

    config = config_from_mapping({"logs": {"calls": "errors"}, "s3": {}})
    assert config.logs.calls == "errors"
    with pytest.raises(Exception, match="calls"):
        config_from_mapping({"logs": {"calls": "some"}, "s3": {}})


# --- LineWriter -------------------------------------------------------------------------------


async def test_info_lines_of_one_loop_iteration_are_written_together_and_in_order() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        log = structlog.get_logger("t")
        for i in range(5):
            log.info("call", seq=i)
        assert out.getvalue() == "", "info lines wait for the end of the loop iteration"
        log.warning("slow", seq=5)  # a warning is written at once, after what is pending
        assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [
            0,
            1,
            2,
            3,
            4,
            5,
        ]
        log.info("call", seq=6)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert json.loads(out.getvalue().splitlines()[-1])["seq"] == 6
    finally:
        structlog.reset_defaults()


def test_lines_outside_an_event_loop_are_written_at_once() -> None:
    out = io.StringIO()
    writer = LineWriter(out)
    writer.info("one")
    writer.debug("two")
    assert out.getvalue() == "one\ntwo\n"


async def test_a_closed_stream_does_not_fail_the_caller() -> None:
    out = io.StringIO()
    writer = LineWriter(out)
    out.close()
    writer.info("lost")
    writer.error("lost too")  # neither raises
    await asyncio.sleep(0)

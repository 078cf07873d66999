"""A frame over rpc.max_frame_size is refused with a log line naming the setting."""

from __future__ import annotations

import orjson
import structlog

from .conftest import StartServer
from .wire import JSON_FLAG, assert_closed_by_server, close, connect, read_response, request


async def test_oversized_frame_log_names_the_setting_and_the_declared_size(
    start_server: StartServer,
) -> None:
    server = await start_server(max_frame_size=1024)
    reader, writer = await connect(server.bound)
    frame = request(JSON_FLAG, 1, "test.Echo", orjson.dumps({"pad": "x" * 2000}))
    with structlog.testing.capture_logs() as logs:
        writer.write(frame)
        await writer.drain()
        resp = await read_response(reader)
    assert resp.is_error
    assert resp.text.startswith("FRAME_TOO_LARGE: ")
    refused = [entry for entry in logs if entry["event"] == "frame_too_large"]
    assert len(refused) == 1
    assert refused[0]["setting"] == "rpc.max_frame_size"
    assert refused[0]["declared_size"] == len(frame) - 20  # all after the 20-byte header
    assert refused[0]["max_frame_size"] == 1024
    assert not [entry for entry in logs if entry["event"] == "protocol_error"]
    await close(writer)


async def test_other_framing_errors_do_not_blame_max_frame_size(
    start_server: StartServer,
) -> None:
    server = await start_server(max_frame_size=1024)
    reader, writer = await connect(server.bound)
    with structlog.testing.capture_logs() as logs:
        writer.write(b"\xff" * 24)  # bad version and CRC
        await writer.drain()
        await assert_closed_by_server(reader)
    errors = [entry for entry in logs if entry["event"] == "protocol_error"]
    assert len(errors) == 1
    assert "setting" not in errors[0]
    await close(writer)

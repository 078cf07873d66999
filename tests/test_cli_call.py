"""``s3rpc call`` as a real subprocess against the in-process daemon.

The daemon fixture runs in this test's event loop, so the CLI is started with
``asyncio.create_subprocess_exec`` and awaited: a blocking ``subprocess.run`` would freeze
the loop and with it the daemon the subprocess is talking to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

ALL_BYTES = bytes(range(256))
CLI_TIMEOUT = 30


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m s3rpc call ARGS``; returns (exit code, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if k != "RR_RPC"}
    environ.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "s3rpc",
        "call",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 5)
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def closed_port_address() -> str:
    """A loopback address nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


async def test_list_buckets_prints_json(daemon: Any) -> None:
    code, out, err = await run_cli("s3.ListBuckets", "--rpc", daemon.address)
    assert code == 0, err
    result = json.loads(out)
    assert sorted(result["buckets"]) == ["private-docs", "uploads"]
    assert result["default"] == "uploads"


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_file_upload_then_out_download_returns_identical_bytes(
    daemon: Any, tmp_path: Path, codec: str
) -> None:
    original = ALL_BYTES + os.urandom(100 * 1024)
    source = tmp_path / "in.bin"
    source.write_bytes(original)
    target = tmp_path / "out.bin"
    pathname = f"cli/{codec}/blob.bin"
    common = ["--rpc", daemon.address, "--codec", codec]

    code, out, err = await run_cli(
        "s3.Write", json.dumps({"pathname": pathname}), "--file", str(source), *common
    )
    assert code == 0, err
    written = json.loads(out)
    assert written["success"] is True
    assert written["pathname"] == pathname
    assert written["size"] == len(original)

    code, out, err = await run_cli(
        "s3.Read", json.dumps({"pathname": pathname}), "--out", str(target), *common
    )
    assert code == 0, err
    read = json.loads(out)
    assert read["size"] == len(original)
    assert str(len(original)) in read["content"]  # "<N bytes written to PATH>"
    assert target.read_bytes() == original


async def test_read_without_out_prints_content_as_base64(daemon: Any) -> None:
    text = "Grüße, s3rpc!"
    params = json.dumps({"pathname": "cli/hello.txt"})
    code, _, err = await run_cli("s3.Write", params, "--content", text, "--rpc", daemon.address)
    assert code == 0, err
    code, out, err = await run_cli("s3.Read", params, "--rpc", daemon.address)
    assert code == 0, err
    assert base64.b64decode(json.loads(out)["content"]) == text.encode()


async def test_base64_content_in_json_params_is_decoded(daemon: Any) -> None:
    params = {"pathname": "cli/b64.bin", "content": base64.b64encode(ALL_BYTES).decode()}
    code, out, err = await run_cli("s3.Write", json.dumps(params), "--rpc", daemon.address)
    assert code == 0, err
    assert json.loads(out)["size"] == 256
    client = await daemon.client("msgpack")
    assert (await client.call("s3.Read", {"pathname": "cli/b64.bin"}))["content"] == ALL_BYTES


async def test_rr_rpc_env_var_is_honoured(daemon: Any) -> None:
    code, out, err = await run_cli("s3.ListBuckets", env={"RR_RPC": daemon.address})
    assert code == 0, err
    assert json.loads(out)["default"] == "uploads"


async def test_rpc_flag_overrides_rr_rpc(daemon: Any) -> None:
    code, out, err = await run_cli(
        "s3.ListBuckets", "--rpc", daemon.address, env={"RR_RPC": closed_port_address()}
    )
    assert code == 0, err
    assert json.loads(out)["default"] == "uploads"


async def test_rpc_error_exits_1_with_the_code_on_stderr(daemon: Any) -> None:
    code, out, err = await run_cli(
        "s3.Read", json.dumps({"pathname": "cli/missing.txt"}), "--rpc", daemon.address
    )
    assert code == 1
    assert out == ""
    assert err.startswith("FILE_NOT_FOUND: ")
    assert "cli/missing.txt" in err


async def test_unknown_method_exits_1_with_the_code_on_stderr(daemon: Any) -> None:
    code, _, err = await run_cli("s3.Nope", "--rpc", daemon.address, "--codec", "msgpack")
    assert code == 1
    assert err.startswith("UNKNOWN_METHOD: ")


@pytest.mark.parametrize(
    "params",
    ['{"pathname": ', "not json", "[1, 2]", '"a string"', '{"content": "%%% not base64"}'],
)
async def test_bad_json_params_exit_2(params: str) -> None:
    # The address is unreachable: exit 2 proves the params were refused before connecting.
    code, out, err = await run_cli("s3.Read", params, "--rpc", closed_port_address())
    assert code == 2
    assert out == ""
    assert err.startswith("s3rpc: ")


async def test_bad_usage_exits_2() -> None:
    code, _, err = await run_cli("s3.ListBuckets", "--codec", "xml")
    assert code == 2
    assert "--codec" in err


async def test_unreachable_address_exits_1() -> None:
    address = closed_port_address()
    code, out, err = await run_cli("s3.ListBuckets", "--rpc", address, "--timeout", "5")
    assert code == 1
    assert out == ""
    assert "cannot call" in err
    assert address in err


async def test_call_timeout_exits_1() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(), CLI_TIMEOUT)
        writer.close()

    server = await asyncio.start_server(never_answer, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        code, out, err = await run_cli(
            "s3.ListBuckets", "--rpc", f"tcp://127.0.0.1:{port}", "--timeout", "0.5"
        )
    finally:
        server.close()
    assert code == 1
    assert out == ""
    assert "cannot call" in err


async def test_missing_upload_file_is_bad_usage(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.bin"
    code, _, err = await run_cli(
        "s3.Write", '{"pathname": "a.bin"}', "--file", str(missing), "--rpc", closed_port_address()
    )
    assert "Traceback" not in err
    assert err.startswith("s3rpc: ")
    assert str(missing) in err
    assert code == 2


async def test_unwritable_out_path_is_reported_without_a_traceback(
    daemon: Any, tmp_path: Path
) -> None:
    client = await daemon.client()
    await client.call("s3.Write", {"pathname": "cli/out.txt", "content": b"x"})
    target = tmp_path / "no-such-dir" / "out.txt"
    code, _, err = await run_cli(
        "s3.Read", '{"pathname": "cli/out.txt"}', "--out", str(target), "--rpc", daemon.address
    )
    assert code in (1, 2)
    assert "Traceback" not in err
    assert err.startswith("s3rpc: ")
    assert str(target) in err

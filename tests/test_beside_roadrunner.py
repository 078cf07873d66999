"""Beside RoadRunner: the same ``.rr.yaml`` through the CLI; a taken ``rpc.listen`` explained."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from s3rpc.app import listen_error

RR_CONFIGS = Path(__file__).parent / "rr_configs"
CANARY = "beside-rr-canary-5e0f1a"
RUN_TIMEOUT = 60
GO_PLUGIN_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_EU_ACCESS_KEY_ID",
    "AWS_EU_SECRET_ACCESS_KEY",
    "DO_SPACES_KEY",
    "DO_SPACES_SECRET",
    "B2_APPLICATION_KEY_ID",
    "B2_APPLICATION_KEY",
)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in GO_PLUGIN_VARS}
    return subprocess.run(
        [sys.executable, "-m", "s3rpc", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**base, **(env or {})},
        check=False,
    )


def test_check_config_accepts_the_go_plugin_example_unchanged() -> None:
    env = {name: CANARY for name in GO_PLUGIN_VARS}
    result = run_cli("check-config", "-c", str(RR_CONFIGS / "s3-storage.rr.yaml.example"), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK: listen tcp://127.0.0.1:6001; buckets: ")
    assert "default: uploads" in result.stdout
    assert CANARY not in result.stdout + result.stderr


def test_check_config_lists_the_roadrunner_keys_it_accepts_and_does_not_use(
    tmp_path: Path,
) -> None:
    path = tmp_path / ".rr.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": "3",
                "rpc": {"listen": "tcp://127.0.0.1:6101"},
                "logs": {"level": "warn", "line_ending": "\n", "channels": {"http": {}}},
                "metrics": {"collect": {"app_total": {"type": "counter"}}},
                "status": {"address": "127.0.0.1:2114", "check_timeout": 60},
            }
        )
    )
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        "RoadRunner keys accepted, not used: logs.line_ending, logs.channels.http, "
        "metrics.collect, status.check_timeout"
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_port_names_rpc_listen_and_the_flag_and_logs_go_to_logs_output(
    tmp_path: Path, workers: int
) -> None:
    log_file = tmp_path / "s3rpc.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / ".rr.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "rpc": {"listen": f"tcp://127.0.0.1:{port}", "workers": workers},
                    "logs": {"level": "debug", "encoding": "json", "output": str(log_file)},
                    "metrics": {"collect": {"app_total": {"type": "counter"}}},
                }
            )
        )
        result = run_cli("serve", "-c", str(path))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"s3rpc: rpc.listen: cannot listen on tcp://127.0.0.1:{port}: Address already in use; "
        "another process holds this address: pick another one with rpc.listen in the config "
        "or --listen on the command line"
    )
    assert result.stdout == ""  # log lines went to logs.output
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    ignored = [e for e in events if e["event"] == "config_key_ignored"]
    assert [e["key"] for e in ignored] == ["metrics.collect"]


def test_a_unix_socket_another_process_listens_on_names_rpc_listen_and_the_flag(
    tmp_path: Path,
) -> None:
    sock_path = tmp_path / "s3rpc.sock"
    with socket.socket(socket.AF_UNIX) as taken:
        taken.bind(str(sock_path))
        taken.listen()
        path = tmp_path / ".rr.yaml"
        path.write_text(yaml.safe_dump({"rpc": {"listen": f"unix://{sock_path}"}}))
        result = run_cli("serve", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert f"rpc.listen: another process is listening on {sock_path}" in result.stderr
    assert "--listen" in result.stderr


def test_port_6001_taken_hints_at_roadrunners_own_rpc() -> None:
    taken = OSError(errno.EADDRINUSE, "Address already in use")
    message = listen_error("tcp://127.0.0.1:6001", taken)
    assert message.startswith("rpc.listen: cannot listen on tcp://127.0.0.1:6001: ")
    assert "--listen" in message
    assert "6001 is RoadRunner's own RPC port" in message
    assert "unix://" in message
    # RoadRunner sets RR_RPC to its own address in its workers (docs/configuration.md, "Beside
    # RoadRunner"): the hint must not tell PHP to take s3rpc's address from it.
    assert "point RR_RPC" not in message
    assert "S3RPC_RPC: not RR_RPC, which RoadRunner sets to its own address" in message
    assert "RoadRunner" not in listen_error("tcp://127.0.0.1:6002", taken)
    refused = OSError(errno.EACCES, "Permission denied")
    assert listen_error("tcp://0.0.0.0:6001", refused) == (
        "rpc.listen: cannot listen on tcp://0.0.0.0:6001: Permission denied"
    )


def test_a_shared_file_s_metrics_and_status_addresses_are_overridden_on_the_command_line(
    tmp_path: Path,
) -> None:
    """RoadRunner holds the addresses of the shared file; s3rpc takes its own from flags."""
    log_file = tmp_path / "s3rpc.log"
    held = [socket.socket() for _ in range(3)]
    try:
        for sock in held:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        rpc_port, metrics_port, status_port = (sock.getsockname()[1] for sock in held)
        path = tmp_path / ".rr.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "rpc": {"listen": f"tcp://127.0.0.1:{rpc_port}"},
                    "metrics": {"address": f"127.0.0.1:{metrics_port}"},
                    "status": {"address": f"127.0.0.1:{status_port}"},
                    "logs": {"encoding": "json", "output": str(log_file)},
                }
            )
        )
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            own_rpc = free.getsockname()[1]
        args = ["--listen", f"tcp://127.0.0.1:{own_rpc}", "--status-address", "off"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3rpc", "serve", "-c", str(path), *args,
             "--metrics-address", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            metrics_url = None
            while metrics_url is None and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                lines = log_file.read_text().splitlines() if log_file.exists() else []
                for event in map(json.loads, lines):
                    if event["event"] == "metrics_listening":
                        metrics_url = event["address"]
            assert metrics_url is not None, proc.stderr.read() if proc.stderr else ""
            assert f":{metrics_port}/" not in metrics_url
            with urllib.request.urlopen(metrics_url, timeout=10) as answer:
                assert answer.status == 200
                assert b"rr_s3_rpc_connections" in answer.read()
            assert "status_listening" not in log_file.read_text()  # --status-address off
            with socket.create_connection(("127.0.0.1", own_rpc), timeout=10):
                pass
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=RUN_TIMEOUT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=RUN_TIMEOUT)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    finally:
        for sock in held:
            sock.close()


def test_a_bad_address_flag_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / ".rr.yaml"
    path.write_text("rpc: {listen: 'tcp://127.0.0.1:0'}\n")
    result = run_cli("serve", "-c", str(path), "--metrics-address", "nowhere")
    assert result.returncode == 2
    assert result.stderr.startswith("s3rpc: --metrics-address: must be host:port")

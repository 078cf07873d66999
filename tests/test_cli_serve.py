"""``s3rpc check-config`` and ``s3rpc serve`` exit codes and messages (0 ok, 1 failed, 2 config)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from s3rpc.cli import main

CANARY = "cli-canary-secret-d41d8c"
RUN_TIMEOUT = 60


def good_config(endpoint: str = "http://127.0.0.1:9", **rpc: Any) -> dict[str, Any]:
    return {
        "version": "3",
        "rpc": {"listen": "tcp://127.0.0.1:0", **rpc},
        "s3": {
            "default": "uploads",
            "servers": {
                "local": {
                    "region": "us-east-1",
                    "endpoint": endpoint,
                    "credentials": {"key": "AKIDEXAMPLE", "secret": CANARY},
                }
            },
            "buckets": {
                "uploads": {"server": "local", "bucket": "uploads-phys", "visibility": "public"},
                "private-docs": {"server": "local", "bucket": "docs-phys"},
            },
        },
        "logs": {"level": "debug"},
    }


def write(tmp_path: Path, data: Any, name: str = "rr.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3rpc", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


# --- check-config --------------------------------------------------------------------------------


def test_check_config_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, good_config())
    assert main(["check-config", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "configuration OK" in out
    assert "private-docs" in out
    assert "uploads" in out
    assert CANARY not in out + err


def test_check_config_process_exits_zero_and_never_prints_the_secret(tmp_path: Path) -> None:
    data = good_config()
    data["s3"]["servers"]["local"]["credentials"]["secret"] = "${S3RPC_TEST_SECRET}"
    path = write(tmp_path, data)
    result = run_cli("check-config", "-c", str(path), env={"S3RPC_TEST_SECRET": CANARY})
    assert result.returncode == 0, result.stderr
    assert CANARY not in result.stdout + result.stderr


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return data


BAD = {
    "visibility": ("s3.buckets.uploads.visibility", "shared"),
    "unknown_bucket_key": ("s3.buckets.uploads.colour", "blue"),
    "part_size_too_small": ("s3.buckets.uploads.part_size", 1024),
    "bad_endpoint": ("s3.servers.local.endpoint", "ftp://example"),
    "bad_listen": ("rpc.listen", "carrier-pigeon"),
    "bad_socket_mode": ("rpc.socket_mode", "rwxrwxrwx"),
    "bad_log_level": ("logs.level", "chatty"),
    "negative_shutdown_timeout": ("s3.shutdown_timeout", -1),
    "undefined_server": ("s3.buckets.uploads.server", "nowhere"),
    "undefined_default": ("s3.default", "nope"),
}


@pytest.mark.parametrize(("key", "value"), BAD.values(), ids=BAD.keys())
def test_check_config_rejects_a_bad_value_naming_the_dotted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any
) -> None:
    path = write(tmp_path, _set(good_config(), key, value))
    assert main(["check-config", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert key in err, err
    assert CANARY not in out + err


SECRET_IN_BAD_PLACES = {
    "secret_of_wrong_type": ("s3.servers.local.credentials.secret", {"nested": CANARY}),
    "secret_under_unknown_key": ("s3.servers.local.credentials.secrte", CANARY),
    "secret_as_listen": ("rpc.listen", CANARY),
    "secret_as_region_list": ("s3.servers.local.region", [CANARY]),
}


@pytest.mark.parametrize(
    ("key", "value"), SECRET_IN_BAD_PLACES.values(), ids=SECRET_IN_BAD_PLACES.keys()
)
def test_check_config_errors_never_echo_the_offending_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any
) -> None:
    path = write(tmp_path, _set(good_config(), key, value))
    assert main(["check-config", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert key in err, err
    assert CANARY not in out + err


def test_check_config_invalid_yaml_exits_2_without_echoing_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f"s3:\n  servers:\n    local: {{secret: {CANARY}\n  buckets: [\n")
    assert main(["check-config", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "YAML" in err
    assert CANARY not in out + err


def test_check_config_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "-c", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


# --- serve ---------------------------------------------------------------------------------------


def test_serve_process_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, _set(good_config(), "s3.buckets.uploads.visibility", "shared"))
    result = run_cli("serve", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "s3.buckets.uploads.visibility" in result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_serve_exits_2_on_a_missing_config_file(tmp_path: Path) -> None:
    assert main(["serve", "-c", str(tmp_path / "absent.yaml")]) == 2


def test_serve_with_a_bad_listen_override_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, good_config())
    result = run_cli("serve", "-c", str(path), "--listen", "carrier-pigeon")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "--listen" in result.stderr


def test_serve_refuses_a_regular_file_at_the_socket_path_with_exit_2(
    tmp_path: Path, moto_endpoint: str, s3_admin: Any
) -> None:
    sock = tmp_path / "rpc.sock"
    sock.write_text("not a socket")
    path = write(tmp_path, good_config(moto_endpoint, listen=f"unix://{sock}"))
    result = run_cli("serve", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "INVALID_CONFIG" in result.stderr
    assert sock.read_text() == "not a socket"
    assert CANARY not in result.stdout + result.stderr


def test_serve_exits_1_when_the_port_is_taken(tmp_path: Path, moto_endpoint: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path, good_config(moto_endpoint, listen=f"tcp://127.0.0.1:{port}"))
        result = run_cli("serve", "-c", str(path))
    assert result.returncode == 1, result.stderr
    assert str(port) in result.stderr
    assert CANARY not in result.stdout + result.stderr

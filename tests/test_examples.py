"""The shipped examples stay valid: provider configs, the systemd unit and its config, PHP.

Each config must load with :func:`load_config` *and* pass ``s3rpc check-config`` run as a
separate process. PHP checks run when ``php`` is on PATH; the end-to-end run of
``examples/php/basic.php`` additionally needs the goridge sources (php/vendor,
``$S3RPC_PHP_VENDOR`` or ``../shared/php-vendor``: see tests/php_package.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from php_package import why_not_runnable
from s3rpc.config import Config, load_config
from test_dev import start_dev

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SYSTEMD = EXAMPLES / "systemd"
PHP_DIR = EXAMPLES / "php"
UNIT = SYSTEMD / "s3rpc.service"


def _env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (no quoting used here)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# What each example needs in the environment; the rest of its variables have defaults.
CONFIG_ENV: dict[str, dict[str, str]] = {
    "minio.rr.yaml": {},
    "aws.rr.yaml": {
        "AWS_UPLOADS_BUCKET": "example-uploads",
        "AWS_PRIVATE_BUCKET": "example-private",
        "AWS_REGION": "eu-west-1",
    },
    "spaces.rr.yaml": {
        "DO_SPACES_KEY": "DO00EXAMPLEKEY",
        "DO_SPACES_SECRET": "example-secret",
        "DO_SPACES_UPLOADS_BUCKET": "example-uploads",
        "DO_SPACES_PRIVATE_BUCKET": "example-private",
    },
    "systemd/rr.yaml": _env_file(SYSTEMD / "s3rpc.env.example"),
}
CONFIGS = sorted(CONFIG_ENV)


def _load(name: str, **extra: str) -> Config:
    return load_config(EXAMPLES / name, {**CONFIG_ENV[name], **extra})


# --- configs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_with_demo_buckets(name: str) -> None:
    config = _load(name)
    assert config.s3.default == "uploads"
    assert config.s3.buckets["uploads"].visibility == "public"
    assert config.s3.buckets["private-docs"].visibility == "private"
    for bucket in config.s3.buckets.values():
        assert bucket.server in config.s3.servers


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_check_config_cli(name: str) -> None:
    env = {**os.environ, **CONFIG_ENV[name]}
    result = subprocess.run(
        [sys.executable, "-m", "s3rpc", "check-config", "-c", str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"


def test_minio_config_signs_urls_for_the_browser_facing_host() -> None:
    minio = _load("minio.rr.yaml").s3.servers["minio"]
    assert minio.endpoint == "http://127.0.0.1:9000"
    assert minio.public_endpoint == "http://localhost:9000"
    assert minio.path_style is True
    assert minio.visibility_mode == "none"  # MinIO has no object ACLs
    inside_docker = _load("minio.rr.yaml", MINIO_ENDPOINT="http://minio:9000")
    assert inside_docker.s3.servers["minio"].endpoint == "http://minio:9000"


def test_aws_config_uses_acl_less_buckets() -> None:
    config = _load("aws.rr.yaml")
    server = config.s3.servers["aws"]
    assert server.endpoint == ""
    assert server.region == "eu-west-1"
    assert server.visibility_mode == "none"
    for bucket in config.s3.buckets.values():
        assert bucket.visibility_mode == "none"
    # Unset keys stay empty, so the SDK's default credential chain applies.
    assert server.credentials.key == ""


def test_spaces_endpoint_follows_region() -> None:
    assert (
        _load("spaces.rr.yaml").s3.servers["spaces"].endpoint
        == "https://nyc3.digitaloceanspaces.com"
    )
    assert (
        _load("spaces.rr.yaml", DO_SPACES_REGION="fra1").s3.servers["spaces"].endpoint
        == "https://fra1.digitaloceanspaces.com"
    )


def test_systemd_config_listens_on_the_runtime_directory_socket() -> None:
    config = _load("systemd/rr.yaml")
    address = config.rpc.address
    assert address.scheme == "unix"
    assert address.path == "/run/s3rpc/rpc.sock"
    assert config.rpc.socket_mode == 0o660
    assert config.s3.servers["main"].credentials.secret.get_secret_value() == "change-me"


def test_env_example_defines_every_variable_the_systemd_config_uses() -> None:
    def strings(node: object) -> list[str]:
        if isinstance(node, dict):
            return [s for value in node.values() for s in strings(value)]
        return [node] if isinstance(node, str) else []

    document = yaml.safe_load((SYSTEMD / "rr.yaml").read_text(encoding="utf-8"))
    used = {
        name
        for text in strings(document)
        for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text)
    }
    assert used, "expected ${VAR} references in the production config"
    missing = used - set(CONFIG_ENV["systemd/rr.yaml"])
    assert not missing, f"s3rpc.env.example lacks {sorted(missing)}"


# --- systemd unit ---------------------------------------------------------------------------


def _unit_settings() -> dict[str, list[str]]:
    """Key -> values of the unit file (keys may repeat, as SystemCallFilter= does)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_is_notify_type_and_runs_as_its_own_user() -> None:
    unit = _unit_settings()
    # notify-reload needs systemd >= 253; Debian 12 has 252 (the drop-in below is for newer).
    assert unit["Type"] == ["notify"]
    assert unit["ExecReload"] == ["kill -HUP $MAINPID"]
    assert unit["WatchdogSec"] == ["30"]
    assert unit["ExecStart"] == ["/opt/s3rpc/venv/bin/s3rpc serve -c /etc/s3rpc/.rr.yaml"]
    assert unit["User"] == ["s3rpc"]
    assert unit["Group"] == ["s3rpc"]
    assert unit["RuntimeDirectory"] == ["s3rpc"]
    assert unit["RuntimeDirectoryMode"] == ["0750"]
    assert unit["EnvironmentFile"] == ["/etc/s3rpc/s3rpc.env"]
    assert unit["Restart"] == ["on-failure"]
    assert "RestartSec" in unit
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["UMask"] == ["0007"]
    assert unit["LimitNOFILE"] == ["65536"]


def test_systemd_notify_reload_is_a_drop_in() -> None:
    drop_in = SYSTEMD / "s3rpc.service.d" / "notify-reload.conf"
    lines = [
        line
        for line in drop_in.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    # ExecReload= emptied: systemd sends SIGHUP itself and waits for RELOADING=1 ... READY=1.
    assert lines == ["[Service]", "Type=notify-reload", "ExecReload="]
    assert "s3rpc.service.d/notify-reload.conf" in UNIT.read_text(encoding="utf-8")


def _verify_unit(tmp_path: Path, drop_in: bool = False) -> str:
    """``systemd-analyze verify`` of the unit (its binary swapped for a stub); its messages."""
    stub = tmp_path / "s3rpc"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "s3rpc.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/opt/s3rpc/venv/bin/s3rpc", str(stub))
    )
    if drop_in:
        (tmp_path / "s3rpc.service.d").mkdir()
        shutil.copy(
            SYSTEMD / "s3rpc.service.d" / "notify-reload.conf", tmp_path / "s3rpc.service.d"
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return (result.stdout + result.stderr).strip()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # A directive this systemd does not know is only a warning (exit 0): any message fails.
    assert _verify_unit(tmp_path) == ""


def _systemd_version() -> int:
    result = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    match = re.match(r"systemd (\d+)", result.stdout)
    return int(match[1]) if match else 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_notify_reload_drop_in_is_loaded_and_needs_253(tmp_path: Path) -> None:
    messages = _verify_unit(tmp_path, drop_in=True)
    if _systemd_version() >= 253:
        assert messages == ""
    else:
        assert "notify-reload" in messages  # picked up, and refused, as its comment says


def test_production_config_serves_metrics_and_status() -> None:
    config = _load("systemd/rr.yaml")
    assert config.metrics.address == "127.0.0.1:2112"
    assert config.status.address == "127.0.0.1:2114"
    assert config.status.check_buckets is True


def test_systemd_stop_timeout_outlasts_the_drain() -> None:
    stop_timeout = float(_unit_settings()["TimeoutStopSec"][0].removesuffix("s"))
    assert stop_timeout == 45
    assert stop_timeout > _load("systemd/rr.yaml").s3.shutdown_timeout


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_systemd_unit_hardening(key: str, value: str) -> None:
    assert value in _unit_settings().get(key, []), f"{key}={value} missing from {UNIT.name}"


# --- PHP -----------------------------------------------------------------------------------

PHP_FILES = sorted(EXAMPLES.rglob("*.php"))
PHP = shutil.which("php")
needs_php = pytest.mark.skipif(PHP is None, reason="php is not on PATH (apt-get install php-cli)")


def test_php_examples_exist() -> None:
    names = {p.relative_to(PHP_DIR).as_posix() for p in PHP_FILES}
    assert names == {"basic.php"}


@needs_php
@pytest.mark.parametrize("path", PHP_FILES, ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_php_lint(path: Path) -> None:
    assert PHP is not None
    result = subprocess.run(
        [PHP, "-l", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_basic_php_against_dev_daemon(tmp_path: Path) -> None:
    """basic.php (both codecs and the package's client) against ``s3rpc dev`` on embedded moto."""
    why = why_not_runnable()
    if why is not None:
        pytest.skip(why)
    assert PHP is not None
    dev = start_dev(tmp_path / "dev")
    try:
        result = subprocess.run(
            [PHP, str(PHP_DIR / "basic.php")],
            env={**os.environ, "RR_RPC": dev.address},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        dev.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Read round-trips all" in result.stdout
    assert result.stdout.rstrip().endswith("OK")

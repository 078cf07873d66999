"""Loading and validating ``.rr.yaml``: layouts, env expansion, dotted-key errors, secrets."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from s3rpc.config import (
    Config,
    ConfigError,
    ListenAddress,
    bucket_from_params,
    config_from_mapping,
    expand_env,
    load_config,
    parse_listen,
    resolve_bucket,
)

SECRET = "Sup3rS3cr3t-do-not-leak-7Q"

SERVERS_LAYOUT = """
version: "3"
http:
  address: 0.0.0.0:8080
server:
  command: php worker.php
rpc:
  listen: tcp://127.0.0.1:6001
s3:
  default: uploads
  servers:
    minio:
      region: us-east-1
      endpoint: http://127.0.0.1:9000/
      credentials:
        key: minioadmin
        secret: ${MINIO_SECRET}
  buckets:
    uploads:
      server: minio
      bucket: my-uploads
      prefix: /incoming/
      visibility: public
    private-docs:
      server: minio
      bucket: docs
logs:
  level: DEBUG
"""

INLINE_LAYOUT = """
s3:
  buckets:
    uploads:
      bucket: my-uploads
      region: eu-west-1
      endpoint: https://s3.eu-west-1.amazonaws.com
      credentials:
        key: AKIAEXAMPLE
        secret: ${AWS_SECRET}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".rr.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(data: Any, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, environ or {})
    return str(info.value)


def with_bucket(**fields: Any) -> dict[str, Any]:
    return {
        "s3": {
            "servers": {"main": {"credentials": {"key": "AK", "secret": SECRET}}},
            "buckets": {"uploads": {"server": "main", "bucket": "b", **fields}},
        }
    }


# --- layouts -------------------------------------------------------------------------------


def test_servers_layout_with_server_reference_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SERVERS_LAYOUT), {"MINIO_SECRET": SECRET})
    s3 = config.s3
    assert s3.default == "uploads"
    minio = s3.servers["minio"]
    assert minio.endpoint == "http://127.0.0.1:9000"
    assert minio.path_style is True
    assert minio.credentials.secret.get_secret_value() == SECRET
    uploads = s3.buckets["uploads"]
    assert (uploads.server, uploads.bucket, uploads.prefix) == ("minio", "my-uploads", "incoming/")
    assert uploads.visibility == "public"
    assert s3.buckets["private-docs"].visibility == "private"
    resolved = resolve_bucket(s3, "uploads", uploads)
    assert resolved.server is minio
    assert resolved.server_name == "minio"
    assert resolved.visibility_mode == "acl"
    assert resolved.operation_timeout == s3.operation_timeout
    assert config.logs.level == "debug"


def test_inline_server_layout_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, INLINE_LAYOUT), {"AWS_SECRET": SECRET})
    bucket = config.s3.buckets["uploads"]
    assert bucket.server is None
    resolved = resolve_bucket(config.s3, "uploads", bucket)
    assert resolved.server_name == "uploads (inline)"
    assert resolved.server.region == "eu-west-1"
    assert resolved.server.endpoint == "https://s3.eu-west-1.amazonaws.com"
    assert resolved.server.credentials.key == "AKIAEXAMPLE"
    assert resolved.server.credentials.secret.get_secret_value() == SECRET


def test_other_top_level_sections_are_ignored() -> None:
    config = config_from_mapping(
        {"version": "3", "http": {"address": ":8080"}, "server": {"command": "php"}, "kv": 1}
    )
    assert config == Config()


@pytest.mark.parametrize("text", ["", "rpc:\ns3:\nlogs:\n"])
def test_empty_file_or_empty_sections_give_defaults(tmp_path: Path, text: str) -> None:
    config = load_config(write(tmp_path, text), {})
    assert config == Config()
    assert str(config.rpc.address) == "tcp://127.0.0.1:6001"
    assert config.rpc.socket_mode == 0o660


def test_config_is_frozen() -> None:
    config = config_from_mapping({})
    with pytest.raises(ValueError, match="frozen"):
        config.rpc.listen = "tcp://0.0.0.0:1"  # type: ignore[misc]


def test_top_level_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), {})


# --- environment expansion -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "alpha"),
        ("$A", "alpha"),
        ("x-${A}-$A/y", "x-alpha-alpha/y"),
        ("${A:-fallback}", "alpha"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("${UNSET}", ""),
        ("$UNSET", ""),
        ("${UNSET:-}", ""),
        ("cost $5", "cost $5"),
        ("no vars", "no vars"),
    ],
)
def test_expand_env_forms(text: str, expected: str) -> None:
    assert expand_env(text, {"A": "alpha", "EMPTY": ""}) == expected


def test_expand_env_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3RPC_TEST_VAR", "from-env")
    assert expand_env("${S3RPC_TEST_VAR}") == "from-env"
    assert os.environ["S3RPC_TEST_VAR"] == "from-env"


def test_env_vars_expand_in_every_nested_string() -> None:
    env = {"LISTEN": "tcp://0.0.0.0:7001", "MODE": "0600", "REGION": "eu-north-1", "KEY": "AK"}
    config = config_from_mapping(
        {
            "rpc": {"listen": "${LISTEN}", "socket_mode": "$MODE", "max_frame_size": "${N:-1024}"},
            "s3": {
                "default": "${DEFAULT:-uploads}",
                "servers": {
                    "main": {
                        "region": "$REGION",
                        "endpoint": "${ENDPOINT:-http://minio:9000}",
                        "credentials": {"key": "${KEY}", "secret": "${SECRET}"},
                    }
                },
                "buckets": {
                    "uploads": {"server": "main", "bucket": "${BUCKET:-b}-$REGION"},
                },
            },
            "logs": {"level": "${LEVEL:-warning}"},
        },
        {**env, "SECRET": SECRET, "BUCKET": ""},
    )
    assert config.rpc.listen == "tcp://0.0.0.0:7001"
    assert config.rpc.socket_mode == 0o600
    assert config.rpc.max_frame_size == 1024
    main = config.s3.servers["main"]
    assert main.region == "eu-north-1"
    assert main.endpoint == "http://minio:9000"
    assert main.credentials.key == "AK"
    assert main.credentials.secret.get_secret_value() == SECRET
    assert config.s3.default == "uploads"
    assert config.s3.buckets["uploads"].bucket == "b-eu-north-1"
    assert config.logs.level == "warning"


def test_env_vars_expand_when_loading_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "rpc:\n  listen: ${RPC_LISTEN:-unix:///run/s3rpc.sock}\n")
    assert load_config(path, {}).rpc.address == ListenAddress("unix", path="/run/s3rpc.sock")
    config = load_config(path, {"RPC_LISTEN": "tcp://[::1]:6002"})
    assert config.rpc.address == ListenAddress("tcp", host="::1", port=6002)


def test_env_value_is_not_reparsed_as_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s3:\n  servers:\n    m:\n      credentials:\n        key: ${KEY}\n        secret: s\n",
    )
    config = load_config(path, {"KEY": "{a: 1}"})
    assert config.s3.servers["m"].credentials.key == "{a: 1}"


# --- errors name the dotted key --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"rpc": {"lisen": "tcp://h:1"}}, "rpc.lisen", "unknown key"),
        (
            {"s3": {"servers": {"m": {"credentials": {"secert": SECRET}}}}},
            "s3.servers.m.credentials.secert",
            "unknown key",
        ),
        ({"rpc": {"max_frame_size": "big"}}, "rpc.max_frame_size", "must be a whole number"),
        ({"rpc": {"max_frame_size": 0}}, "rpc.max_frame_size", "greater than 0"),
        ({"s3": {"buckets": []}}, "s3.buckets", "must be a mapping"),
        (with_bucket(visibility="world"), "s3.buckets.uploads.visibility", "'public' or 'private'"),
        (with_bucket(server="nowhere"), "s3.buckets.uploads.server", "'nowhere' is not defined"),
        ({"s3": {"default": "ghost"}}, "s3.default", "'ghost' is not defined"),
        ({"rpc": {"listen": "http://h:80"}}, "rpc.listen", "tcp://host:port"),
        ({"rpc": {"listen": "tcp://h:99999"}}, "rpc.listen", "port"),
        ({"rpc": {"socket_mode": "rw-rw----"}}, "rpc.socket_mode", "octal"),
        ({"rpc": {"socket_mode": 0o1777}}, "rpc.socket_mode", "octal"),
        (with_bucket(region="eu-west-1"), "s3.buckets.uploads", "either 'server' or inline"),
        (
            {"s3": {"servers": {"m": {"endpoint": "minio:9000"}}}},
            "s3.servers.m.endpoint",
            "http:// or https:// URL",
        ),
        (
            {"s3": {"buckets": {"u": {"bucket": "b", "endpoint": "ftp://x"}}}},
            "s3.buckets.u.endpoint",
            "http:// or https:// URL",
        ),
        ({"s3": {"buckets": {"u": {"server": "m"}}}}, "s3.buckets.u.bucket", "missing"),
        (with_bucket(prefix="a/../b"), "s3.buckets.uploads.prefix", "'..'"),
        (with_bucket(part_size=1024), "s3.buckets.uploads.part_size", "at least 5242880"),
        ({"logs": {"level": "loud"}}, "logs.level", "'debug'"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." in value else None,
)
def test_validation_error_names_dotted_key(data: Any, key: str, words: str) -> None:
    message = config_error(data)
    assert message.startswith(f"{key}: ")
    assert words in message


def test_inline_server_and_reference_error_lists_the_inline_fields() -> None:
    message = config_error(with_bucket(region="x", endpoint="http://e"))
    assert "(endpoint, region)" in message


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "rpc:\n  listen: [unclosed\ns3: {}\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line") as info:
        load_config(path, {})
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(path, {})
    assert str(path) in str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    # A directory cannot be read as a file, whoever runs the tests (root ignores chmod).
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path, {})


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / ".rr.yaml"
    path.write_bytes(b"rpc:\n  listen: \xff\xfe\n")
    with pytest.raises(ConfigError):
        load_config(path, {})


# --- socket_mode and listen ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0660", "660", "0o660", 0o660, 660])
def test_socket_mode_forms_mean_0660(value: object) -> None:
    assert config_from_mapping({"rpc": {"socket_mode": value}}).rpc.socket_mode == 0o660


def test_socket_mode_written_as_yaml_0660_means_0660(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "rpc:\n  socket_mode: 0660\n"), {})
    assert config.rpc.socket_mode == 0o660


@pytest.mark.parametrize(("value", "mode"), [("0600", 0o600), (0o777, 0o777), ("0", 0)])
def test_socket_mode_other_values(value: object, mode: int) -> None:
    assert config_from_mapping({"rpc": {"socket_mode": value}}).rpc.socket_mode == mode


@pytest.mark.parametrize("value", ["0999", "-1", 1.5, -1, [0o660]])
def test_bad_socket_mode_is_rejected(value: object) -> None:
    assert config_error({"rpc": {"socket_mode": value}}).startswith("rpc.socket_mode: ")


@pytest.mark.parametrize("value", [True, False])
def test_boolean_socket_mode_is_rejected(value: bool) -> None:
    assert config_error({"rpc": {"socket_mode": value}}).startswith("rpc.socket_mode: ")


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("tcp://127.0.0.1:6001", ListenAddress("tcp", host="127.0.0.1", port=6001)),
        ("tcp://localhost:0", ListenAddress("tcp", host="localhost", port=0)),
        ("127.0.0.1:6001", ListenAddress("tcp", host="127.0.0.1", port=6001)),
        ("tcp://:6001", ListenAddress("tcp", host="0.0.0.0", port=6001)),
        ("tcp://[::1]:6001", ListenAddress("tcp", host="::1", port=6001)),
        ("[::1]:6001", ListenAddress("tcp", host="::1", port=6001)),
        ("tcp://[::]:65535", ListenAddress("tcp", host="::", port=65535)),
        ("unix:///run/s3rpc/rpc.sock", ListenAddress("unix", path="/run/s3rpc/rpc.sock")),
        ("unix://rpc.sock", ListenAddress("unix", path="rpc.sock")),
    ],
)
def test_listen_dsn_parses(dsn: str, expected: ListenAddress) -> None:
    assert parse_listen(dsn) == expected
    assert config_from_mapping({"rpc": {"listen": dsn}}).rpc.address == expected


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (ListenAddress("tcp", host="::1", port=6001), "tcp://[::1]:6001"),
        (ListenAddress("tcp", host="127.0.0.1", port=1), "tcp://127.0.0.1:1"),
        (ListenAddress("unix", path="/run/x.sock"), "unix:///run/x.sock"),
    ],
)
def test_listen_address_str_round_trips(address: ListenAddress, text: str) -> None:
    assert str(address) == text
    assert parse_listen(text) == address


@pytest.mark.parametrize(
    "dsn",
    ["", "tcp://host", "tcp://host:port", "tcp://h:65536", "http://h:80", "unix://", "::1:80"],
)
def test_bad_listen_dsn_is_rejected(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"tcp://|unix://|port"):
        parse_listen(dsn)


# --- secrets ---------------------------------------------------------------------------------

FAILS_ELSEWHERE = [
    with_bucket(visibility="world"),
    with_bucket(server="nowhere"),
    with_bucket(region="x"),
    {"rpc": {"listen": SECRET}, "s3": {"servers": {"m": {"credentials": {"secret": SECRET}}}}},
    {"rpc": {"socket_mode": SECRET}},
    {"s3": {"servers": {"m": {"endpoint": SECRET, "credentials": {"token": SECRET}}}}},
    {"s3": {"servers": {"m": {"credentials": {"secret": [SECRET]}}}}},
    {"s3": {"servers": {"m": {"credentials": {"secret": SECRET, "extra": SECRET}}}}},
    {"s3": {"buckets": {"u": {"bucket": "b", "endpoint": "ftp://" + SECRET}}}},
    {"s3": {"buckets": {"u": {"bucket": "b", "credentials": {"secret": SECRET}, "x": 1}}}},
    {"s3": {"buckets": {"u": {"bucket": "b", "max_attempts": SECRET}}}},
    {"logs": {"level": SECRET}},
]


@pytest.mark.parametrize("data", FAILS_ELSEWHERE)
def test_secret_never_appears_in_error_message(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, {})
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert info.value.__cause__ is None


def test_secret_from_env_never_appears_in_error_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        s3:
          servers:
            m:
              credentials: {key: AK, secret: "${S3_SECRET}"}
          buckets:
            uploads: {server: m, bucket: b, visibility: "${S3_SECRET}"}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {"S3_SECRET": SECRET})
    assert SECRET not in str(info.value)


def test_secret_in_broken_yaml_line_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, f"s3:\n  servers: {{m: {{credentials: {{secret: {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert SECRET not in str(info.value)


def test_repr_of_config_hides_secret_and_token(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SERVERS_LAYOUT), {"MINIO_SECRET": SECRET})
    config = config.model_copy(
        update={
            "s3": config_from_mapping(
                {
                    "s3": {
                        "servers": {
                            "m": {"credentials": {"key": "k", "secret": SECRET, "token": SECRET}}
                        },
                        "buckets": {
                            "i": {"bucket": "b", "credentials": {"key": "k", "secret": SECRET}}
                        },
                    }
                },
                {},
            ).s3
        }
    )
    for text in (repr(config), str(config), repr(config.model_dump()), str(config.s3.servers)):
        assert SECRET not in text
    resolved = resolve_bucket(config.s3, "i", config.s3.buckets["i"])
    assert SECRET not in repr(resolved)
    assert resolved.server.credentials.secret.get_secret_value() == SECRET


# --- buckets registered at run time ----------------------------------------------------------


def test_bucket_from_params_validates_like_the_file() -> None:
    s3 = config_from_mapping(with_bucket()).s3
    bucket = bucket_from_params(s3, "extra", {"server": "main", "bucket": "x", "prefix": "p"})
    assert bucket.prefix == "p/"
    with pytest.raises(ConfigError, match=r"^visibility: "):
        bucket_from_params(s3, "extra", {"server": "main", "bucket": "x", "visibility": "w"})
    with pytest.raises(ConfigError, match=r"^server: server 'ghost' is not defined"):
        bucket_from_params(s3, "extra", {"server": "ghost", "bucket": "x"})


# --- beside RoadRunner: its keys, its durations, the Go plugin's own config ----------------

RR_CONFIGS = Path(__file__).parent / "rr_configs"
GO_PLUGIN_EXAMPLE = RR_CONFIGS / "s3-storage.rr.yaml.example"
#: sha256 of the upstream file (tests/rr_configs/README.md): the copy is kept unchanged.
GO_PLUGIN_EXAMPLE_SHA256 = "04147b320b402bb7ea17349c45a97e9cb90f5de32a9ce51f9c37c02599174488"
GO_PLUGIN_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_SESSION_TOKEN": "session-token-x",
    "AWS_EU_ACCESS_KEY_ID": "AKIAEU",
    "AWS_EU_SECRET_ACCESS_KEY": SECRET,
    "DO_SPACES_KEY": "DOKEY",
    "DO_SPACES_SECRET": SECRET,
    "B2_APPLICATION_KEY_ID": "B2KEY",
    "B2_APPLICATION_KEY": SECRET,
}


def test_go_plugin_example_config_is_the_unchanged_upstream_copy() -> None:
    import hashlib

    assert hashlib.sha256(GO_PLUGIN_EXAMPLE.read_bytes()).hexdigest() == GO_PLUGIN_EXAMPLE_SHA256
    assert GO_PLUGIN_EXAMPLE_SHA256 in (RR_CONFIGS / "README.md").read_text(encoding="utf-8")


def test_go_plugin_example_config_with_its_variables_unset_is_refused_naming_them() -> None:
    # The Go plugin refuses it too (credentials.key is required); s3rpc used to sign with
    # whatever the ambient AWS chain held.
    with pytest.raises(ConfigError) as info:
        load_config(GO_PLUGIN_EXAMPLE, {})
    message = str(info.value)
    for server, variable in [
        ("aws-us-east", "AWS_ACCESS_KEY_ID"),
        ("aws-eu-west", "AWS_EU_SECRET_ACCESS_KEY"),
        ("do-spaces-nyc", "DO_SPACES_KEY"),
        ("backblaze-us", "B2_APPLICATION_KEY"),
    ]:
        assert f"s3.servers.{server}.credentials." in message
        assert f"(from ${{{variable}}}, which is empty or unset)" in message
    assert "credentials.ambient: true" in message
    assert "minio-local" not in message


@pytest.mark.parametrize("env", [GO_PLUGIN_ENV], ids=["vars-set"])
def test_go_plugin_example_config_loads_unchanged(env: dict[str, str]) -> None:
    config = load_config(GO_PLUGIN_EXAMPLE, env)
    s3 = config.s3
    assert s3.default == "uploads"
    assert sorted(s3.servers) == [
        "aws-eu-west",
        "aws-us-east",
        "backblaze-us",
        "do-spaces-nyc",
        "minio-local",
    ]
    assert sorted(s3.buckets) == [
        "avatars",
        "backups",
        "cdn-assets",
        "dev-storage",
        "documents",
        "uploads",
    ]
    backups = resolve_bucket(s3, "backups", s3.buckets["backups"])
    assert backups.server.endpoint == "https://s3.us-west-002.backblazeb2.com"
    assert (backups.config.part_size, backups.config.concurrency) == (104857600, 10)
    assert backups.config.max_concurrent_operations == 20
    assert s3.servers["aws-us-east"].endpoint == ""  # AWS itself
    assert s3.servers["minio-local"].credentials.key == "minioadmin"
    aws = s3.servers["aws-us-east"].credentials
    assert aws.key == env.get("AWS_ACCESS_KEY_ID", "")
    assert aws.secret.get_secret_value() == env.get("AWS_SECRET_ACCESS_KEY", "")
    assert aws.token.get_secret_value() == env.get("AWS_SESSION_TOKEN", "")
    # logs: {level: info, encoding: console, output: stdout, err_output: stderr}
    logs = config.logs
    assert (logs.level, logs.format) == ("info", "console")
    assert (logs.output, logs.err_output) == (("stdout",), ("stderr",))
    assert config.rpc.listen == "tcp://127.0.0.1:6001"
    assert config.ignored_keys() == ()


#: Every key RoadRunner's logger, rpc, metrics and status plugins define (roadrunner-server/
#: roadrunner schemas/config/3.0.schema.json; roadrunner-server/logger config.go, zap and slog).
RR_FULL_SECTIONS = """
rpc:
  listen: tcp://127.0.0.1:6101
logs:
  mode: production
  level: warn
  encoding: json
  line_ending: "\\n"
  skip_line_ending: false
  time_format: "2006-01-02T15:04:05Z07:00"
  output: ["stdout"]
  err_output: ["stderr"]
  file_logger_options:
    log_output: "/tmp/my.log"
    max_size: 100
    max_age: 1
    max_backups: 5
    compress: false
  channels:
    http:
      mode: development
      level: panic
      encoding: console
      output: ["stdout"]
      err_output: ["stderr"]
    server:
      mode: production
      level: info
      encoding: json
      format: "%time% [%level%] %message%"
      time_format: "15:04:05"
      line_ending: "\\r\\n"
      skip_line_ending: true
      output: stdout
      err_output: ["stdout"]
      file_logger_options: {log_output: /tmp/x.log}
metrics:
  address: 127.0.0.1:2112
  collect:
    app_metric_summary:
      type: summary
      help: "Custom summary application metric"
      labels: ["type"]
      objectives:
        0.1: 2.3
        1.0: 1.4
    app_metric_histogram:
      type: histogram
      namespace: app
      subsystem: jobs
      help: "Custom histogram application metric"
      labels: ["type"]
      buckets: [0.1, 0.2, 0.3, 1.0]
status:
  address: 127.0.0.1:2114
  unavailable_status_code: 503
  check_timeout: 60
"""


def test_roadrunner_logs_rpc_metrics_status_sections_with_every_key_load(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, RR_FULL_SECTIONS), {})
    assert config.rpc.listen == "tcp://127.0.0.1:6101"
    assert (config.logs.level, config.logs.format, config.logs.mode) == (
        "warning",
        "json",
        "production",
    )
    assert config.metrics.address == "127.0.0.1:2112"
    assert config.metrics.collect["app_metric_histogram"].buckets == (0.1, 0.2, 0.3, 1.0)
    assert config.status.address == "127.0.0.1:2114"
    assert config.status.unavailable_status_code == 503
    assert config.status.check_timeout == 60
    assert config.ignored_keys() == (
        "logs.line_ending",
        "logs.skip_line_ending",
        "logs.time_format",
        "logs.file_logger_options",
        "logs.channels.http",
        "logs.channels.server",
        "metrics.collect",
        "status.check_timeout",
    )


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", "debug"),
        ("info", "info"),
        ("warn", "warning"),
        ("WARN", "warning"),
        ("Warning", "warning"),
        ("error", "error"),
        ("ERROR", "error"),
        ("dpanic", "error"),
        ("panic", "error"),
        ("fatal", "error"),
    ],
)
def test_roadrunner_log_levels_map_onto_ours(level: str, expected: str) -> None:
    assert config_from_mapping({"logs": {"level": level}}).logs.level == expected


@pytest.mark.parametrize(
    ("logs", "level", "fmt"),
    [
        ({}, "info", "auto"),
        ({"mode": "production"}, "info", "json"),
        ({"mode": "Development"}, "debug", "console"),
        ({"mode": "raw"}, "info", "json"),
        ({"mode": "off"}, "error", "auto"),
        ({"mode": "none", "level": "debug"}, "error", "auto"),
        ({"mode": "production", "level": "debug"}, "debug", "json"),
        ({"mode": "development", "encoding": "json"}, "debug", "json"),
        ({"encoding": "console"}, "info", "console"),
        ({"encoding": "JSON", "format": "json"}, "info", "json"),
        ({"format": "%time% %message%"}, "info", "auto"),
        ({"format": "%message%", "mode": "production"}, "info", "json"),
        # RoadRunner applies channels.<plugin> to that plugin; "s3" is the Go plugin's.
        (
            {"level": "info", "channels": {"s3": {"level": "warn", "mode": "production"}}},
            "warning",
            "json",
        ),
    ],
)
def test_roadrunner_logs_mode_encoding_and_channel_pick_level_and_format(
    logs: dict[str, Any], level: str, fmt: str
) -> None:
    config = config_from_mapping({"logs": logs})
    assert (config.logs.level, config.logs.format) == (level, fmt)
    # Dumped and validated again (as s3rpc dev does): the same.
    again = config_from_mapping({"logs": config.logs.model_dump()}).logs
    assert again.model_dump() == config.logs.model_dump()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("stdout", ("stdout",)),
        ("STDERR", ("stderr",)),
        (["stdout", "/var/log/s3rpc.log"], ("stdout", "/var/log/s3rpc.log")),
        ([], ()),
    ],
)
def test_logs_output_takes_a_string_or_a_list(value: Any, expected: tuple[str, ...]) -> None:
    config = config_from_mapping({"logs": {"output": value, "err_output": value}})
    assert config.logs.output == config.logs.err_output == expected


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"logs": {"modes": "production"}}, "logs.modes", "unknown key"),
        ({"logs": {"ignored": ["x"]}}, "logs.ignored", "unknown key"),
        ({"logs": {"mode": "loud"}}, "logs.mode", "'development'"),
        ({"logs": {"encoding": "xml"}}, "logs.encoding", "'json' or 'console'"),
        ({"logs": {"encoding": "json", "format": "console"}}, "logs.encoding", "conflicts"),
        ({"logs": {"output": [""]}}, "logs.output", "stdout, stderr or a file path"),
        ({"logs": {"err_output": 3}}, "logs.err_output", "stdout, stderr or a file path"),
        (
            {"logs": {"channels": {"http": {"levle": "info"}}}},
            "logs.channels.http.levle",
            "unknown key",
        ),
        (
            {"logs": {"channels": {"http": {"level": "loud"}}}},
            "logs.channels.http.level",
            "must be one of",
        ),
        (
            {"logs": {"file_logger_options": {"max_sizes": 1}}},
            "logs.file_logger_options.max_sizes",
            "unknown key",
        ),
        ({"metrics": {"colect": {}}}, "metrics.colect", "unknown key"),
        (
            {"metrics": {"collect": {"m": {"kind": "gauge"}}}},
            "metrics.collect.m.kind",
            "unknown key",
        ),
        ({"metrics": {"collect": {"m": {"type": "meter"}}}}, "metrics.collect.m.type", "'gauge'"),
        ({"status": {"check_timout": 5}}, "status.check_timout", "unknown key"),
        ({"rpc": {"relay": "pipes"}}, "rpc.relay", "unknown key"),
        ({"s3": {"encoding": "json"}}, "s3.encoding", "unknown key"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." in value else None,
)
def test_keys_roadrunner_does_not_define_either_still_fail(data: Any, key: str, words: str) -> None:
    message = config_error(data)
    assert message.startswith(f"{key}: "), message
    assert words in message


@pytest.mark.parametrize(("value", "expected"), [(0, 503), (503, 503), (500, 500)])
def test_status_unavailable_status_code_zero_means_503(value: int, expected: int) -> None:
    config = config_from_mapping({"status": {"unavailable_status_code": value}})
    assert config.status.unavailable_status_code == expected


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("1h3m40s500ms", 3820.5),
        (".2m", 12.0),
        ("2.5h", 9000.0),
        ("250000us", 0.25),
        ("1000000000ns", 1.0),
        (" 45s ", 45.0),
        (30, 30.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("1.5", 1.5),
    ],
)
def test_duration_strings_and_plain_seconds(value: Any, seconds: float) -> None:
    assert parse_duration_field(value) == pytest.approx(seconds)


def parse_duration_field(value: Any) -> float:
    return config_from_mapping({"rpc": {"read_timeout": value}}).rpc.read_timeout


SECONDS_FIELDS = [
    ("rpc.read_timeout", lambda c: c.rpc.read_timeout),
    ("rpc.idle_timeout", lambda c: c.rpc.idle_timeout),
    ("rpc.write_timeout", lambda c: c.rpc.write_timeout),
    ("s3.shutdown_timeout", lambda c: c.s3.shutdown_timeout),
    ("s3.operation_timeout", lambda c: c.s3.operation_timeout),
    ("s3.upload_session_ttl", lambda c: c.s3.upload_session_ttl),
    ("s3.servers.main.connect_timeout", lambda c: c.s3.servers["main"].connect_timeout),
    ("s3.servers.main.read_timeout", lambda c: c.s3.servers["main"].read_timeout),
    ("s3.buckets.uploads.operation_timeout", lambda c: c.s3.buckets["uploads"].operation_timeout),
    ("s3.buckets.inline.connect_timeout", lambda c: c.s3.buckets["inline"].connect_timeout),
    ("s3.buckets.inline.read_timeout", lambda c: c.s3.buckets["inline"].read_timeout),
    ("status.check_timeout", lambda c: c.status.check_timeout),
]


def at(key: str, value: Any) -> dict[str, Any]:
    """A valid document with ``value`` at the dotted ``key``."""
    data = with_bucket()
    data["s3"]["buckets"]["inline"] = {"bucket": "i", "credentials": {"ambient": True}}
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


@pytest.mark.parametrize(("key", "get"), SECONDS_FIELDS, ids=[k for k, _ in SECONDS_FIELDS])
def test_every_seconds_field_takes_a_duration_string(key: str, get: Any) -> None:
    assert get(config_from_mapping(at(key, "1m30s"))) == 90.0
    assert get(config_from_mapping(at(key, "750ms"))) == 0.75
    assert get(config_from_mapping(at(key, 12))) == 12.0


@pytest.mark.parametrize(("key", "_get"), SECONDS_FIELDS, ids=[k for k, _ in SECONDS_FIELDS])
@pytest.mark.parametrize("bad", ["30x", "s", "1m-", "thirty", "", "1 m", True])
def test_a_bad_duration_names_its_key(key: str, _get: Any, bad: Any) -> None:
    message = config_error(at(key, bad))
    assert message.startswith(f"{key}: "), message
    assert "duration such as 30s" in message


def test_a_negative_duration_is_refused_by_the_field_range() -> None:
    assert "greater than 0" in config_error({"rpc": {"read_timeout": "-1s"}})
    assert config_from_mapping({"rpc": {"idle_timeout": "0s"}}).rpc.idle_timeout == 0.0


# --- an empty ${VAR} is named ---------------------------------------------------------------------


def test_an_empty_or_unset_variable_is_named_in_the_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        s3:
          servers:
            x:
              endpoint: ${S3_ENDPOINT}x
              credentials: {key: AK, secret: "${S3_SECRET}"}
          buckets:
            uploads: {server: x, bucket: "$S3_BUCKET"}
        rpc:
          read_timeout: ${RPC_TIMEOUT:-}
        """,
    )
    env = {"S3_SECRET": SECRET, "S3_ENDPOINT": ""}
    with pytest.raises(ConfigError) as info:
        load_config(path, env)
    message = str(info.value)
    assert (
        "s3.servers.x.endpoint: must be an http:// or https:// URL"
        " (from ${S3_ENDPOINT}, which is empty or unset)" in message
    )
    assert "s3.buckets.uploads.bucket: " in message
    assert "(from $S3_BUCKET, which is empty or unset)" in message
    assert "rpc.read_timeout: " in message
    assert "(from ${RPC_TIMEOUT}, which is empty or unset)" in message
    assert SECRET not in message


def test_a_set_variable_with_a_bad_value_is_not_named_nor_echoed() -> None:
    message = config_error(
        {"s3": {"servers": {"x": {"endpoint": "${S3_ENDPOINT}"}}}}, {"S3_ENDPOINT": SECRET}
    )
    assert message.startswith("s3.servers.x.endpoint: ")
    assert "S3_ENDPOINT" not in message
    assert SECRET not in message


def test_an_empty_region_variable_with_an_endpoint_means_the_default() -> None:
    config = config_from_mapping(
        {
            "s3": {
                "servers": {
                    "x": {
                        "region": "${S3_REGION}",
                        "endpoint": "http://minio:9000",
                        "credentials": {"key": "k", "secret": "s"},
                    }
                }
            }
        },
        {},
    )
    assert config.s3.servers["x"].region == "us-east-1"

"""Configuration models: the frozen, validated sections of ``.rr.yaml`` and their shared checks.

``Config`` holds ``rpc``, ``s3``, ``logs``, ``metrics`` and ``status``; all but ``s3`` also accept
every key RoadRunner's own plugins define there, so one ``.rr.yaml`` serves both.
``resolve_bucket`` merges a bucket with its server into the ``ResolvedBucket`` the storage layer
needs. A validator that knows the dotted key of its error raises ``_KeyedError``; loading turns
it into a ``ConfigError`` naming that key.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from s3rpc.config.address import ListenAddress, check_host_port, parse_listen
from s3rpc.config.durations import NonNegativeSeconds, PositiveSeconds

DEFAULT_LISTEN = "tcp://127.0.0.1:6001"
MIB = 1024 * 1024


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


class _KeyedError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


#: The validation library's error types in the project's words (``{name}`` from its context).
_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "model_type": "must be a mapping of keys (key: value lines), not a single value",
    "model_attributes_type": "must be a mapping of keys (key: value lines), not a single value",
    "dict_type": "must be a mapping (key: value lines)",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must have at least {min_length} entries",
    "too_long": "must have at most {max_length} entries",
    "none_required": "must be empty",
    "string_pattern_mismatch": "contains characters that are not allowed",
    "finite_number": "must be a finite number",
}


def error_message(item: Mapping[str, Any]) -> str:
    """One validation error (``ValidationError.errors()`` item) as the project says it."""
    template = _MESSAGES.get(str(item.get("type")))
    if template is not None:
        try:
            return template.format(**(item.get("ctx") or {}))
        except (KeyError, IndexError, ValueError):
            pass
    message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
    return message.replace("Input should be", "must be")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


Visibility = Literal["public", "private"]
VisibilityMode = Literal["acl", "none"]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class RpcConfig(_Model):
    listen: str = DEFAULT_LISTEN
    socket_mode: int = 0o660
    max_frame_size: PositiveInt = 64 * MIB
    max_inflight_per_connection: PositiveInt = 128
    #: Daemon-wide payload bytes (requests being received, bodies being sent) in flight.
    max_inflight_bytes: PositiveInt = 256 * MIB
    #: Per connection: past this many unsent response bytes no new call of it is started.
    max_unsent_bytes: PositiveInt = 8 * MIB
    max_connections: PositiveInt = 10_000
    #: An incomplete frame older than this closes the connection.
    read_timeout: PositiveSeconds = 60.0
    #: A connection with nothing in flight for this long is closed; 0 keeps it forever.
    idle_timeout: NonNegativeSeconds = 0.0
    #: A connection whose unsent answers do not move for this long is closed.
    write_timeout: PositiveSeconds = 60.0
    #: Worker processes serving the one listening socket (s3rpc.workers); 1 = this process.
    workers: Annotated[int, Field(ge=1, le=256)] = 1

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("socket_mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        # YAML reads 0660 as the decimal 660 (YAML 1.2) or 432 (1.1); a string is unambiguous.
        if isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ValueError('must be an octal file mode such as "0660"') from None
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value > 0o777
            and set(str(value)) <= set("01234567")
        ):
            value = int(str(value), 8)  # 660 meant as 0660
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
            raise ValueError('must be an octal file mode such as "0660"')
        return value

    @property
    def address(self) -> ListenAddress:
        return parse_listen(self.listen)


LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
#: RoadRunner's ``logs.mode`` values.
LogMode = Literal["development", "production", "raw", "off", "none"]

#: RoadRunner's level names (zap's and slog's) onto ours; ``panic``/``fatal`` lines are errors.
_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "dpanic": "error",
    "panic": "error",
    "fatal": "error",
}
#: What a RoadRunner ``logs.mode`` implies when ``encoding``/``format`` and ``level`` are not
#: given (RoadRunner's own templates); ``raw`` (message only there) is JSON here.
_MODE_DEFAULTS: dict[str, tuple[str, str]] = {
    "production": ("json", "info"),
    "development": ("console", "debug"),
    "raw": ("json", "info"),
}
#: RoadRunner logger keys accepted and not acted on (``logs.channels`` except ``s3``).
_IGNORED_LOG_KEYS = ("line_ending", "skip_line_ending", "time_format", "file_logger_options")


def _outputs(value: Any) -> Any:
    """RoadRunner writes ``output: stdout`` or ``output: [stdout, /var/log/rr.log]``."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise ValueError("must be stdout, stderr or a file path (or a list of them)")
    return tuple(
        item.strip().lower() if item.strip().lower() in ("stdout", "stderr") else item
        for item in value
    )


class FileLoggerOptions(_Model):
    """RoadRunner's ``logs.file_logger_options`` (lumberjack rotation): accepted, not used."""

    log_output: str = ""
    max_size: Annotated[int, Field(ge=0)] = 100
    max_age: Annotated[int, Field(ge=0)] = 24
    max_backups: Annotated[int, Field(ge=0)] = 10
    compress: bool = False


class LogChannel(_Model):
    """One entry of RoadRunner's ``logs.channels``: the logger keys for one plugin."""

    mode: LogMode | None = None
    level: str | None = None
    format: str | None = None
    time_format: str | None = None
    encoding: Literal["json", "console"] | None = None
    output: tuple[str, ...] = ()
    err_output: tuple[str, ...] = ()
    line_ending: str | None = None
    skip_line_ending: bool | None = None
    file_logger_options: FileLoggerOptions | None = None

    @field_validator("mode", "encoding", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("level")
    @classmethod
    def _level(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in _LEVELS:
            raise ValueError(f"must be one of {', '.join(_LEVELS)}")
        return value

    @field_validator("output", "err_output", mode="before")
    @classmethod
    def _outputs(cls, value: Any) -> Any:
        return _outputs(value)


class LogsConfig(_Model):
    """``logs``: s3rpc's keys (``level``, ``format``, ``calls``) and RoadRunner's logger keys.

    RoadRunner's keys map onto ours: ``level`` takes ``warn``/``panic``/``fatal`` too,
    ``encoding`` is ``format``, ``mode`` picks the format and level its template implies
    (``off``/``none``: errors only), ``output`` is where lines go, ``err_output`` where the
    logger's own failures go (a line that could not be written), ``channels.s3`` (the Go
    plugin's channel) overrides the top-level keys. Other RoadRunner keys are accepted and
    listed in ``ignored``.
    """

    level: LogLevel = "info"
    format: LogFormat = "auto"
    #: Which calls get a ``call`` line (at info): every call, failed calls only, or none.
    calls: Literal["all", "errors", "off"] = "all"
    mode: LogMode | None = None
    encoding: Literal["json", "console"] | None = None
    #: stdout, stderr or file paths (appended to, created 0644); empty = stdout.
    output: tuple[str, ...] = ()
    #: Where a failure to write a line is reported; empty = stderr.
    err_output: tuple[str, ...] = ()
    line_ending: str | None = None
    skip_line_ending: bool | None = None
    time_format: str | None = None
    file_logger_options: FileLoggerOptions | None = None
    channels: dict[str, LogChannel] = {}
    #: Dotted keys accepted for RoadRunner's sake and not acted on (computed, never read).
    ignored: tuple[str, ...] = Field(default=(), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _roadrunner(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "ignored" in data:
            raise _KeyedError("ignored", "unknown key")
        channels = data.get("channels")
        if isinstance(channels, Mapping):
            own = channels.get("s3")
            if isinstance(own, Mapping):
                # RoadRunner gives plugin "s3" (the Go plugin) these keys instead of the top's.
                data.update(
                    {
                        key: value
                        for key, value in own.items()
                        if key in LogChannel.model_fields and value is not None
                    }
                )
        ignored = [f"logs.{key}" for key in _IGNORED_LOG_KEYS if data.get(key) is not None]
        if isinstance(channels, Mapping):
            ignored += [f"logs.channels.{name}" for name in channels if name != "s3"]
        mode = data.get("mode")
        if isinstance(mode, str):
            mode = data["mode"] = mode.strip().lower()
        encoding = data.get("encoding")
        if isinstance(encoding, str):
            encoding = data["encoding"] = encoding.strip().lower()
        fmt = data.get("format")
        if isinstance(fmt, str):
            fmt = fmt.strip().lower()
            if fmt not in ("auto", "json", "console") and "%" in fmt:
                # RoadRunner's custom line template ("%time% [%level%] %message%").
                ignored.append("logs.format")
                data.pop("format")
            else:
                data["format"] = fmt
        if data.get("format") is None:
            data.pop("format", None)
            if encoding in ("json", "console"):
                data["format"] = encoding
            elif isinstance(mode, str) and mode in _MODE_DEFAULTS:
                data["format"] = _MODE_DEFAULTS[mode][0]
        elif encoding in ("json", "console") and data["format"] != encoding:
            raise _KeyedError("encoding", "conflicts with logs.format; give only one of them")
        level = data.get("level")
        if isinstance(level, str):
            data["level"] = _LEVELS.get(level.strip().lower(), level)
        elif level is None:
            data.pop("level", None)
            if isinstance(mode, str) and mode in _MODE_DEFAULTS:
                data["level"] = _MODE_DEFAULTS[mode][1]
        if mode in ("off", "none"):
            # RoadRunner writes nothing at all; a daemon that hides its errors is not operable.
            data["level"] = "error"
        data["ignored"] = tuple(ignored)
        return data

    @field_validator("output", "err_output", mode="before")
    @classmethod
    def _outputs(cls, value: Any) -> Any:
        return _outputs(value)


class MetricCollector(_Model):
    """One entry of RoadRunner's ``metrics.collect`` (metrics PHP publishes over RPC)."""

    type: Literal["histogram", "gauge", "counter", "summary"] | None = None
    namespace: str | None = None
    subsystem: str | None = None
    help: str | None = None
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    objectives: dict[float, float] = {}


class MetricsConfig(_Model):
    address: str = ""
    #: RoadRunner's application metrics: accepted, not served (s3rpc has no metrics RPC).
    collect: dict[str, MetricCollector] = {}

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_host_port(value)


class StatusConfig(_Model):
    """``status``: health and readiness probes over HTTP (off unless ``address`` is set)."""

    address: str = ""
    #: ``/ready`` also needs a recent successful HeadBucket of every bucket (cached).
    check_buckets: bool = False
    #: What ``/ready`` answers while not ready (RoadRunner's status plugin key; 0 means 503).
    unavailable_status_code: Annotated[int, Field(ge=400, le=599)] = 503
    #: RoadRunner's wait for a plugin's answer; accepted, not used.
    check_timeout: PositiveSeconds = 60.0

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_host_port(value)

    @field_validator("unavailable_status_code", mode="before")
    @classmethod
    def _zero_means_default(cls, value: Any) -> Any:
        return 503 if value == 0 and not isinstance(value, bool) else value


#: botocore's own rule for a region name; anything else would fail when the client is created.
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def _check_region(value: str | None) -> str | None:
    if value is not None and value != "" and not _REGION.fullmatch(value):
        raise ValueError("must be a region name such as us-east-1: letters, digits and '-'")
    return value


@functools.cache
def aws_regions() -> frozenset[str]:
    """Every region of every AWS partition, from the endpoint data botocore ships."""
    import botocore.loaders  # type: ignore[import-untyped, unused-ignore]

    data = botocore.loaders.create_loader().load_data("endpoints")
    return frozenset(
        region for partition in data.get("partitions", []) for region in partition["regions"]
    )


def _check_aws_region(data: Any) -> None:
    """With no endpoint the server is AWS S3 itself: ``region`` must be one of AWS's."""
    if not isinstance(data, Mapping) or "region" not in data:
        return
    endpoint, region = data.get("endpoint"), data["region"]
    if (isinstance(endpoint, str) and endpoint.strip()) or not isinstance(region, str):
        return
    if region == "":
        raise _KeyedError(
            "region",
            "must be an AWS region such as us-east-1 (no endpoint is set, so this is AWS S3)",
        )
    if region not in aws_regions():
        near = difflib.get_close_matches(region.lower(), sorted(aws_regions()), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise _KeyedError(
            "region",
            "is not an AWS region (no endpoint is set, so this is AWS S3; for another "
            f"S3-compatible service set its endpoint){hint}",
        )


def _check_url(value: str) -> str:
    """An http(s) URL with a host and a valid port, without user info, query or fragment."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("must be an http:// or https:// URL with a valid host and port") from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE)
        or any(ch.isspace() for ch in value)
    ):
        raise ValueError("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query or fragment")
    if port == 0:
        raise ValueError("must not use port 0")
    return value.rstrip("/")


class Credentials(_Model):
    """``key``/``secret``/``token``, or ``ambient: true``: with key and secret empty, the AWS
    SDK's default chain (``AWS_*`` variables, profile, instance or task role) signs instead.
    Without ``ambient: true`` a configured server must have both (checked when the file is
    loaded, like the Go plugin does)."""

    key: str = ""
    secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    ambient: bool = False

    @property
    def given(self) -> bool:
        return bool(self.key or self.secret.get_secret_value())


class ServerConfig(_Model):
    """Where and how to reach one S3-compatible service."""

    region: str = "us-east-1"
    endpoint: str = ""
    public_endpoint: str = ""
    use_path_style_endpoint: bool | None = None
    visibility_mode: VisibilityMode = "acl"
    credentials: Credentials = Credentials()
    connect_timeout: PositiveSeconds = 5.0
    read_timeout: PositiveSeconds = 60.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3

    @model_validator(mode="before")
    @classmethod
    def _aws_region(cls, data: Any) -> Any:
        _check_aws_region(data)
        return data

    @field_validator("endpoint", "public_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        # "" (e.g. an unset ${S3_REGION}) means the default, as it does for botocore.
        return _check_region(value) or "us-east-1"

    @property
    def path_style(self) -> bool:
        if self.use_path_style_endpoint is not None:
            return self.use_path_style_endpoint
        return bool(self.endpoint)


_SERVER_FIELDS = frozenset(ServerConfig.model_fields)


class BucketConfig(_Model):
    """One logical bucket as PHP names it; either ``server:`` or the server fields inline."""

    server: str | None = None
    bucket: Annotated[str, Field(min_length=1)]
    prefix: str = ""
    visibility: Visibility = "private"
    visibility_mode: VisibilityMode | None = None
    public_url: str = ""
    max_concurrent_operations: PositiveInt = 100
    part_size: Annotated[int, Field(ge=5 * MIB, le=5 * 1024 * MIB)] = 5 * MIB
    concurrency: Annotated[int, Field(ge=1, le=64)] = 5
    operation_timeout: PositiveSeconds | None = None
    # Inline server fields (the alternative to ``server:``).
    region: str | None = None
    endpoint: str | None = None
    public_endpoint: str | None = None
    use_path_style_endpoint: bool | None = None
    credentials: Credentials | None = None
    connect_timeout: PositiveSeconds | None = None
    read_timeout: PositiveSeconds | None = None
    max_attempts: Annotated[int, Field(ge=1, le=20)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _aws_region(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("server") is None:
            _check_aws_region(data)
        return data

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value and any(seg in ("", ".", "..") for seg in value.split("/")):
            raise ValueError("must not contain empty, '.' or '..' segments")
        return f"{value}/" if value else ""

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return _check_region(value) or None

    @field_validator("endpoint", "public_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _server_or_inline(self) -> BucketConfig:
        if self.server is not None and self.inline_server_fields():
            names = ", ".join(sorted(self.inline_server_fields()))
            raise ValueError(f"give either 'server' or inline server fields ({names}), not both")
        if self.server is None:
            try:
                self.inline_server()
            except ValidationError as exc:
                first = exc.errors(include_input=False, include_url=False)[0]
                inner = (first.get("ctx") or {}).get("error")
                if isinstance(inner, _KeyedError):
                    raise inner from None
                key = ".".join(str(part) for part in first["loc"])
                raise _KeyedError(key, error_message(first)) from None
        return self

    def inline_server_fields(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in _SERVER_FIELDS
            if name in type(self).model_fields
            and name != "visibility_mode"
            and getattr(self, name) is not None
        }

    def inline_server(self) -> ServerConfig:
        return ServerConfig(**self.inline_server_fields())


class RegisterPolicy(_Model):
    """``s3.register``: what a bucket added at run time (``s3.RegisterBucket``) may do.

    ``allowed_endpoints`` holds URL prefixes (``https://minio.example.com:9000``, matched by
    scheme, host, port and leading path segments) or host names (``minio.example.com``, any
    scheme and port; ``*.example.com`` for its subdomains). Empty means the endpoints of the
    configured servers, plus AWS for a bucket given no endpoint. Link-local and cloud-metadata
    addresses are refused whatever this list says.
    """

    allow_credentials: bool = True
    allow_ambient_credentials: bool = False
    allowed_endpoints: tuple[str, ...] = ()
    max_registered: Annotated[int, Field(ge=0)] = 100

    @field_validator("allowed_endpoints")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if "://" in entry:
                _check_url(entry)
            elif not re.fullmatch(r"(?:\*\.)?[A-Za-z0-9_.:\[\]-]+", entry):
                raise ValueError(
                    "entries must be http:// or https:// URL prefixes "
                    "or host names like *.example.com"
                )
        return value


class S3Config(_Model):
    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, populate_by_name=True
    )

    default: str | None = None
    shutdown_timeout: NonNegativeSeconds = 30.0
    operation_timeout: PositiveSeconds = 60.0
    servers: dict[str, ServerConfig] = {}
    buckets: dict[str, BucketConfig] = {}
    # ``s3.register`` in the file; the attribute name avoids BaseModel's ``register``.
    register_policy: RegisterPolicy = Field(default=RegisterPolicy(), alias="register")
    # Upload sessions (s3.UploadStart ... s3.UploadComplete, storage/sessions.py).
    #: Seconds a session may stay idle (no chunk) before the sweep aborts it.
    upload_session_ttl: PositiveSeconds = 3600.0
    #: Open sessions at once; s3.UploadStart beyond it is refused (TOO_MANY_UPLOADS).
    max_upload_sessions: PositiveInt = 1000
    #: Bytes all sessions together may hold buffered (each below its bucket's part_size).
    max_upload_buffer: PositiveInt = 256 * MIB
    #: Directories whose files s3.WriteFromFile / s3.ReadToFile may touch; empty = feature off.
    local_paths: tuple[str, ...] = ()

    @field_validator("local_paths")
    @classmethod
    def _local_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if "\x00" in entry or not os.path.isabs(entry):
                raise ValueError("entries must be absolute directory paths such as /srv/uploads")
        return tuple(os.path.normpath(entry) for entry in value)

    @model_validator(mode="after")
    def _references(self) -> S3Config:
        for name, bucket in self.buckets.items():
            if bucket.server is not None and bucket.server not in self.servers:
                raise _KeyedError(
                    f"buckets.{name}.server",
                    f"server '{bucket.server}' is not defined in s3.servers",
                )
        if self.default is not None and self.default not in self.buckets:
            raise _KeyedError("default", f"bucket '{self.default}' is not defined in s3.buckets")
        return self


class Config(_Model):
    rpc: RpcConfig = RpcConfig()
    s3: S3Config = S3Config()
    logs: LogsConfig = LogsConfig()
    metrics: MetricsConfig = MetricsConfig()
    status: StatusConfig = StatusConfig()

    def ignored_keys(self) -> tuple[str, ...]:
        """RoadRunner keys present in the file that s3rpc accepts and does not act on."""
        keys = list(self.logs.ignored)
        if self.metrics.collect:
            keys.append("metrics.collect")
        if "check_timeout" in self.status.model_fields_set:
            keys.append("status.check_timeout")
        return tuple(keys)


@dataclass(frozen=True, slots=True)
class ResolvedBucket:
    """A bucket with its server settings merged in: what the storage layer needs."""

    name: str
    config: BucketConfig
    server_name: str
    server: ServerConfig
    visibility_mode: VisibilityMode
    operation_timeout: float


def resolve_bucket(s3: S3Config, name: str, bucket: BucketConfig) -> ResolvedBucket:
    if bucket.server is not None:
        server = s3.servers[bucket.server]
        server_name = bucket.server
    else:
        server = bucket.inline_server()
        server_name = f"{name} (inline)"
    return ResolvedBucket(
        name=name,
        config=bucket,
        server_name=server_name,
        server=server,
        visibility_mode=bucket.visibility_mode or server.visibility_mode,
        operation_timeout=bucket.operation_timeout or s3.operation_timeout,
    )

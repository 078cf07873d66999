"""Configuration: a RoadRunner-style ``.rr.yaml`` read into frozen, validated models.

Only the ``rpc``, ``s3``, ``logs`` and ``metrics`` sections are read; other top-level sections of a
RoadRunner config (``version``, ``http``, ``server``, …) are ignored. ``$VAR``, ``${VAR}`` and
``${VAR:-default}`` are expanded in every string before validation. Errors name the dotted key
(``s3.buckets.uploads.visibility``) and never echo a value, so no secret reaches a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_LISTEN = "tcp://127.0.0.1:6001"
DEFAULT_CONFIG_PATH = ".rr.yaml"
MIB = 1024 * 1024


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


Visibility = Literal["public", "private"]
VisibilityMode = Literal["acl", "none"]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    scheme: Literal["tcp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """``tcp://host:port`` (IPv6 in brackets) or ``unix:///absolute/or/relative/path``."""
    if value.startswith("unix://"):
        path = value[len("unix://") :]
        if not path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/s3rpc/rpc.sock")
        return ListenAddress("unix", path=path)
    rest = value[len("tcp://") :] if value.startswith("tcp://") else value
    if "://" in rest:
        raise ValueError("must be tcp://host:port or unix:///path")
    match = re.fullmatch(
        r"(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})", rest
    )
    if match is None:
        raise ValueError("must be tcp://host:port or unix:///path")
    port = int(match["port"])
    if port > 65535:
        raise ValueError("port must be between 0 and 65535")
    host = match["v6"] or match["host"] or "0.0.0.0"
    return ListenAddress("tcp", host=host, port=port)


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
    read_timeout: PositiveFloat = 60.0
    #: A connection with nothing in flight for this long is closed; 0 keeps it forever.
    idle_timeout: NonNegativeFloat = 0.0
    #: A connection whose unsent answers do not move for this long is closed.
    write_timeout: PositiveFloat = 60.0

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


class LogsConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class MetricsConfig(_Model):
    address: str = ""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not re.fullmatch(r"(?:\[[0-9a-fA-F:.]+\]|[^:\[\]/\s]*):\d{1,5}", value):
            raise ValueError("must be host:port, e.g. 127.0.0.1:2112")
        return value


#: botocore's own rule for a region name; anything else would fail when the client is created.
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def _check_region(value: str | None) -> str | None:
    if value is not None and value != "" and not _REGION.fullmatch(value):
        raise ValueError("must be a region name such as us-east-1: letters, digits and '-'")
    return value


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
    key: str = ""
    secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")


class ServerConfig(_Model):
    """Where and how to reach one S3-compatible service."""

    region: str = "us-east-1"
    endpoint: str = ""
    public_endpoint: str = ""
    use_path_style_endpoint: bool | None = None
    visibility_mode: VisibilityMode = "acl"
    credentials: Credentials = Credentials()
    connect_timeout: PositiveFloat = 5.0
    read_timeout: PositiveFloat = 60.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3

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
    operation_timeout: PositiveFloat | None = None
    # Inline server fields (the alternative to ``server:``).
    region: str | None = None
    endpoint: str | None = None
    public_endpoint: str | None = None
    use_path_style_endpoint: bool | None = None
    credentials: Credentials | None = None
    connect_timeout: PositiveFloat | None = None
    read_timeout: PositiveFloat | None = None
    max_attempts: Annotated[int, Field(ge=1, le=20)] | None = None

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
                key = ".".join(str(part) for part in first["loc"])
                raise _KeyedError(key, first["msg"].removeprefix("Value error, ")) from None
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
    shutdown_timeout: Annotated[float, Field(ge=0)] = 30.0
    operation_timeout: PositiveFloat = 60.0
    servers: dict[str, ServerConfig] = {}
    buckets: dict[str, BucketConfig] = {}
    # ``s3.register`` in the file; the attribute name avoids BaseModel's ``register``.
    register_policy: RegisterPolicy = Field(default=RegisterPolicy(), alias="register")

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


# --- loading ------------------------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (the default also replaces "")."""
    env = os.environ if environ is None else environ

    def sub(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        value = env.get(name, "")
        if match["default"] is not None and value == "":
            return match["default"]
        return value

    return _VAR.sub(sub, text)


def _expand_tree(node: Any, environ: Mapping[str, str] | None) -> Any:
    if isinstance(node, str):
        return expand_env(node, environ)
    if isinstance(node, dict):
        return {key: _expand_tree(value, environ) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_tree(value, environ) for value in node]
    return node


class _KeyedError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _describe(error: ValidationError, root: str) -> str:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in item["loc"] if not str(part).startswith("function-")]
        ctx = item.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _KeyedError):
            loc.append(inner.key)
            message = inner.message
        else:
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown key"
            elif item["type"] == "missing":
                message = "required key is missing"
        key = ".".join([root, *loc]) if root else ".".join(loc)
        lines.append(f"{key}: {message}" if key else message)
    return "; ".join(lines)


def config_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-parsed document (the whole ``.rr.yaml``, or a test's dict)."""
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a YAML mapping")
    expanded = _expand_tree(
        {k: data[k] for k in ("rpc", "s3", "logs", "metrics") if k in data}, environ
    )
    for section in ("rpc", "s3", "logs", "metrics"):
        if section in expanded and expanded[section] is None:
            expanded[section] = {}
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "")) from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file} is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file} is not valid YAML{where}") from None
    return config_from_mapping(data or {}, environ)


def bucket_from_params(s3: S3Config, name: str, fields: Mapping[str, Any]) -> BucketConfig:
    """Validate a bucket registered at run time (``s3.RegisterBucket``) like one from the file."""
    try:
        bucket = BucketConfig.model_validate(dict(fields))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "")) from None
    if bucket.server is not None and bucket.server not in s3.servers:
        raise ConfigError(f"server: server '{bucket.server}' is not defined in s3.servers")
    return bucket

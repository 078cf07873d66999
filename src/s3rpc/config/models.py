"""Configuration models: the frozen, validated sections of ``.rr.yaml`` and their shared checks.

``Config`` holds ``rpc``, ``s3``, ``logs`` and ``metrics``; ``resolve_bucket`` merges a bucket with
its server into the ``ResolvedBucket`` the storage layer needs. A validator that knows the dotted
key of its error raises ``_KeyedError``; loading turns it into a ``ConfigError`` naming that key.
"""

from __future__ import annotations

import os
import re
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

DEFAULT_LISTEN = "tcp://127.0.0.1:6001"
MIB = 1024 * 1024


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


class _KeyedError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


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
    read_timeout: PositiveFloat = 60.0
    #: A connection with nothing in flight for this long is closed; 0 keeps it forever.
    idle_timeout: NonNegativeFloat = 0.0
    #: A connection whose unsent answers do not move for this long is closed.
    write_timeout: PositiveFloat = 60.0
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


class LogsConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    #: Which calls get a ``call`` line (at info): every call, failed calls only, or none.
    calls: Literal["all", "errors", "off"] = "all"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class MetricsConfig(_Model):
    address: str = ""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_host_port(value)


class StatusConfig(_Model):
    """``status``: health and readiness probes over HTTP (off unless ``address`` is set)."""

    address: str = ""
    #: ``/ready`` also needs a recent successful HeadBucket of every bucket (cached).
    check_buckets: bool = False
    #: What ``/ready`` answers while not ready (RoadRunner's status plugin key).
    unavailable_status_code: Annotated[int, Field(ge=400, le=599)] = 503

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_host_port(value)


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
    # Upload sessions (s3.UploadStart ... s3.UploadComplete, storage/sessions.py).
    #: Seconds a session may stay idle (no chunk) before the sweep aborts it.
    upload_session_ttl: PositiveFloat = 3600.0
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

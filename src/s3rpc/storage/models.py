"""The PHP contract: request parameters of the ``s3.*`` methods, named as PHP sends them.

Unknown keys are ignored (as the Go plugin does). ``bucket`` may be omitted or empty to mean the
default bucket. ``visibility`` stays a plain string here so that a wrong value is reported as
INVALID_VISIBILITY by the operation rather than as a malformed request.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from s3rpc.errors import ErrorCode, S3RpcError

MAX_LIST_KEYS = 1000


class Params(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    # User metadata travels as HTTP headers (x-amz-meta-*): printable ASCII only.
    if value is None:
        return None
    for key, item in value.items():
        if not key or not (key.isascii() and key.isprintable()) or ":" in key or " " in key:
            raise ValueError(
                "metadata keys must be non-empty printable ASCII without ':' or spaces"
            )
        if not (item.isascii() and item.isprintable()):
            raise ValueError("metadata values must be printable ASCII")
    return value


class NoParams(Params):
    pass


class RegisterBucketParams(Params):
    # Everything except ``name`` is a BucketConfig field, validated by bucket_from_params.
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(min_length=1)

    def bucket_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BucketParams(Params):
    bucket: str | None = None


class ObjectParams(BucketParams):
    pathname: str


class WriteParams(ObjectParams):
    content: bytes
    visibility: str | None = None
    config: dict[str, str] | None = None

    _check_config = field_validator("config")(_metadata)


class PublicUrlParams(ObjectParams):
    expires_in: int = 0


class SetVisibilityParams(ObjectParams):
    visibility: str


class CopyParams(Params):
    source_bucket: str | None = None
    source_pathname: str
    dest_bucket: str | None = None
    dest_pathname: str
    visibility: str | None = None
    config: dict[str, str] | None = None

    _check_config = field_validator("config")(_metadata)


class ListObjectsParams(BucketParams):
    prefix: str = ""
    delimiter: str = ""
    max_keys: int = Field(default=MAX_LIST_KEYS, ge=0)
    continuation_token: str = ""

    @field_validator("prefix", "delimiter", "continuation_token", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("max_keys", mode="before")
    @classmethod
    def _zero_is_default(cls, value: Any) -> Any:
        # Go's omitempty: 0 (or null) means "not given".
        return MAX_LIST_KEYS if value is None or value == 0 else value


P = TypeVar("P", bound=Params)


def parse_params(model: type[P], params: dict[str, Any]) -> P:
    """Validate raw params into ``model``; INVALID_REQUEST naming the first bad field."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        first = errors[0]
        loc = ".".join(str(part) for part in first["loc"]) or "params"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "required field is missing"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise S3RpcError(ErrorCode.INVALID_REQUEST, f"field '{loc}': {message}{more}") from None

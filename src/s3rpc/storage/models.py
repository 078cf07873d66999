"""The PHP contract: request parameters and results of the ``s3.*`` methods, named as PHP
sends and reads them.

Unknown keys are refused (INVALID_REQUEST ``field 'visiblity': unknown field``): a misspelt
optional field must not silently fall back to a default such as a bucket's public visibility.
``null`` means "not given" for every optional field, as the PHP client may send it; ``bucket``
may also be ``""`` for the default bucket. ``visibility`` stays a plain string here so that a
wrong value is reported as INVALID_VISIBILITY by the operation rather than as a malformed
request. Integers are strict: ``true``, ``"3600"`` and ``1000.0`` are not integers.

Every string is length-checked with ``len()`` (constant time) *before* anything scans its
characters, so an oversized field costs nothing however long it is.
"""

from __future__ import annotations

from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    NotRequired,
    TypedDict,
    TypeVar,
    get_type_hints,
)
from urllib.parse import parse_qsl, quote, urlencode

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from s3rpc.config import BucketConfig
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.pathnames import validate_list_prefix, validate_pathname

MAX_LIST_KEYS = 1000
#: A logical bucket name (S3's own are at most 63 characters).
MAX_BUCKET_NAME = 255
#: An S3 key is at most 1024 UTF-8 bytes, so a longer pathname can never be valid.
MAX_PATHNAME_CHARS = 1024
MAX_PREFIX_CHARS = 1024
MAX_DELIMITER_CHARS = 1024
MAX_CONTINUATION_TOKEN_CHARS = 4096
MAX_VISIBILITY_CHARS = 64
#: S3's limit on user metadata: the UTF-8 bytes of every key and value together.
MAX_METADATA_BYTES = 2048
#: How many characters of a client-supplied name an error message may echo.
_SHOWN = 100


def shown(value: str) -> str:
    """A client-supplied string as an error message may quote it: short and printable."""
    head = value[:_SHOWN]
    text = head if head.isprintable() else repr(head)[1:-1]
    return text + "…" if len(value) > _SHOWN else text


def _max_chars(limit: int) -> BeforeValidator:
    """Refuse a string longer than ``limit`` characters, in constant time (``len`` only)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return BeforeValidator(check)


def _refuse_longer(limit: int, code: ErrorCode, message: str) -> BeforeValidator:
    """Like :func:`_max_chars`, but the refusal is ``code`` (e.g. INVALID_PATHNAME)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise S3RpcError(code, message)
        return value

    return BeforeValidator(check)


def _pathname_chars(field: str, limit: int = MAX_PATHNAME_CHARS) -> BeforeValidator:
    return _refuse_longer(
        limit,
        ErrorCode.INVALID_PATHNAME,
        f"{field} is invalid: it is longer than {limit} characters",
    )


_VISIBILITY_CHARS = _refuse_longer(
    MAX_VISIBILITY_CHARS,
    ErrorCode.INVALID_VISIBILITY,
    f"visibility must be 'public' or 'private', got {MAX_VISIBILITY_CHARS}+ characters",
)


BucketName = Annotated[str | None, _max_chars(MAX_BUCKET_NAME)]
Visibility = Annotated[str | None, _VISIBILITY_CHARS]


def _metadata_size(value: Any) -> Any:
    # Before the type check: bounded work on an unbounded map (stops at the first excess).
    if isinstance(value, list) and not value:
        return None  # PHP's empty array is sent as []
    if isinstance(value, dict):
        total = 0
        for key, item in value.items():
            total += (len(key) if isinstance(key, str) else 0) + (
                len(item) if isinstance(item, str) else 0
            )
            if total > MAX_METADATA_BYTES:
                raise ValueError(
                    f"user metadata must be at most {MAX_METADATA_BYTES} bytes, "
                    "keys and values together"
                )
    return value


def _metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    # User metadata travels as HTTP headers (x-amz-meta-*): printable ASCII only, so the
    # character count checked above is also the byte count S3 limits.
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


Metadata = Annotated[dict[str, str] | None, BeforeValidator(_metadata_size)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Keys accepted besides the model's fields (RegisterBucket's bucket fields).
    extra_keys: ClassVar[frozenset[str]] = frozenset()
    #: Array items and map entries the params may hold in all (checked before they are
    #: decoded); None: the RPC codec's default, for params without long lists.
    max_items: ClassVar[int | None] = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # Stops at the first unknown key: a map of a million keys costs no more than one.
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields and key not in cls.extra_keys:
                    name = shown(key) if isinstance(key, str) else repr(key)[:_SHOWN]
                    raise S3RpcError(ErrorCode.INVALID_REQUEST, f"field '{name}': unknown field")
        return data


class NoParams(Params):
    pass


_NAME = r"^[^\x00-\x1f\x7f]+$"  # no control characters


class RegisterBucketParams(Params):
    """``name`` plus the fields of a bucket (validated by ``bucket_from_params``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    extra_keys: ClassVar[frozenset[str]] = frozenset(BucketConfig.model_fields)
    # The pattern also refuses text that is not UTF-8 (msgpack's surrogate escapes), which
    # JSON answers (s3.ListBuckets) and JSON log lines could not carry.
    name: Annotated[str, _max_chars(MAX_BUCKET_NAME), Field(min_length=1, pattern=_NAME)]

    def bucket_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BucketParams(Params):
    bucket: BucketName = None


class ObjectParams(BucketParams):
    pathname: Annotated[str, _pathname_chars("pathname")]


def _object_bytes(value: Any) -> bytes | bytearray | memoryview:
    # Taken as it is, not copied: a bytearray (large JSON content, decoded in steps) or a
    # view into the request frame (large msgpack content).
    if isinstance(value, bytes | bytearray | memoryview):
        return value
    raise ValueError("must be the object's bytes")


class _Binary:
    """Marks a field that carries object bytes: the codec converts it (base64 under JSON)."""


BINARY = _Binary()
#: Object bytes in a request or a result.
ObjectBytes = Annotated[bytes | bytearray | memoryview, PlainValidator(_object_bytes), BINARY]


def binary_fields(model: type[Any]) -> frozenset[str]:
    """The fields of a params model or result type that carry object bytes."""
    hints = get_type_hints(model, include_extras=True)
    return frozenset(
        name for name, hint in hints.items() if BINARY in getattr(hint, "__metadata__", ())
    )


MAX_CONTENT_TYPE_CHARS = 255
#: Cache-Control, Content-Disposition, Content-Encoding, Content-Language values.
MAX_HEADER_CHARS = 1024
MAX_STORAGE_CLASS_CHARS = 64
#: S3's limits on object tags.
MAX_TAGS = 10
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
#: The tagging string, "k=v&k2=v2" (at most 10 tags of 128 + 256 characters, percent-encoded).
MAX_TAGGING_CHARS = 8192


def _header_value(value: str | None) -> str | None:
    # Sent as an HTTP header: printable ASCII only (S3 would refuse or mangle anything else).
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isprintable()):
        raise ValueError(
            "must be printable ASCII (an HTTP header); encode other characters, "
            "e.g. filename*=UTF-8''%E2%82%AC.txt"
        )
    return value


HeaderValue = Annotated[str | None, _max_chars(MAX_HEADER_CHARS)]


def _empty_is_none(value: Any) -> Any:
    # PHP sends an empty array as [] and may send "" for "not given".
    if value == [] or value == "" or value == {}:
        return None
    return value


#: Besides letters and digits, the characters S3 allows in tag keys and values.
_TAG_CHARS = frozenset(" _.:/=+-@")


def _check_tags(pairs: list[tuple[str, str]]) -> str:
    if len(pairs) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    keys = set()
    for key, item in pairs:
        if not 1 <= len(key) <= MAX_TAG_KEY_CHARS:
            raise ValueError(f"tag keys must be 1 to {MAX_TAG_KEY_CHARS} characters")
        if len(item) > MAX_TAG_VALUE_CHARS:
            raise ValueError(f"tag values must be at most {MAX_TAG_VALUE_CHARS} characters")
        if not all(c.isalnum() or c in _TAG_CHARS for c in key + item):
            raise ValueError(
                "tag keys and values may hold letters, digits, spaces and _ . : / = + - @ only"
            )
        if key in keys:
            raise ValueError("tag keys must be unique")
        keys.add(key)
    return urlencode(pairs, quote_via=quote)


def _tagging(value: Any) -> Any:
    """A map of tags or a ``"k=v&k2=v2"`` string, as the URL-encoded string S3 takes."""
    value = _empty_is_none(value)
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_TAGGING_CHARS:
            raise ValueError(f"must be at most {MAX_TAGGING_CHARS} characters")
        try:
            pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueError("must be a map of tags or a 'key=value&key2=value2' string") from None
        return _check_tags(pairs)
    if isinstance(value, dict):
        if len(value) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError("tag keys and values must be strings")
        return _check_tags(list(value.items()))
    raise ValueError("must be a map of tags or a 'key=value&key2=value2' string")


class WriteOptions(Params):
    """Options of every method that creates an object: Write, WriteFromFile, UploadStart,
    Copy and Move. Turned into S3 arguments by ``storage.objects.write_args``.

    ``metadata`` is the user metadata (``x-amz-meta-*``); ``config`` is its older name. Either
    may be given, not both. ``tagging`` is a map or a ``"k=v&k2=v2"`` string and is kept as the
    URL-encoded string. ``if_none_match`` can only be ``"*"``: create, never overwrite.
    """

    visibility: Visibility = None
    content_type: Annotated[
        str | None, _max_chars(MAX_CONTENT_TYPE_CHARS), BeforeValidator(_empty_is_none)
    ] = None
    cache_control: HeaderValue = None
    content_disposition: HeaderValue = None
    content_encoding: HeaderValue = None
    content_language: HeaderValue = None
    metadata: Metadata = None
    config: Metadata = None
    storage_class: Annotated[
        str | None,
        _max_chars(MAX_STORAGE_CLASS_CHARS),
        BeforeValidator(_empty_is_none),
        Field(pattern=r"^[A-Z][A-Z_]*$"),
    ] = None
    tagging: Annotated[str | None, BeforeValidator(_tagging)] = None
    if_none_match: Annotated[Literal["*"] | None, BeforeValidator(_empty_is_none)] = None

    _check_metadata = field_validator("metadata", "config")(_metadata)
    _check_headers = field_validator(
        "content_type",
        "cache_control",
        "content_disposition",
        "content_encoding",
        "content_language",
    )(_header_value)

    @model_validator(mode="after")
    def _one_metadata(self) -> WriteOptions:
        if self.metadata is not None and self.config is not None:
            raise S3RpcError(
                ErrorCode.INVALID_REQUEST,
                "field 'metadata': give either 'metadata' or its alias 'config', not both",
            )
        return self

    @property
    def user_metadata(self) -> dict[str, str] | None:
        """The user metadata given as ``metadata`` or ``config``; None if neither."""
        return self.metadata if self.metadata is not None else self.config


class WriteParams(ObjectParams, WriteOptions):
    content: ObjectBytes


class PublicUrlParams(ObjectParams):
    expires_in: StrictInt = 0
    #: Presigned URLs only: the Content-Type / Content-Disposition S3 answers the download with.
    response_content_type: Annotated[
        str | None, _max_chars(MAX_CONTENT_TYPE_CHARS), BeforeValidator(_empty_is_none)
    ] = None
    response_content_disposition: HeaderValue = None

    _check_headers = field_validator("response_content_type", "response_content_disposition")(
        _header_value
    )

    @field_validator("expires_in", mode="before")
    @classmethod
    def _none_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value


#: The largest object a presigned POST may upload (S3's limit for one PUT or POST).
MAX_POST_SIZE = 5 * 1024**3


class UploadUrlParams(ObjectParams):
    """``s3.GetUploadURL``: a presigned PUT of ``pathname`` valid for ``expires_in`` seconds."""

    expires_in: StrictInt
    visibility: Visibility = None
    content_type: Annotated[
        str | None, _max_chars(MAX_CONTENT_TYPE_CHARS), BeforeValidator(_empty_is_none)
    ] = None

    _check_content_type = field_validator("content_type")(_header_value)


class UploadPostParams(UploadUrlParams):
    """``s3.GetUploadPost``: a presigned POST (an HTML form) of at most ``max_size`` bytes.

    ``allow_filename``: the pathname may end in ``${filename}``, which S3 replaces with the name
    of the browser's file; the form then may write any key below the pathname's folder."""

    max_size: Annotated[StrictInt, Field(ge=1, le=MAX_POST_SIZE)]
    allow_filename: StrictBool = False

    @field_validator("allow_filename", mode="before")
    @classmethod
    def _none_is_false(cls, value: Any) -> Any:
        return False if value is None else value


class SetVisibilityParams(ObjectParams):
    visibility: Annotated[str, _VISIBILITY_CHARS]


class CopyParams(WriteOptions):
    source_bucket: BucketName = None
    source_pathname: Annotated[str, _pathname_chars("source_pathname")]
    dest_bucket: BucketName = None
    dest_pathname: Annotated[str, _pathname_chars("dest_pathname")]


class ListObjectsParams(BucketParams):
    prefix: Annotated[str, _pathname_chars("prefix", MAX_PREFIX_CHARS)] = ""
    delimiter: Annotated[str, _max_chars(MAX_DELIMITER_CHARS)] = ""
    max_keys: Annotated[StrictInt, Field(ge=0)] = MAX_LIST_KEYS
    continuation_token: Annotated[str, _max_chars(MAX_CONTINUATION_TOKEN_CHARS)] = ""

    @field_validator("prefix", "delimiter", "continuation_token", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("max_keys", mode="before")
    @classmethod
    def _zero_is_default(cls, value: Any) -> Any:
        # Go's omitempty: 0 (or null) means "not given". ``False == 0``, so test the type.
        if value is None or (type(value) is int and value == 0):
            return MAX_LIST_KEYS
        return value


# --- big files: ranged reads, local files (storage/files.py) ------------------------------------

#: A local file path (Linux's PATH_MAX).
MAX_LOCAL_PATH_CHARS = 4096


class ReadParams(ObjectParams):
    """``s3.Read``: the whole object, or ``length`` bytes (all to the end if null) at ``offset``."""

    offset: Annotated[StrictInt, Field(ge=0)] = 0
    length: Annotated[StrictInt, Field(ge=1)] | None = None

    @field_validator("offset", mode="before")
    @classmethod
    def _none_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value


def _local_path(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


LocalPath = Annotated[
    str,
    _max_chars(MAX_LOCAL_PATH_CHARS),
    BeforeValidator(_local_path),
    Field(min_length=1),
]


class WriteFromFileParams(ObjectParams, WriteOptions):
    """``s3.WriteFromFile``: upload a local file under ``s3.local_paths``, streamed."""

    source_path: LocalPath


class ReadToFileParams(ObjectParams):
    """``s3.ReadToFile``: download into a local file under ``s3.local_paths``, streamed."""

    dest_path: LocalPath


P = TypeVar("P", bound=Params)


def parse_params(model: type[P], params: dict[str, Any]) -> P:
    """Validate raw params into ``model``; INVALID_REQUEST naming the first bad field."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        first = errors[0]
        loc = ".".join(shown(str(part)) for part in first["loc"]) or "params"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "required field is missing"
        elif first["type"] == "extra_forbidden":
            message = "unknown field"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise S3RpcError(ErrorCode.INVALID_REQUEST, f"field '{loc}': {message}{more}") from None


# --- results ----------------------------------------------------------------------------------


class SuccessResult(TypedDict):
    success: bool


class WriteResult(TypedDict):
    success: bool
    pathname: str
    size: int
    last_modified: int


class ReadResult(TypedDict):
    content: ObjectBytes
    #: Bytes in ``content`` (of the range when ranged).
    size: int
    mime_type: str
    last_modified: int
    #: The stored Content-Type ("" if none) and user metadata (x-amz-meta-*).
    content_type: str
    metadata: dict[str, str]
    #: ``bytes first-last/total`` (``bytes */total`` when empty) and the whole object's size.
    range: str
    total_size: int


class ReadToFileResult(TypedDict):
    success: bool
    pathname: str
    size: int
    dest_path: str


class ExistsResult(TypedDict):
    exists: bool


class MetadataResult(TypedDict):
    size: int
    mime_type: str
    last_modified: int
    visibility: str
    etag: str
    content_type: str
    metadata: dict[str, str]


class UrlResult(TypedDict, total=False):
    url: str
    expires_at: int


class UploadUrlResult(TypedDict):
    url: str
    #: Always "PUT".
    method: str
    #: Headers the upload must send exactly as given (they are signed or expected).
    headers: dict[str, str]
    expires_at: int


class UploadPostResult(TypedDict):
    url: str
    #: Form fields to send before the file field (named "file"), exactly as given.
    fields: dict[str, str]
    expires_at: int


class ListedObject(TypedDict):
    key: str
    size: int
    last_modified: int
    etag: str
    storage_class: str


class ListedPrefix(TypedDict):
    prefix: str


class ListObjectsResult(TypedDict):
    objects: list[ListedObject]
    #: Absent when empty, as the Go plugin's ``omitempty`` leaves it out.
    common_prefixes: NotRequired[list[ListedPrefix]]
    is_truncated: bool
    #: Absent on the last page (``omitempty`` in the Go plugin): PHP loops on ``isset()``.
    next_continuation_token: NotRequired[str]
    key_count: int


class ListBucketsResult(TypedDict):
    buckets: list[str]
    default: str


class RegisterBucketResult(TypedDict):
    success: bool
    message: str


class PingResult(TypedDict):
    pong: bool
    version: str


RESULTS: tuple[type[Any], ...] = (
    SuccessResult,
    WriteResult,
    ReadResult,
    ReadToFileResult,
    ExistsResult,
    MetadataResult,
    UrlResult,
    ListObjectsResult,
    ListBucketsResult,
    RegisterBucketResult,
    PingResult,
)
#: Result fields that carry object bytes, whatever the method (what a client converts).
RESULT_BYTES_FIELDS: frozenset[str] = frozenset().union(*map(binary_fields, RESULTS))


# --- batch deletes, Flysystem listings, directories, unregistering (storage/batch.py) -------

#: The most pathnames one s3.DeleteMany call may carry (S3 takes 1000 per request).
MAX_DELETE_PATHNAMES = 10_000
MAX_LIST_TOKEN_CHARS = 8192


def _at_most_pathnames(value: Any) -> Any:
    # Before the item checks: a list of a million names is refused at the cost of one len().
    if isinstance(value, list) and len(value) > MAX_DELETE_PATHNAMES:
        raise ValueError(f"at most {MAX_DELETE_PATHNAMES} pathnames per call")
    return value


class DeleteManyParams(BucketParams):
    """Each pathname is checked on its own: a bad one is reported in ``errors``, not raised."""

    pathnames: Annotated[list[str], BeforeValidator(_at_most_pathnames)]

    max_items: ClassVar[int | None] = MAX_DELETE_PATHNAMES + 64


class DeleteDirectoryParams(BucketParams):
    prefix: Annotated[str, _pathname_chars("prefix", MAX_PREFIX_CHARS)]


class CreateDirectoryParams(BucketParams):
    """``s3.CreateDirectory``: ``path`` is a directory (``"a/b"`` or ``"a/b/"``), never the root."""

    path: Annotated[str, _pathname_chars("path", MAX_PREFIX_CHARS)]
    visibility: Visibility = None


class ListContentsParams(BucketParams):
    prefix: Annotated[str, _pathname_chars("prefix", MAX_PREFIX_CHARS)] = ""
    deep: StrictBool = False
    token: Annotated[str, _max_chars(MAX_LIST_TOKEN_CHARS)] = ""
    max_keys: Annotated[StrictInt, Field(ge=0)] = MAX_LIST_KEYS

    @field_validator("prefix", "token", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("deep", mode="before")
    @classmethod
    def _none_is_false(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("max_keys", mode="before")
    @classmethod
    def _zero_is_default(cls, value: Any) -> Any:
        if value is None or (type(value) is int and value == 0):
            return MAX_LIST_KEYS
        return value


class ExistsParams(ObjectParams):
    """``s3.Exists``: a pathname ending in ``/`` asks whether the directory has any object."""

    @field_validator("pathname")
    @classmethod
    def _valid_pathname(cls, value: str) -> str:
        if value.endswith("/"):
            if value.strip("/") == "":
                raise S3RpcError(
                    ErrorCode.INVALID_PATHNAME, "pathname is invalid: it names no directory"
                )
            return validate_list_prefix(value, "pathname")
        return validate_pathname(value)

    @property
    def directory(self) -> bool:
        return self.pathname.endswith("/")


class UnregisterBucketParams(Params):
    name: Annotated[str, _max_chars(MAX_BUCKET_NAME), Field(min_length=1)]


class UnregisterBucketResult(TypedDict):
    success: bool
    message: str


class DeleteError(TypedDict):
    pathname: str
    code: str
    message: str


class DeleteManyResult(TypedDict):
    deleted: list[str]
    errors: list[DeleteError]


class DeleteDirectoryResult(TypedDict):
    success: bool
    deleted: int


class CreateDirectoryResult(TypedDict):
    success: bool
    path: str


class FileEntry(TypedDict):
    type: Literal["file"]
    path: str
    file_size: int
    last_modified: int
    visibility: None
    mime_type: None


class DirEntry(TypedDict):
    type: Literal["dir"]
    path: str
    last_modified: None


class ListContentsResult(TypedDict):
    contents: list[FileEntry | DirEntry]
    next_token: str


# --- upload sessions: chunked uploads (storage/sessions.py) -----------------------------------

#: ``secrets.token_urlsafe(24)`` gives 32 characters; anything much longer is not one of ours.
MAX_UPLOAD_ID_CHARS = 16384


class UploadStartParams(ObjectParams, WriteOptions):
    """``s3.UploadStart``: open a session that writes ``pathname`` once completed."""


class UploadIdParams(Params):
    """``s3.UploadStatus`` / ``s3.UploadAbort``: the session's id from ``s3.UploadStart``."""

    upload_id: Annotated[str, _max_chars(MAX_UPLOAD_ID_CHARS), Field(min_length=1)]


class UploadChunkParams(UploadIdParams):
    """``s3.UploadChunk``: the object's bytes from ``offset`` on.

    ``offset`` (optional, recommended) is where ``content`` starts in the object: any offset
    from the session's committed bytes to its end is taken (bytes sent again overwrite), any
    other is UPLOAD_OFFSET_MISMATCH. Without it the chunk goes at the end.
    """

    content: ObjectBytes
    offset: Annotated[StrictInt, Field(ge=0)] | None = None


class UploadCompleteParams(UploadIdParams):
    """``s3.UploadComplete``: ``size`` is the object's expected total; refused unless the
    session holds exactly that many bytes."""

    size: Annotated[StrictInt, Field(ge=0)]


class UploadStartResult(TypedDict):
    upload_id: str


class UploadChunkResult(TypedDict):
    upload_id: str
    #: Bytes the session holds, this chunk included: where the next chunk starts.
    received: int
    #: Of those, the bytes in S3 parts (the rest is re-sent if the daemon loses it).
    committed: int


class UploadStatusResult(TypedDict):
    upload_id: str
    #: Bytes committed (in S3 parts): resume from here.
    offset: int
    #: Bytes the answering daemon holds (committed plus its cached tail).
    received: int

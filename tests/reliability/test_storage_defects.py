"""Issue 7, storage side, through the daemon's real socket: Move onto a twin, unknown fields,
strict integers, oversized fields, and what Move says when its delete's outcome is unknown."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, RunningDaemon, StartDaemon
from reliability.conftest import StartProxiedDaemon
from reliability.faultproxy import Fault, FaultProxy, Match
from s3rpc.client import AsyncClient, RpcError
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage import models
from s3rpc.storage.models import parse_params
from s3rpc.storage.pathnames import validate_list_prefix, validate_pathname

CALL_TIMEOUT = 60
BIG = 60_000_000  # characters: the size that stalled the event loop for ~2 s


def server(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "region": "us-east-1",
        "endpoint": endpoint,
        "credentials": {"key": ACCESS_KEY, "secret": SECRET_KEY},
        **extra,
    }


async def rpc_error(daemon: RunningDaemon, method: str, params: dict[str, Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        await daemon.call(method, params)
    return info.value


def object_bytes(s3_admin: Any, bucket: str, key: str) -> bytes | None:
    try:
        body: bytes = s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return body


# --- 1. Move onto the same object reached through another client --------------------------------


async def twin_daemon(
    kind: str, start_daemon: StartDaemon, s3_endpoint: str, physical: str
) -> RunningDaemon:
    """A daemon where logical buckets ``a`` and ``b`` are one physical bucket, different clients."""
    servers = {"local": server(s3_endpoint)}
    twin: dict[str, Any] = {"bucket": physical}
    if kind == "read_timeout":
        servers["slow"] = server(s3_endpoint, read_timeout=31)
        twin["server"] = "slow"
    elif kind == "localhost":
        servers["named"] = server(s3_endpoint.replace("127.0.0.1", "localhost"))
        twin["server"] = "named"
    buckets: dict[str, dict[str, Any]] = {"a": {"bucket": physical}}
    if kind != "register":
        buckets["b"] = twin
    daemon = await start_daemon(buckets, s3={"servers": servers})
    if kind == "register":
        # Inline, same endpoint and account, another read_timeout: its own client.
        spec = server(s3_endpoint, read_timeout=32)
        await daemon.call("s3.RegisterBucket", {"name": "b", "bucket": physical, **spec})
    return daemon


TWINS = ["read_timeout", "localhost", "register"]


@pytest.mark.parametrize("kind", TWINS)
async def test_move_onto_a_twin_bucket_keeps_the_object(
    kind: str,
    start_daemon: StartDaemon,
    s3_endpoint: str,
    physical_buckets: Callable[..., str],
    s3_admin: Any,
) -> None:
    physical = physical_buckets("twin")
    daemon = await twin_daemon(kind, start_daemon, s3_endpoint, physical)
    content = b"the only copy " * 100
    await daemon.call("s3.Write", {"bucket": "a", "pathname": "doc.txt", "content": content})
    result = await daemon.call(
        "s3.Move",
        {
            "source_bucket": "a",
            "source_pathname": "doc.txt",
            "dest_bucket": "b",
            "dest_pathname": "doc.txt",
        },
    )
    assert result["success"] is True
    assert result["pathname"] == "doc.txt"
    assert result["size"] == len(content)
    assert object_bytes(s3_admin, physical, "doc.txt") == content
    read = await daemon.call("s3.Read", {"bucket": "b", "pathname": "doc.txt"})
    assert read["content"] == content


@pytest.mark.parametrize("kind", TWINS)
async def test_copy_onto_a_twin_bucket_rewrites_metadata_and_keeps_the_bytes(
    kind: str,
    start_daemon: StartDaemon,
    s3_endpoint: str,
    physical_buckets: Callable[..., str],
    s3_admin: Any,
) -> None:
    physical = physical_buckets("twin")
    daemon = await twin_daemon(kind, start_daemon, s3_endpoint, physical)
    content = b"copy me onto myself"
    await daemon.call(
        "s3.Write",
        {"bucket": "a", "pathname": "m.json", "content": content, "config": {"v": "1"}},
    )
    await daemon.call(
        "s3.Copy",
        {
            "source_bucket": "a",
            "source_pathname": "m.json",
            "dest_bucket": "b",
            "dest_pathname": "m.json",
            "config": {"v": "2"},
        },
    )
    head = s3_admin.head_object(Bucket=physical, Key="m.json")
    assert head["Metadata"] == {"v": "2"}
    assert head["ContentType"] == "application/json"
    assert object_bytes(s3_admin, physical, "m.json") == content


async def test_move_between_twins_to_another_key_still_moves(
    start_daemon: StartDaemon,
    s3_endpoint: str,
    physical_buckets: Callable[..., str],
    s3_admin: Any,
) -> None:
    physical = physical_buckets("twin")
    daemon = await twin_daemon("localhost", start_daemon, s3_endpoint, physical)
    await daemon.call("s3.Write", {"bucket": "a", "pathname": "from", "content": b"x"})
    await daemon.call(
        "s3.Move",
        {
            "source_bucket": "a",
            "source_pathname": "from",
            "dest_bucket": "b",
            "dest_pathname": "to",
        },
    )
    assert object_bytes(s3_admin, physical, "from") is None
    assert object_bytes(s3_admin, physical, "to") == b"x"


# --- 2. unknown fields and strict integers ------------------------------------------------------


async def test_misspelt_visibility_is_refused_and_nothing_is_stored(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    # "uploads" is public by default: before, the typo silently made the file public.
    error = await rpc_error(
        daemon,
        "s3.Write",
        {"bucket": "uploads", "pathname": "secret.pdf", "content": b"%PDF", "visiblity": "private"},
    )
    assert error.code == "INVALID_REQUEST"
    assert error.message == "field 'visiblity': unknown field"
    assert object_bytes(s3_admin, daemon.buckets["uploads"], "secret.pdf") is None
    exists = await daemon.call("s3.Exists", {"bucket": "uploads", "pathname": "secret.pdf"})
    assert exists == {"exists": False}


EVERY_METHOD: dict[str, dict[str, Any]] = {
    "s3.ListBuckets": {},
    "s3.RegisterBucket": {"name": "n", "server": "local", "bucket": "b"},
    "s3.Write": {"pathname": "a", "content": b"a"},
    "s3.Read": {"pathname": "a"},
    "s3.Exists": {"pathname": "a"},
    "s3.Delete": {"pathname": "a"},
    "s3.GetMetadata": {"pathname": "a"},
    "s3.GetPublicURL": {"pathname": "a", "expires_in": 0},
    "s3.SetVisibility": {"pathname": "a", "visibility": "private"},
    "s3.ListObjects": {},
    "s3.Copy": {"source_pathname": "a", "dest_pathname": "b"},
    "s3.Move": {"source_pathname": "a", "dest_pathname": "b"},
}


async def test_every_method_refuses_an_unknown_field_by_name(daemon: RunningDaemon) -> None:
    for method, params in EVERY_METHOD.items():
        error = await rpc_error(daemon, method, {**params, "colour": "blue"})
        assert error.code == "INVALID_REQUEST", (method, error.text)
        assert error.message == "field 'colour': unknown field", (method, error.text)
    # Nothing was registered or written by the refused calls.
    assert (await daemon.call("s3.ListBuckets"))["buckets"] == ["private-docs", "uploads"]
    assert (await daemon.call("s3.Exists", {"pathname": "a"}))["exists"] is False


async def test_optional_fields_sent_as_null_or_empty_are_accepted(daemon: RunningDaemon) -> None:
    # What PHP callers send: every optional field present, as null (or "" / [] for "none").
    written = await daemon.call(
        "s3.Write",
        {"bucket": None, "pathname": "n.txt", "content": b"n", "visibility": None, "config": []},
    )
    assert written["success"] is True
    assert (await daemon.call("s3.Exists", {"bucket": "", "pathname": "n.txt"}))["exists"]
    url = await daemon.call("s3.GetPublicURL", {"pathname": "n.txt", "expires_in": None})
    assert "n.txt" in url["url"]
    listing = await daemon.call(
        "s3.ListObjects",
        {
            "bucket": None,
            "prefix": None,
            "delimiter": None,
            "max_keys": None,
            "continuation_token": None,
        },
    )
    assert [item["key"] for item in listing["objects"]] == ["n.txt"]
    listing = await daemon.call("s3.ListObjects", {"prefix": "", "max_keys": 0})
    assert listing["key_count"] == 1
    copied = await daemon.call(
        "s3.Copy",
        {
            "source_bucket": None,
            "source_pathname": "n.txt",
            "dest_bucket": None,
            "dest_pathname": "m.txt",
            "visibility": None,
            "config": None,
        },
    )
    assert copied["pathname"] == "m.txt"
    registered = await daemon.call(
        "s3.RegisterBucket",
        {
            "name": "late",
            "server": "local",
            "bucket": daemon.buckets["uploads"],
            "prefix": "",
            "visibility": None,
            "public_url": "",
        },
    )
    assert registered["success"] is True


@pytest.mark.parametrize("value", [True, "3600", 1000.0, [3600], {"s": 1}])
async def test_expires_in_must_be_an_integer(daemon: RunningDaemon, value: Any) -> None:
    error = await rpc_error(daemon, "s3.GetPublicURL", {"pathname": "a", "expires_in": value})
    assert error.code == "INVALID_REQUEST"
    assert "field 'expires_in'" in error.message


@pytest.mark.parametrize("value", [True, "10", 10.0, -1])
async def test_max_keys_must_be_a_non_negative_integer(daemon: RunningDaemon, value: Any) -> None:
    error = await rpc_error(daemon, "s3.ListObjects", {"max_keys": value})
    assert error.code == "INVALID_REQUEST"
    assert "field 'max_keys'" in error.message


# --- 3. oversized fields are refused before their characters are looked at ---------------------


BIG_FIELDS = {
    "pathname": ("s3.Read", "pathname", "INVALID_PATHNAME"),
    "prefix": ("s3.ListObjects", "prefix", "INVALID_PATHNAME"),
    "continuation_token": ("s3.ListObjects", "continuation_token", "INVALID_REQUEST"),
    "delimiter": ("s3.ListObjects", "delimiter", "INVALID_REQUEST"),
    "bucket": ("s3.Exists", "bucket", "INVALID_REQUEST"),
    "source_pathname": ("s3.Copy", "source_pathname", "INVALID_PATHNAME"),
}


@pytest.mark.parametrize(("method", "field", "code"), BIG_FIELDS.values(), ids=BIG_FIELDS)
async def test_a_60_mb_field_is_refused_while_other_connections_keep_answering(
    daemon: RunningDaemon, method: str, field: str, code: str
) -> None:
    await daemon.call("s3.Write", {"pathname": "small.txt", "content": b"s"})
    params: dict[str, Any] = {
        "s3.Read": {"pathname": "a"},
        "s3.Exists": {"pathname": "a"},
        "s3.ListObjects": {},
        "s3.Copy": {"source_pathname": "a", "dest_pathname": "b"},
    }[method]
    params[field] = "a" * BIG
    async with (
        await AsyncClient.connect(daemon.address) as big,
        await AsyncClient.connect(daemon.address) as small,
    ):
        big_call = asyncio.ensure_future(big.call(method, params, timeout=CALL_TIMEOUT))
        answer = await small.call("s3.Exists", {"pathname": "small.txt"}, timeout=CALL_TIMEOUT)
        assert answer == {"exists": True}
        with pytest.raises(RpcError) as info:
            await asyncio.wait_for(big_call, CALL_TIMEOUT)
    assert info.value.code == code
    assert field in info.value.message
    assert "longer than" in info.value.message or "at most" in info.value.message
    assert len(info.value.text) < 500  # the value is never echoed


# --- bounded work, counted: Python steps taken and characters looked at, never the clock ------

#: Names of str methods through which Python code could look at characters. (== and != are
#: left out: against a string of another length, such as "", they read no character.)
_LOOKS = (
    "__iter__",
    "__getitem__",
    "__contains__",
    "__hash__",
    "__str__",
    "__repr__",
    "__format__",
    "__add__",
    "encode",
    "split",
    "rsplit",
    "startswith",
    "endswith",
    "isprintable",
    "isascii",
    "strip",
    "lower",
    "upper",
    "replace",
    "find",
    "index",
    "count",
)
LOOKED: list[str] = []


def _counted(name: str) -> Callable[..., Any]:
    original = getattr(str, name)

    def method(self: str, *args: Any, **kwargs: Any) -> Any:
        LOOKED.append(name)
        return original(self, *args, **kwargs)

    return method


class Unlooked(str):
    """A string that records every method call that could read its characters (len() does not)."""


for _name in _LOOKS:
    setattr(Unlooked, _name, _counted(_name))


def python_steps(call: Callable[[], Any]) -> int:
    """How many Python steps (calls, lines, returns, exceptions) ``call`` takes."""
    steps = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        steps += 1
        return tracer

    # No collection meanwhile: finalizers of other tests' objects would run as steps here.
    gc.collect()
    gc.disable()
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(previous)
        gc.enable()
    return steps


def refused_with_work(call: Callable[[], Any]) -> tuple[S3RpcError, int, list[str]]:
    """The refusal ``call`` raises, the Python steps it took, and the characters it looked at."""
    refusal: list[S3RpcError] = []

    def refuse() -> None:
        with pytest.raises(S3RpcError) as info:
            call()
        refusal.append(info.value)

    LOOKED.clear()
    steps = python_steps(refuse)
    return refusal[0], steps, list(LOOKED)


@pytest.mark.parametrize("char", ["a", "ü", "日"])
@pytest.mark.parametrize(
    ("model", "field"),
    [
        (models.ObjectParams, "pathname"),
        (models.ListObjectsParams, "prefix"),
        (models.ListObjectsParams, "continuation_token"),
        (models.ListObjectsParams, "delimiter"),
        (models.ObjectParams, "bucket"),
        (models.CopyParams, "dest_pathname"),
        (models.RegisterBucketParams, "name"),
        (models.WriteParams, "visibility"),
    ],
)
def test_oversized_field_validation_is_bounded_work(model: Any, field: str, char: str) -> None:
    base: dict[str, Any] = {
        models.ObjectParams: {"pathname": "a"},
        models.CopyParams: {"source_pathname": "a", "dest_pathname": "b"},
        models.RegisterBucketParams: {"name": "n"},
        models.WriteParams: {"pathname": "a", "content": b""},
        models.ListObjectsParams: {},
    }[model]

    def refusal(chars: int) -> tuple[S3RpcError, int, list[str]]:
        value = Unlooked(char * chars)
        return refused_with_work(lambda: parse_params(model, {**base, field: value}))

    count = BIG // len(char.encode())
    refusal(count // 10)  # first use: lazy imports and caches are not work on the value
    small, small_steps, _ = refusal(count // 10)
    big, big_steps, looked = refusal(count)
    assert field in big.message or "visibility" in big.message
    # Refused by the length check (len() only), before any validator read a character...
    # (our messages, not pydantic's "should have at most", which counts every character)
    assert any(text in big.message for text in ("must be at most", "longer than", "+ char"))
    assert looked == []
    # ...and ten times the characters cost not one Python step more.
    assert big_steps == small_steps
    assert big.message == small.message


@pytest.mark.parametrize("check", [validate_pathname, validate_list_prefix])
def test_pathname_rules_check_the_length_before_the_characters(check: Any) -> None:
    refused_with_work(lambda: check(Unlooked("ü" * 2000)))  # first use
    _, small_steps, _ = refused_with_work(lambda: check(Unlooked("ü" * 2000)))
    refusal, big_steps, looked = refused_with_work(lambda: check(Unlooked("ü" * (BIG // 2))))
    assert refusal.code is ErrorCode.INVALID_PATHNAME
    assert "longer than 1024 characters" in refusal.message
    assert looked == []  # checking every character first took ~2 s
    assert big_steps == small_steps


def test_metadata_over_two_kib_is_refused_after_bounded_work() -> None:
    def refusal(entries: int) -> tuple[S3RpcError, int, list[str]]:
        config = {f"k{i}": "v" * 100 for i in range(entries)}
        params = {"pathname": "a", "content": b"", "config": config}
        return refused_with_work(lambda: parse_params(models.WriteParams, params))

    refusal(1_000)  # first use
    _, small_steps, _ = refusal(1_000)
    info, big_steps, _ = refusal(100_000)
    # The sizes are added up to the first excess (about 20 entries), not over the whole map.
    assert big_steps == small_steps
    assert "field 'config'" in info.message
    assert "2048 bytes" in info.message
    exact = {"k": "v" * (models.MAX_METADATA_BYTES - 1)}
    assert parse_params(models.WriteParams, {"pathname": "a", "content": b"", "config": exact})


# --- 9. Move's error says whether the source may be gone ----------------------------------------


@pytest.mark.parametrize("kind", ["lose_response", "status_500", "reset_response"])
async def test_move_whose_delete_outcome_is_unknown_says_source_may_have_been_deleted(
    kind: str,
    start_proxied_daemon: StartProxiedDaemon,
    fault_proxy: FaultProxy,
    s3_admin: Any,
) -> None:
    daemon = await start_proxied_daemon({"data": {}})
    physical = daemon.buckets["data"]
    await daemon.call("s3.Write", {"pathname": "src.txt", "content": b"payload"})
    # Every attempt: the HTTP layer may resend an idempotent DELETE on a fresh connection.
    fault = fault_proxy.add_fault(Fault(kind, Match(op="DeleteObject"), times=None))
    error = await rpc_error(
        daemon, "s3.Move", {"source_pathname": "src.txt", "dest_pathname": "dst.txt"}
    )
    assert fault.applied >= 1
    assert error.code == "S3_OPERATION_FAILED"
    assert "source 'src.txt' in bucket 'data' may have been deleted" in error.message
    assert "was kept" not in error.message
    assert object_bytes(s3_admin, physical, "dst.txt") == b"payload"

"""Every class of bad input, through the daemon's real socket: the right coded error, nothing
stored outside the bucket, and the same connection serves the next call.

Pathname rules (src/s3rpc/storage/pathnames.py): ``/`` is the only separator; ``.``/``..``/empty
segments, a leading ``/``, control characters (Unicode category Cc) and keys over 1024 UTF-8
bytes (with the bucket prefix) are INVALID_PATHNAME. Nothing is normalised, so a backslash or a
look-alike (fullwidth solidus U+FF0F, one-dot leader U+2024) is an ordinary character: such a
name is accepted and stored verbatim under the bucket's prefix — never as the ``/`` or ``..``
it resembles.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import orjson
import pytest

from conftest import RunningDaemon, StartDaemon
from server import wire

PREFIX = "tenant/"
CODECS = {"json": wire.JSON_FLAG, "msgpack": wire.MSGPACK_FLAG}


@pytest.fixture
async def tenant(start_daemon: StartDaemon) -> RunningDaemon:
    """``tenant`` (prefix ``tenant/``, the default) and ``other`` (no prefix)."""
    return await start_daemon({"tenant": {"prefix": PREFIX}, "other": {}})


class Conn:
    """One raw connection; every call checks the answer's framing (tests/server/wire.py)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def send(
        self, method: str | bytes, body: bytes, flags: int = wire.JSON_FLAG
    ) -> wire.Response:
        seq = self.next_seq()
        raw = method if isinstance(method, bytes) else method.encode()
        response = await wire.call(
            self.reader, self.writer, wire.raw_request(flags, seq, raw, body), timeout=60
        )
        assert response.seq == seq
        assert response.method == raw
        return response

    async def call(self, method: str, params: dict[str, Any], codec: str = "json") -> Any:
        flags = CODECS[codec]
        body = orjson.dumps(params) if codec == "json" else msgpack.packb(params)
        return await self.send(method, body, flags)

    async def error(self, method: str | bytes, body: bytes, flags: int = wire.JSON_FLAG) -> str:
        response = await self.send(method, body, flags)
        assert response.is_error, f"expected an error, got {response.body[:200]!r}"
        return response.text

    async def usable(self) -> None:
        """The connection still serves a real call (a write and a read of it)."""
        content = b"still-serving"
        body = {"pathname": "usable/check.txt", "content": base64.b64encode(content).decode()}
        written = await self.send("s3.Write", orjson.dumps(body))
        assert not written.is_error, written.text
        read = await self.send("s3.Read", orjson.dumps({"pathname": "usable/check.txt"}))
        assert not read.is_error, read.text
        assert base64.b64decode(orjson.loads(read.body)["content"]) == content


@pytest.fixture
async def conn(tenant: RunningDaemon) -> AsyncIterator[Conn]:
    reader, writer = await wire.connect(tenant.address)
    try:
        yield Conn(reader, writer)
    finally:
        await wire.close(writer)


def keys(s3_admin: Any, bucket: str) -> list[str]:
    listed = s3_admin.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def json_params(**params: Any) -> bytes:
    return orjson.dumps(params)


# --- traversal and separators -------------------------------------------------------------------

TRAVERSAL = ["../x", "a/../../b", "./a", "/abs", "a//b", "..", ".", "a/.", "a/..", "a/", "//x"]


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize("pathname", TRAVERSAL)
async def test_traversal_pathnames_are_invalid_pathname_and_the_connection_keeps_serving(
    conn: Conn, tenant: RunningDaemon, s3_admin: Any, pathname: str, codec: str
) -> None:
    content = b"escape" if codec == "msgpack" else base64.b64encode(b"escape").decode()
    for method, params in [
        ("s3.Write", {"pathname": pathname, "content": content}),
        ("s3.Read", {"pathname": pathname}),
        ("s3.Delete", {"pathname": pathname}),
        ("s3.Copy", {"source_pathname": "usable/nothing", "dest_pathname": pathname}),
        ("s3.Move", {"source_pathname": pathname, "dest_pathname": "usable/x"}),
    ]:
        response = await conn.call(method, params, codec)
        assert response.is_error
        assert response.text.startswith("INVALID_PATHNAME: "), (method, response.text)
    await conn.usable()
    assert all(key.startswith(PREFIX) for key in keys(s3_admin, tenant.buckets["tenant"]))
    assert keys(s3_admin, tenant.buckets["other"]) == []


@pytest.mark.parametrize("prefix", ["../", "a/../../", "/", "./", "a//"])
async def test_traversal_list_prefixes_are_invalid_pathname(conn: Conn, prefix: str) -> None:
    text = await conn.error("s3.ListObjects", json_params(prefix=prefix))
    assert text.startswith("INVALID_PATHNAME: prefix is invalid"), text
    await conn.usable()


LITERAL_NAMES = {
    "backslash dot-dot": "a\\..\\..\\b",
    "backslash root": "..\\x",
    "fullwidth solidus": "\uff0f..\uff0fetc\uff0fpasswd",  # NFKC: /../etc/passwd
    "one-dot leader": "\u2024\u2024/x",  # NFKC: ../x
    "two-dot leader": "\u2025/y",  # NFKC: ../y
    "percent-encoded": "%2e%2e/x",
}


@pytest.mark.parametrize("pathname", LITERAL_NAMES.values(), ids=LITERAL_NAMES.keys())
async def test_lookalike_and_backslash_names_are_stored_verbatim_under_the_prefix(
    conn: Conn, tenant: RunningDaemon, s3_admin: Any, pathname: str
) -> None:
    content = base64.b64encode(b"lookalike").decode()
    written = await conn.call("s3.Write", {"pathname": pathname, "content": content})
    assert not written.is_error, written.text
    assert orjson.loads(written.body)["pathname"] == pathname
    # exactly the literal key under the prefix: not normalised, not resolved, not escaped
    assert keys(s3_admin, tenant.buckets["tenant"]) == [PREFIX + pathname]
    assert keys(s3_admin, tenant.buckets["other"]) == []
    read = await conn.call("s3.Read", {"pathname": pathname})
    assert base64.b64decode(orjson.loads(read.body)["content"]) == b"lookalike"
    listed = orjson.loads((await conn.call("s3.ListObjects", {})).body)
    assert [item["key"] for item in listed["objects"]] == [pathname]
    await conn.usable()


# --- NUL and control characters -----------------------------------------------------------------

CONTROL = ["a\x00b", "\x00", "a\nb", "a\rb", "\x1b[31mred", "a\x7fb", "a\tb", "a\u0085b"]


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize("pathname", CONTROL, ids=[repr(p) for p in CONTROL])
async def test_control_characters_are_invalid_pathname(
    conn: Conn, tenant: RunningDaemon, s3_admin: Any, pathname: str, codec: str
) -> None:
    content = b"x" if codec == "msgpack" else base64.b64encode(b"x").decode()
    response = await conn.call("s3.Write", {"pathname": pathname, "content": content}, codec)
    assert response.is_error
    assert response.text.startswith("INVALID_PATHNAME: pathname is invalid: "), response.text
    assert "control character" in response.text
    assert "\x00" not in response.text
    await conn.usable()
    assert keys(s3_admin, tenant.buckets["tenant"]) == [PREFIX + "usable/check.txt"]


async def test_invalid_utf8_pathname_under_msgpack_is_invalid_pathname(conn: Conn) -> None:
    body = b"\x81\xa8pathname\xa3\xff\xfe\xfd"  # {"pathname": <str with invalid UTF-8>}
    text = await conn.error("s3.Read", body, wire.MSGPACK_FLAG)
    assert text.startswith("INVALID_PATHNAME: "), text
    await conn.usable()


# --- overlong -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pathname",
    ["x" * 1025, "é" * 513, "x" * (1024 - len(PREFIX) + 1)],
    ids=["1025 bytes", "1026 UTF-8 bytes in 513 characters", "1025 bytes with the prefix"],
)
async def test_pathnames_over_1024_bytes_are_invalid_pathname(conn: Conn, pathname: str) -> None:
    text = await conn.error("s3.Read", json_params(pathname=pathname))
    assert text.startswith("INVALID_PATHNAME: pathname is invalid"), text
    await conn.usable()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_a_60mb_pathname_is_invalid_pathname_and_the_connection_keeps_serving(
    conn: Conn, codec: str
) -> None:
    huge = "a" * 60_000_000
    response = await conn.call("s3.Exists", {"pathname": huge}, codec)
    assert response.is_error
    assert response.text.startswith("INVALID_PATHNAME: "), response.text[:200]
    assert len(response.body) < 1000  # the name is not echoed
    response = await conn.call("s3.ListObjects", {"prefix": huge}, codec)
    assert response.text.startswith("INVALID_PATHNAME: "), response.text[:200]
    await conn.usable()


# --- deep nesting -------------------------------------------------------------------------------

DEPTH = 10_000


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEPTH + b"]" * DEPTH,
        b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
        b'{"pathname":' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        b'{"pathname":"x","config":' + b'{"k":' * DEPTH + b'"v"' + b"}" * DEPTH + b"}",
    ],
    ids=["array", "object", "in pathname", "in config"],
)
async def test_json_nested_10000_levels_is_invalid_request(conn: Conn, body: bytes) -> None:
    text = await conn.error("s3.Write", body)
    assert text.startswith("INVALID_REQUEST: "), text
    await conn.usable()


@pytest.mark.parametrize(
    "body",
    [
        b"\x91" * DEPTH + b"\xc0",
        b"\x81\xa1a" * DEPTH + b"\xc0",
        b"\x81\xa8pathname" + b"\x91" * DEPTH + b"\xc0",
    ],
    ids=["array", "map", "in pathname"],
)
async def test_msgpack_nested_10000_levels_is_invalid_request(conn: Conn, body: bytes) -> None:
    text = await conn.error("s3.Write", body, wire.MSGPACK_FLAG)
    assert text.startswith("INVALID_REQUEST: "), text
    await conn.usable()


# --- wrong types --------------------------------------------------------------------------------

WRONG_TYPES: list[tuple[str, dict[str, Any], str]] = [
    ("s3.Read", {"pathname": 42}, "pathname"),
    ("s3.Read", {"pathname": None}, "pathname"),
    ("s3.Read", {"pathname": ["a"]}, "pathname"),
    ("s3.Read", {"pathname": {"a": "b"}}, "pathname"),
    ("s3.Read", {"pathname": True}, "pathname"),
    ("s3.Read", {"bucket": ["tenant"], "pathname": "a"}, "bucket"),
    ("s3.Read", {"bucket": {"name": "tenant"}, "pathname": "a"}, "bucket"),
    ("s3.Read", {"bucket": 7, "pathname": "a"}, "bucket"),
    ("s3.Write", {"pathname": "a", "content": 12}, "content"),
    ("s3.Write", {"pathname": "a", "content": ["AAAA"]}, "content"),
    ("s3.Write", {"pathname": "a", "content": "!!not base64!!"}, "content"),
    ("s3.Write", {"pathname": "a", "content": "QQ==", "config": "owner=1"}, "config"),
    ("s3.Write", {"pathname": "a", "content": "QQ==", "config": {"k": 1}}, "config"),
    ("s3.SetVisibility", {"pathname": "a", "visibility": 1}, "visibility"),
    ("s3.ListObjects", {"max_keys": "10"}, "max_keys"),
    ("s3.ListObjects", {"max_keys": 1.5}, "max_keys"),
    ("s3.ListObjects", {"max_keys": True}, "max_keys"),
    ("s3.ListObjects", {"max_keys": -1}, "max_keys"),
    ("s3.ListObjects", {"prefix": 5}, "prefix"),
    ("s3.ListObjects", {"delimiter": []}, "delimiter"),
    ("s3.GetPublicURL", {"pathname": "a", "expires_in": True}, "expires_in"),
    ("s3.GetPublicURL", {"pathname": "a", "expires_in": "3600"}, "expires_in"),
    ("s3.GetPublicURL", {"pathname": "a", "expires_in": 1000.0}, "expires_in"),
    ("s3.GetPublicURL", {"pathname": "a", "expires_in": 1.5}, "expires_in"),
    ("s3.GetPublicURL", {"pathname": "a", "expires_in": [3600]}, "expires_in"),
    ("s3.Copy", {"source_pathname": 1, "dest_pathname": "b"}, "source_pathname"),
    ("s3.Move", {"source_pathname": "a", "dest_pathname": ["b"]}, "dest_pathname"),
    ("s3.RegisterBucket", {"name": 5, "server": "local", "bucket": "b"}, "name"),
]


# Under msgpack any string is raw content, so "!!not base64!!" is only wrong under JSON.
WRONG_TYPE_CASES = [
    (codec, method, params, field)
    for codec in ("json", "msgpack")
    for method, params, field in WRONG_TYPES
    if not (codec == "msgpack" and field == "content" and isinstance(params[field], str))
]


@pytest.mark.parametrize(
    ("codec", "method", "params", "field"),
    WRONG_TYPE_CASES,
    ids=[f"{c}-{m}-{f}-{type(p[f]).__name__}" for c, m, p, f in WRONG_TYPE_CASES],
)
async def test_wrong_field_types_are_invalid_request_naming_the_field(
    conn: Conn, method: str, params: dict[str, Any], field: str, codec: str
) -> None:
    response = await conn.call(method, params, codec)
    assert response.is_error
    assert response.text.startswith(f"INVALID_REQUEST: field '{field}"), response.text
    await conn.usable()


@pytest.mark.parametrize(
    "body", [b"[1,2]", b'"s3"', b"12", b"true", b'{"pathname": "a"', b"\xff\xfe", b"{}x"]
)
async def test_bodies_that_are_not_a_params_map_are_invalid_request(
    conn: Conn, body: bytes
) -> None:
    text = await conn.error("s3.Read", body)
    assert text.startswith("INVALID_REQUEST: "), text
    await conn.usable()


# --- unknown fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_misspelt_visibility_is_refused_naming_the_field_and_nothing_is_stored(
    conn: Conn, tenant: RunningDaemon, s3_admin: Any, codec: str
) -> None:
    content = b"secret" if codec == "msgpack" else base64.b64encode(b"secret").decode()
    params = {"pathname": "typo.txt", "content": content, "visiblity": "private"}
    response = await conn.call("s3.Write", params, codec)
    assert response.is_error
    assert response.text == "INVALID_REQUEST: field 'visiblity': unknown field"
    exists = await conn.call("s3.Exists", {"pathname": "typo.txt"}, codec)
    assert not exists.is_error, exists.text
    decoded = orjson.loads(exists.body) if codec == "json" else msgpack.unpackb(exists.body)
    assert decoded == {"exists": False}
    assert PREFIX + "typo.txt" not in keys(s3_admin, tenant.buckets["tenant"])
    await conn.usable()


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("s3.Read", {"pathname": "a", "pathnme": "b"}, "pathnme"),
        ("s3.ListObjects", {"max_key": 5}, "max_key"),
        ("s3.GetPublicURL", {"pathname": "a", "expires": 60}, "expires"),
        ("s3.Copy", {"source_pathname": "a", "dest_pathname": "b", "acl": "x"}, "acl"),
        ("s3.ListBuckets", {"verbose": True}, "verbose"),
        ("s3.RegisterBucket", {"name": "n", "server": "local", "bucket": "b", "x": 1}, "x"),
    ],
)
async def test_unknown_fields_are_invalid_request_naming_the_field(
    conn: Conn, method: str, params: dict[str, Any], field: str
) -> None:
    text = await conn.error(method, orjson.dumps(params))
    assert text == f"INVALID_REQUEST: field '{field}': unknown field"
    await conn.usable()


# --- method names and empty bodies --------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        b"\xff\xfe\xfd",
        b"s3.\xc3\x28",
        b"\xed\xa0\x80",
        b"s3.Read\x00",
        b"s3.read",
        b"",
        b"x" * 5000,
    ],
    ids=["invalid", "bad continuation", "encoded surrogate", "NUL", "case", "empty", "long"],
)
async def test_unknown_or_non_utf8_method_names_are_unknown_method_echoing_the_bytes(
    conn: Conn, method: bytes
) -> None:
    response = await conn.send(method, b"{}")  # send() checks the echoed method bytes
    assert response.is_error
    assert response.text.startswith("UNKNOWN_METHOD: "), response.text
    assert len(response.text) < 1000
    await conn.usable()


async def test_empty_bodies_mean_no_params(conn: Conn) -> None:
    listed = await conn.send("s3.ListBuckets", b"")
    assert not listed.is_error, listed.text
    assert orjson.loads(listed.body)["buckets"] == ["other", "tenant"]
    for codec in (wire.JSON_FLAG, wire.MSGPACK_FLAG):
        text = await conn.error("s3.Read", b"", codec)
        assert text == "INVALID_REQUEST: field 'pathname': required field is missing"
    await conn.usable()


async def test_one_connection_survives_every_bad_input_in_a_row(conn: Conn) -> None:
    """All the classes above, pipelined on one connection, then a good call."""
    bad = [
        ("s3.Read", json_params(pathname="../x")),
        ("s3.Read", json_params(pathname="a\x00b")),
        ("s3.Read", json_params(pathname="x" * 1025)),
        ("s3.Read", b"[" * DEPTH + b"]" * DEPTH),
        ("s3.Read", json_params(pathname=1)),
        ("s3.Write", json_params(pathname="a", content="QQ==", visiblity="private")),
        ("s3.GetPublicURL", json_params(pathname="a", expires_in="3600")),
        ("s3.Read", b""),
    ]
    frames = [wire.request(wire.JSON_FLAG, 100 + i, m, body) for i, (m, body) in enumerate(bad)]
    frames.append(wire.raw_request(wire.JSON_FLAG, 200, b"\xff", b"{}"))
    conn.writer.write(b"".join(frames))
    answers = [await wire.read_response(conn.reader, 60) for _ in frames]
    assert sorted(a.seq for a in answers) == [*range(100, 100 + len(bad)), 200]
    assert all(a.is_error for a in answers)
    assert not any(a.text.startswith("INTERNAL_ERROR") for a in answers)
    await conn.usable()


# --- found by the fuzzer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [b"\xa3\xff\xfe\xfd", b"\xa3a\x00b", b"\xa2a\n"],
    ids=["invalid UTF-8", "NUL", "newline"],
)
async def test_registerbucket_refuses_names_json_and_logs_cannot_carry(
    conn: Conn, name: bytes
) -> None:
    """A msgpack name that is not UTF-8 was registered; s3.ListBuckets under JSON then answered
    INTERNAL_ERROR for everyone, and the call's log line raised (surrogates in JSON)."""
    body = b"\x83\xa4name" + name + b"\xa6server\xa5local\xa6bucket\xa4phys"
    text = await conn.error("s3.RegisterBucket", body, wire.MSGPACK_FLAG)
    assert text.startswith("INVALID_REQUEST: field 'name'"), text
    listed = await conn.send("s3.ListBuckets", b"")
    assert not listed.is_error, listed.text
    assert orjson.loads(listed.body)["buckets"] == ["other", "tenant"]
    await conn.usable()

"""Standalone fuzzer: hostile Goridge frames against a real daemon over real sockets.

    python -m tests.fuzz --frames 1000000 [--seed N] [--connections K]

Starts moto's S3 server on 127.0.0.1:0 and the daemon as a subprocess on 127.0.0.1 (two
buckets), then sends fuzzed frames over several connections: mutated valid requests (flipped
bits, truncated payloads, wrong CRC, huge declared lengths, bad versions, wrong option counts,
odd flags) and well-framed requests with hostile bodies (random JSON/msgpack, wrong types, deep
nesting, huge strings and numbers, unknown methods and fields, traversal pathnames, NUL,
look-alike unicode), under both codecs.

Every frame sent is classified by this module's own reading of the Goridge v3 layout (not the
daemon's decoder): a *well-formed* frame must get exactly one well-formed answer (same seq and
method, the request's codec bits, a body that decodes, an error text ``CODE: ...`` with a known
code); a frame that *breaks the framing* must make the daemon close the connection without an
answer; a frame cut short is followed by a half-close and everything before it must still be
answered. Most frames fail validation before any S3 call; real S3 calls are kept rare.

Exit status 0 when the daemon survived and every check held, 1 otherwise: the daemon died, an
answer was not a well-formed frame, a well-formed request got no answer, an answer carried
INTERNAL_ERROR, the daemon logged a traceback, or an s3.Write/s3.Read round trip failed after
the run (both codecs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import orjson
import yaml

JSON, MSGPACK, ERROR, CONTROL = 0x08, 0x10, 0x40, 0x01
CODEC_BITS = 0x04 | 0x08 | 0x10 | 0x20 | 0x80
MAX_FRAME = 8 * 1024 * 1024  # the fuzzed daemon's rpc.max_frame_size
MAX_OVERSIZED_METHOD = 1024  # an oversized frame with a longer method name is a violation
ANSWER_TIMEOUT = 60.0
CLOSE_TIMEOUT = 20.0
START_TIMEOUT = 30.0
BATCH = 48
PROGRESS_EVERY = 100_000
TERMINAL_RATE = 0.03  # share of frames that break the framing or end mid-frame
KNOWN_CODES = frozenset(
    {
        "BUCKET_NOT_FOUND",
        "FILE_NOT_FOUND",
        "INVALID_CONFIG",
        "S3_OPERATION_FAILED",
        "PERMISSION_DENIED",
        "INVALID_PATHNAME",
        "BUCKET_ALREADY_EXISTS",
        "INVALID_VISIBILITY",
        "OPERATION_TIMEOUT",
        "INVALID_REQUEST",
        "PRECONDITION_FAILED",
        "UPLOAD_NOT_FOUND",
        "TOO_MANY_UPLOADS",
        "NO_SPACE_LEFT",
        "FRAME_TOO_LARGE",
        "UNKNOWN_METHOD",
        "UNSUPPORTED_CODEC",
        "SHUTTING_DOWN",
        "INTERNAL_ERROR",
    }
)
LOG_ALARMS = ("Traceback", "handler_failed", "Task exception was never retrieved", '"error"')
_PREFIX = struct.Struct("<BBI")
_TAIL = struct.Struct("<IBBII")


# --- frames, built and classified independently of s3rpc.goridge -------------------------------


def build_frame(
    flags: int,
    seq: int,
    method: bytes,
    body: bytes,
    *,
    version: int = 1,
    words: int = 5,
    length: int | None = None,
    crc: int | None = None,
    stream: int = 0,
    reserved: int = 0,
    method_len: int | None = None,
) -> bytes:
    payload = method + body
    prefix = _PREFIX.pack(
        ((version & 0xF) << 4) | (words & 0xF),
        flags & 0xFF,
        len(payload) if length is None else length,
    )
    crc = zlib.crc32(prefix) if crc is None else crc
    mlen = len(method) if method_len is None else method_len
    return prefix + _TAIL.pack(crc, stream, reserved, seq, mlen) + payload


@dataclass(frozen=True)
class Sent:
    """How the daemon must treat one unit of bytes: 'request', 'oversized' (answered
    FRAME_TOO_LARGE, its declared payload then skipped), 'violation' or 'incomplete'."""

    kind: str
    seq: int = 0
    method: bytes = b""
    flags: int = 0


def classify(unit: bytes) -> Sent:
    """This fuzzer's reading of the Goridge v3 RPC layout (docs/methods.md: what closes one)."""
    if len(unit) < 12:
        return Sent("incomplete")
    byte0, flags, length = _PREFIX.unpack_from(unit, 0)
    (crc,) = struct.unpack_from("<I", unit, 6)
    if zlib.crc32(unit[:6]) != crc or byte0 >> 4 != 1 or byte0 & 0xF != 5:
        return Sent("violation")
    if len(unit) < 20:
        return Sent("incomplete")
    seq, mlen = struct.unpack_from("<II", unit, 12)
    if mlen > length:
        return Sent("violation")
    if length > MAX_FRAME:
        if mlen > MAX_OVERSIZED_METHOD:
            return Sent("violation")  # too long to echo: nothing sensible to answer
        if len(unit) < 20 + mlen:
            return Sent("incomplete")
        return Sent("oversized", seq, unit[20 : 20 + mlen], flags)
    if len(unit) - 20 < length:
        return Sent("incomplete")
    assert len(unit) - 20 == length, "units are built whole"
    return Sent("request", seq, unit[20 : 20 + mlen], flags)


class ResponseError(AssertionError):
    """An answer that is not a well-formed Goridge RPC response."""


def parse_responses(buf: bytearray) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Whole response frames at the front of ``buf`` (consumed): (flags, seq, method, body)."""
    while len(buf) >= 20:
        byte0, flags, length = _PREFIX.unpack_from(buf, 0)
        crc, stream, reserved, seq, mlen = _TAIL.unpack_from(buf, 6)
        if byte0 != 0x15:
            raise ResponseError(f"response byte 0 is 0x{byte0:02x}")
        if zlib.crc32(bytes(buf[:6])) != crc:
            raise ResponseError("response header CRC is wrong")
        if (stream, reserved) != (0, 0):
            raise ResponseError("response bytes 10/11 are not zero")
        if mlen > length:
            raise ResponseError("response method length exceeds its payload")
        if len(buf) < 20 + length:
            return
        payload = bytes(buf[20 : 20 + length])
        del buf[: 20 + length]
        yield flags, seq, payload[:mlen], payload[mlen:]


# --- hostile values -----------------------------------------------------------------------------

REAL_METHODS = [
    "s3.Write",
    "s3.Read",
    "s3.Exists",
    "s3.Delete",
    "s3.GetMetadata",
    "s3.GetPublicURL",
    "s3.SetVisibility",
    "s3.Copy",
    "s3.Move",
    "s3.ListObjects",
    "s3.RegisterBucket",
    "s3.ListBuckets",
]
ODD_METHODS = [
    b"",
    b"s3.",
    b"s3.write",
    b"S3.Write",
    b"s3.Write ",
    b" s3.Write",
    b"s3.Write\x00",
    b"s3.Write\n",
    b"\xd1\x953.Write",  # Cyrillic dze
    b"s3\xef\xbc\x8eWrite",  # fullwidth full stop
    b"\xff\xfe\xfd",
    b"s3.\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"s3.Write" * 200,
    b"x" * 70000,
    b"s3.__init__",
    b"s3.Nope",
    b"%s%n%x",
    b"\x1b[2J",
]
BAD_PATHNAMES = [
    "",
    ".",
    "..",
    "../x",
    "a/../../b",
    "./a",
    "a/./b",
    "/abs",
    "//",
    "a//b",
    "a/",
    "a/..",
    "a\x00b",
    "\x00",
    "a\nb",
    "a\rb",
    "\x1b[31mred",
    "a\x7fb",
    "a\u0085b",
    "x" * 1025,
    "é" * 513,
    "a/" * 600,
]
ODD_VALID_PATHNAMES = [  # accepted by the pathname rules: they reach S3 (kept rare)
    "a\\..\\b",
    "..\\x",
    "\uff0f..\uff0fetc\uff0fpasswd",
    "\u2024\u2024/x",
    "\u2025/y",
    "..a",
    "a..",
    "%2e%2e/x",
    "a b",
    "\u202etxt.exe",
    "\U0001f600",
    "x" * 1000,
]
BAD_BUCKETS: list[Any] = [
    "nope",
    "uploads\x00",
    "UPLOADS",
    "uploads ",
    "../uploads",
    "x" * 5000,
    1,
    0,
    -1,
    True,
    False,
    1.5,
    [],
    ["uploads"],
    {"name": "uploads"},
]
WRONG_TYPES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1 << 63,
    -(1 << 63),
    (1 << 64) - 1,
    1.5,
    -0.0,
    1e308,
    "",
    "0",
    "true",
    [],
    [1, 2],
    {},
    {"a": "b"},
    [[[[[]]]]],
]
HOSTILE_STRINGS = [
    "",
    "\x00",
    "é",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "a" * 5000,
    "${HOME}",
    "$(id)",
    "'; DROP TABLE x; --",
    "{{7*7}}",
    "%00",
    "\\u0000",
]
VISIBILITIES: list[Any] = ["public", "private", "PUBLIC", "Private", "", "internal", "public\x00"]
EXPIRES: list[Any] = [
    0,
    1,
    3600,
    604800,
    604801,
    -1,
    1 << 62,
    True,
    False,
    "3600",
    1000.0,
    1.5,
    None,
]
MAX_KEYS: list[Any] = [0, 1, 1000, 1001, -1, 1 << 62, "10", 1.5, True, None]
ENDPOINTS: list[Any] = [
    "http://169.254.169.254",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]",
    "http://[fd00:ec2::254]",
    "http://100.100.100.200",
    "http://metadata.google.internal",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_",
    "not a url",
    "http://",
    "http://127.0.0.1:9",
    "http://user:pass@127.0.0.1:9",
    "",
    "x" * 3000,
]
REGIONS: list[Any] = ["us-east-1", "", "mars-north-1", "../../", "us-east-1\n", "x" * 300]
UNKNOWN_FIELDS = ["visiblity", "pathnme", "__proto__", "constructor", "", "\x00", "a" * 1000]


class Hostile:
    """Deterministic (given a seed) generator of request bodies and frames."""

    def __init__(self, rng: random.Random, s3_rate: float) -> None:
        self.rng = rng
        self.s3_rate = s3_rate
        self.seq = 0

    # values ---------------------------------------------------------------------------------

    def pick(self, items: list[Any]) -> Any:
        return items[self.rng.randrange(len(items))]

    def wrong(self) -> Any:
        r = self.rng.random()
        if r < 0.7:
            return self.pick(WRONG_TYPES)
        if r < 0.9:
            return self.pick(HOSTILE_STRINGS)
        return self.nested(self.rng.randrange(1, 60))

    def nested(self, depth: int) -> Any:
        value: Any = "x"
        for _ in range(depth):
            value = [value] if self.rng.random() < 0.5 else {"k": value}
        return value

    def bad_pathname(self) -> Any:
        r = self.rng.random()
        if r < 0.75:
            return self.pick(BAD_PATHNAMES)
        if r < 0.95:
            return self.wrong()
        return "y" * self.rng.choice([1025, 4096, 4096, 4096, 300_000])

    def good_pathname(self) -> str:
        if self.rng.random() < 0.3:
            return self.pick(ODD_VALID_PATHNAMES)
        return f"fuzz/{self.rng.randrange(64)}.bin"

    def content(self, codec: int) -> Any:
        r = self.rng.random()
        raw = self.rng.randbytes(self.rng.randrange(0, 64))
        if r < 0.7:
            return base64.b64encode(raw).decode() if codec == JSON else raw
        if r < 0.8:
            return "!!not base64!!"
        if r < 0.85:
            return "QUJD="  # bad padding
        return self.wrong()

    def meta(self) -> Any:
        return self.pick(
            [
                {"owner": "42"},
                {"": "x"},
                {"a b": "c"},
                {"k": "é"},
                {"k": 1},
                {"k": None},
                {"k": ["x"]},
                {"k:v": "x"},
                {"k": "\n"},
                "owner=42",
                [],
                {"x" * 3000: "y"},
            ]
        )

    # params -----------------------------------------------------------------------------------

    def params(self, method: str, codec: int) -> dict[str, Any]:
        """Params for ``method``; unless this call is allowed to reach S3, one field is poisoned
        so validation fails before any S3 request."""
        rng = self.rng
        allow_s3 = rng.random() < self.s3_rate
        p: dict[str, Any] = {}
        if method == "s3.ListBuckets":
            if rng.random() < 0.5:
                p[self.pick(UNKNOWN_FIELDS)] = self.wrong()
            return p
        if method == "s3.RegisterBucket":
            return self.register_params()
        if method in ("s3.Copy", "s3.Move"):
            p["source_bucket"] = rng.choice(["uploads", "private-docs", None])
            p["source_pathname"] = self.good_pathname()
            p["dest_bucket"] = rng.choice(["uploads", "private-docs", None])
            p["dest_pathname"] = self.good_pathname()
            poisonable = ["source_bucket", "source_pathname", "dest_bucket", "dest_pathname"]
        elif method == "s3.ListObjects":
            p["bucket"] = rng.choice(["uploads", "private-docs"])
            p["prefix"] = rng.choice(["", "fuzz/", "a/b/"])
            poisonable = ["bucket", "prefix"]
        else:
            p["bucket"] = rng.choice(["uploads", "private-docs", None, ""])
            p["pathname"] = self.good_pathname()
            poisonable = ["bucket", "pathname"]
        # optional fields, often wrong
        extras: dict[str, Callable[[], Any]] = {
            "s3.Write": lambda: {"content": self.content(codec)},
            "s3.GetPublicURL": lambda: {"expires_in": self.pick(EXPIRES)},
            "s3.SetVisibility": lambda: {"visibility": self.pick(VISIBILITIES)},
            "s3.ListObjects": lambda: {
                "delimiter": rng.choice(["", "/", self.wrong()]),
                "max_keys": self.pick(MAX_KEYS),
                "continuation_token": rng.choice(["", "bogus", self.wrong()]),
            },
        }
        if method in extras:
            p.update(extras[method]())
        if method in ("s3.Write", "s3.Copy", "s3.Move") and rng.random() < 0.5:
            p["visibility"] = self.pick(VISIBILITIES)
        if method in ("s3.Write", "s3.Copy", "s3.Move") and rng.random() < 0.3:
            p["config"] = self.meta()
        if rng.random() < 0.1:
            p[self.pick(UNKNOWN_FIELDS)] = self.wrong()
        if rng.random() < 0.1:  # a wrong type for a random field
            p[rng.choice(list(p))] = self.wrong()
        if rng.random() < 0.05:  # a required field missing
            p.pop(rng.choice(list(p)), None)
        if method != "s3.GetPublicURL" and not allow_s3:  # GetPublicURL never calls S3
            target = rng.choice(poisonable)
            if "pathname" in target or target == "prefix":
                p[target] = self.bad_pathname()
            else:
                p[target] = self.pick(BAD_BUCKETS)
        return p

    def register_params(self) -> dict[str, Any]:
        rng = self.rng
        p: dict[str, Any] = {
            "name": rng.choice(["uploads", "fuzzreg", "", None, 1, "x" * 500, "a\x00"]),
            "bucket": rng.choice(["phys", "", None, 7]),
        }
        for key, pool in (
            ("server", ["local", "nope", "", None, 1]),
            ("endpoint", ENDPOINTS),
            ("region", REGIONS),
            ("visibility", VISIBILITIES),
            ("prefix", ["", "p/", "../", "/abs", None]),
            ("max_concurrent_operations", [0, -1, 1 << 62, "10", None]),
            ("part_size", [0, 1, 5 * 1024 * 1024, "x"]),
            ("visibility_mode", ["acl", "none", "both", 1]),
            (
                "credentials",
                [{"key": "k"}, {"key": 1, "secret": []}, "k:s", [], {"token": {}}, {"x": "y"}],
            ),
        ):
            if rng.random() < 0.4:
                p[key] = self.pick(pool)
        if rng.random() < 0.2:
            p[self.pick(UNKNOWN_FIELDS)] = self.wrong()
        # Never a registration that could succeed: either the name or the bucket is unusable,
        # or it would shadow an existing bucket (BUCKET_ALREADY_EXISTS).
        usable_name = isinstance(p["name"], str) and p["name"] not in ("", "uploads")
        if usable_name and isinstance(p["bucket"], str) and p["bucket"]:
            p["bucket"] = self.pick([None, 7, [], "", {"x": 1}])
        return p

    # bodies -----------------------------------------------------------------------------------

    def encode(self, value: Any, codec: int) -> bytes:
        if codec == MSGPACK:
            return bytes(msgpack.packb(value, use_bin_type=self.rng.random() < 0.5))
        return orjson.dumps(value)

    def raw_body(self, codec: int) -> bytes:
        """Bodies that are not a plain params map."""
        rng = self.rng
        depth = rng.choice([1025, 5000, 10_000, 100_000])
        choices: list[Callable[[], bytes]] = [
            lambda: rng.randbytes(rng.randrange(1, 200)),
            lambda: b"[" * depth + b"]" * depth,
            lambda: b'{"a":' * depth + b"1" + b"}" * depth,
            lambda: b"\x91" * depth + b"\xc0",
            lambda: b"\x81\xa1a" * depth + b"\xc0",
            lambda: b'{"pathname": "x", "max_keys": 1' + b"0" * rng.randrange(20, 5000) + b"}",
            lambda: b'{"expires_in": -' + b"9" * rng.randrange(20, 400) + b"}",
            lambda: b'{"pathname": 1e999}',
            lambda: b'{"pathname": NaN}',
            lambda: b'{"pathname": "\\ud800"}',
            lambda: b'{"pathname": "a", "pathname": "../b"}',
            lambda: b'{"pathname": "a"',
            lambda: b"\xef\xbb\xbf{}",
            lambda: b"null",
            lambda: b"[]",
            lambda: b"{}",
            lambda: b'"s3"',
            lambda: b"12",
            lambda: b"[1,2,3]",
            lambda: b"\xdd\xff\xff\xff\xff",  # msgpack: array of 2^32-1 items, none sent
            lambda: b"\xdf\xff\xff\xff\xff",
            lambda: b"\x81\x91\x01\x01",  # msgpack: a list as a map key
            lambda: b"\x81\x81\x01\x01\x01",  # a map as a map key
            lambda: b"\x81\xc4\x08pathname\xa3abc",  # bin key
            lambda: b"\x81\xa8pathname\xa3\xff\xfe\xfd",  # invalid UTF-8 str
            lambda: b"\x81\xa8pathname\xd6\xff\x00\x00\x00\x01",  # timestamp ext
            lambda: b"\x81\xa8pathname\xd4\x05\x00",  # ext type
            lambda: b"\x82\x01\x02\xc3\xc2",  # int and bool keys
            lambda: b"\x81\xa8pathname\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
            lambda: b"\xc1",
            lambda: b"\x81\xa8pathname\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
            lambda: b"\x81\xa4name\xa3\xed\xa0\x80",  # encoded surrogate as a bucket name
            lambda: b'{"pathname":' + b"[" * depth + b"]" * depth + b"}",
            lambda: b"\x81\xa8pathname" + b"\x91" * depth + b"\xc0",
            lambda: b"A" * rng.choice([100_000, 1_000_000]) if rng.random() < 0.1 else b"A" * 2000,
            lambda: self.large_content_body(codec),
            lambda: self.large_content_body(codec),
        ]
        return rng.choice(choices)()

    def large_content_body(self, codec: int) -> bytes:
        """An s3.Write body whose content is large enough to be taken from the frame without
        a copy (msgpack ``str``/``bin``, JSON base64 with or without PHP's ``\\/``), made odd:
        a poisoned pathname (no S3 call), junk in or around the content, a nested or repeated
        ``content`` key, a cut."""
        rng = self.rng
        content = rng.randbytes(rng.choice([70_000, 200_000]))
        params: dict[str, Any] = {"pathname": self.bad_pathname(), "content": content}
        if rng.random() < 0.3:
            params["config"] = {"content": content[:100]}
        if codec == MSGPACK:
            body = bytes(msgpack.packb(params, use_bin_type=rng.random() < 0.5))
        else:
            params["content"] = base64.b64encode(content).decode()
            params.get("config", {}).pop("content", None)
            body = orjson.dumps(params)
            if rng.random() < 0.5:
                body = body.replace(b"/", b"\\/")
        edits: list[Callable[[bytes], bytes]] = [
            lambda b: b,
            lambda b: b[: rng.randrange(len(b))],
            lambda b: b + rng.randbytes(rng.randrange(1, 8)),
            lambda b: b.replace(b"content", b"content", 1)[:-1] + b',"content":"QUFB"}',
            lambda b: b[:200] + b"\\u0041" + b[200:],
            lambda b: b[:300] + b'"' + b[301:],
            lambda b: b[:-300] + b"!=" + b[-298:],
        ]
        return rng.choice(edits)(body)

    def body(self, method: str, codec: int) -> bytes:
        if self.rng.random() < 0.15:
            return self.raw_body(codec)
        params = self.params(method, codec)
        if self.rng.random() < 0.02 and params:  # a non-UTF-8 key under msgpack
            params[b"\xff" + self.rng.randbytes(3)] = "x"  # type: ignore[index]
            return bytes(msgpack.packb(params, use_bin_type=True))
        return self.encode(params, codec)

    # frames -----------------------------------------------------------------------------------

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def request(self) -> tuple[int, bytes, bytes]:
        rng = self.rng
        codec = JSON if rng.random() < 0.5 else MSGPACK
        if rng.random() < 0.06:
            method = self.pick(ODD_METHODS)
            name = "s3.Write"
        else:
            name = self.pick(REAL_METHODS)
            method = name.encode()
        return codec, method, self.body(name, codec)

    def unit(self) -> bytes:
        """One unit of bytes: a frame, possibly mutated (see :func:`classify` for its fate)."""
        rng = self.rng
        codec, method, body = self.request()
        seq = self.next_seq()
        # r < 0.92: the frame stays well framed; above: it ends the connection (TERMINAL_RATE)
        r = 0.92 + rng.random() * 0.08 if rng.random() < TERMINAL_RATE else rng.random() * 0.92
        if r < 0.60:
            return build_frame(codec, seq, method, body)
        if r < 0.72:  # flipped bits in the payload: still well framed
            data = bytearray(method + body)
            for _ in range(rng.randrange(1, 9)):
                if data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return build_frame(codec, seq, bytes(data[: len(method)]), bytes(data[len(method) :]))
        if r < 0.77:  # payload truncated, length corrected
            cut = rng.randrange(0, len(body) + 1)
            return build_frame(codec, seq, method, body[:cut])
        if r < 0.82:  # method length moved within the payload
            payload = method + body
            return build_frame(
                codec, seq, b"", payload, method_len=rng.randrange(0, len(payload) + 1)
            )
        if r < 0.88:  # odd flags (raw, gob, proto, none, several codecs, error, control)
            flags = rng.choice([0, 0x04, 0x20, 0x80, 0x18, 0xFF, 0x01 | codec, 0x40 | codec])
            return build_frame(flags, seq, method, body)
        if r < 0.92:  # stream and reserved bytes set
            return build_frame(codec, seq, method, body, stream=rng.randrange(256), reserved=255)
        if r < 0.935:
            return build_frame(codec, seq, method, body, crc=rng.getrandbits(32))
        if r < 0.945:
            return build_frame(codec, seq, method, body, version=rng.choice([0, 2, 3, 15]))
        if r < 0.955:
            words = rng.choice([0, 1, 2, 3, 4, 6, 15])
            return build_frame(codec, seq, method, body, words=words)
        if r < 0.965:
            return build_frame(
                codec, seq, method, body, length=rng.choice([MAX_FRAME + 1, 0xFFFFFFFF])
            )
        if r < 0.97:  # declared longer than sent, within the limit: incomplete
            return build_frame(
                codec,
                seq,
                method,
                body,
                length=len(method + body) + 1 + rng.randrange(MAX_FRAME - len(method + body)),
            )
        if r < 0.975:  # method length beyond the payload
            return build_frame(codec, seq, method, body, method_len=len(method + body) + 1)
        if r < 0.985:  # bits flipped anywhere in the first 20 bytes
            frame = bytearray(build_frame(codec, seq, method, body))
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(20)] ^= 1 << rng.randrange(8)
            return bytes(frame)
        if r < 0.99:  # cut anywhere
            frame = build_frame(codec, seq, method, body)
            return frame[: rng.randrange(len(frame))]
        return rng.randbytes(rng.randrange(1, 64))  # garbage


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Summary:
    seed: int
    frames: int = 0
    requests: int = 0
    answered: int = 0
    violations: int = 0
    closed_on_violation: int = 0
    oversized: int = 0
    incomplete: int = 0
    abandoned: int = 0
    connections: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(text)

    def report(self) -> str:
        lines = [
            f"frames sent: {self.frames}",
            f"well-formed requests: {self.requests}, answered: {self.answered}",
            f"framing violations sent: {self.violations}, "
            f"connections closed by the server for them: {self.closed_on_violation}",
            f"oversized frames (answered FRAME_TOO_LARGE): {self.oversized}",
            f"incomplete frames before a half-close: {self.incomplete}",
            f"connections abandoned with calls in flight: {self.abandoned}",
            f"connections opened: {self.connections}",
            "answers by code: "
            + ", ".join(f"{code}={n}" for code, n in sorted(self.codes.items())),
        ]
        lines += [f"FAILURE: {text}" for text in self.failures]
        return "\n".join(lines)


def _describe(unit: bytes) -> str:
    return repr(unit[:160]) + (f"... ({len(unit)} bytes)" if len(unit) > 160 else "")


class Conn:
    def __init__(self, host: str, port: int, summary: Summary) -> None:
        self.host, self.port, self.summary = host, port, summary
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buf = bytearray()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 20), START_TIMEOUT
        )
        self.buf = bytearray()
        self.summary.connections += 1

    def drop(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def read_answers(
        self, expected: dict[int, collections.deque[tuple[bytes, int, bytes]]], until_eof: bool
    ) -> bool:
        """Read until every expected seq is answered (and EOF if ``until_eof``); False if not."""
        assert self.reader is not None
        s = self.summary
        pending = sum(len(v) for v in expected.values())
        deadline = time.monotonic() + ANSWER_TIMEOUT
        eof = False
        while pending or (until_eof and not eof):
            remaining = deadline - time.monotonic()
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 18), max(remaining, 0.01))
            except TimeoutError:
                s.fail(f"{pending} well-formed request(s) got no answer within {ANSWER_TIMEOUT}s")
                return False
            except ConnectionError as exc:
                s.fail(f"connection reset with {pending} request(s) unanswered: {exc!r}")
                return False
            if not data:
                eof = True
                if pending:
                    s.fail(f"server closed the connection with {pending} request(s) unanswered")
                    return False
                break
            self.buf += data
            try:
                for flags, seq, method, body in parse_responses(self.buf):
                    queue = expected.get(seq)
                    if not queue:
                        s.fail(f"answer for a seq that was not asked: {seq}")
                        return False
                    # seq may repeat (a flipped header bit): match the echoed method too
                    match = next((item for item in queue if item[0] == method), queue[0])
                    queue.remove(match)
                    req_method, req_flags, unit = match
                    pending -= 1
                    s.answered += 1
                    self.check_answer(flags, method, body, req_method, req_flags, unit)
            except ResponseError as exc:
                s.fail(f"malformed answer: {exc}")
                return False
        if self.buf:
            s.fail(f"{len(self.buf)} stray bytes after the last answer")
            return False
        return True

    def check_answer(
        self, flags: int, method: bytes, body: bytes, req_method: bytes, req_flags: int, unit: bytes
    ) -> None:
        s = self.summary
        if method != req_method:
            s.fail(f"answer echoes method {method[:60]!r}, asked {req_method[:60]!r}")
        if (flags & CODEC_BITS) != (req_flags & CODEC_BITS):
            s.fail(f"answer flags 0x{flags:02x} for request flags 0x{req_flags:02x}")
        if not body:
            s.fail("an answer with an empty body")
            return
        if flags & ERROR:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                s.fail(f"error text is not UTF-8: {body[:80]!r}")
                return
            code = text.split(":", 1)[0]
            if code not in KNOWN_CODES:
                s.fail(f"error text without a known code: {text[:120]!r}")
                return
            s.codes[code] += 1
            if code == "INTERNAL_ERROR":
                s.fail(f"INTERNAL_ERROR for {_describe(unit)}: {text[:200]}")
            return
        s.codes["ok"] += 1
        try:
            value = msgpack.unpackb(body, raw=False) if req_flags & MSGPACK else orjson.loads(body)
        except Exception as exc:
            s.fail(f"success body does not decode ({exc!r}) for {_describe(unit)}")
            return
        if not isinstance(value, dict):
            s.fail(f"success body is not a map: {value!r:.100}")

    async def expect_close(self, unit: bytes) -> None:
        assert self.reader is not None
        assert self.writer is not None
        s = self.summary
        self.writer.write(unit)
        try:
            await asyncio.wait_for(self.writer.drain(), CLOSE_TIMEOUT)
            data = await asyncio.wait_for(self.reader.read(1 << 16), CLOSE_TIMEOUT)
        except TimeoutError:
            s.fail(f"server did not close after a framing violation: {_describe(unit)}")
            data = None
        except ConnectionError:
            data = b""
        if data == b"":
            s.closed_on_violation += 1
        elif data is not None:
            s.fail(f"server answered a framing violation with {data[:60]!r}: {_describe(unit)}")
        self.drop()


async def fuzz_connection(
    host: str, port: int, frames: int, rng: random.Random, summary: Summary, s3_rate: float
) -> None:
    gen = Hostile(rng, s3_rate)
    conn = Conn(host, port, summary)
    sent = 0
    while sent < frames and len(summary.failures) < 20:
        if conn.writer is None:
            await conn.open()
        assert conn.writer is not None
        expected: dict[int, collections.deque[tuple[bytes, int, bytes]]] = {}
        out: list[bytes] = []
        terminal: tuple[str, bytes] | None = None
        for _ in range(min(BATCH, frames - sent)):
            unit = gen.unit()
            sent += 1
            summary.frames += 1
            if summary.frames % PROGRESS_EVERY == 0:
                print(f"... {summary.frames} frames", file=sys.stderr, flush=True)
            fate = classify(unit)
            if fate.kind in ("request", "oversized"):
                summary.requests += 1
                out.append(unit)
                expected.setdefault(fate.seq, collections.deque()).append(
                    (fate.method, fate.flags, unit)
                )
                if fate.kind == "request":
                    continue
                # Answered, then the rest of its declared payload is skipped: the connection
                # is done for this fuzzer (it will not send megabytes of filler).
                summary.oversized += 1
            terminal = (fate.kind, unit)
            break
        if terminal is not None and terminal[0] == "incomplete":
            summary.incomplete += 1
            out.append(terminal[1])
        abandon = terminal is None and rng.random() < 0.003
        try:
            conn.writer.writelines(out)
            if terminal is not None and terminal[0] == "incomplete":
                conn.writer.write_eof()
            await asyncio.wait_for(conn.writer.drain(), ANSWER_TIMEOUT)
        except (ConnectionError, TimeoutError) as exc:
            summary.fail(f"could not send a batch: {exc!r}")
            conn.drop()
            continue
        if abandon:  # the client vanishes with calls in flight
            summary.abandoned += 1
            summary.requests -= sum(len(v) for v in expected.values())
            conn.drop()
            continue
        half_closed = terminal is not None and terminal[0] == "incomplete"
        ok = await conn.read_answers(expected, until_eof=half_closed)
        if not ok:
            conn.drop()
            continue
        if terminal is None:
            continue
        if terminal[0] == "violation":
            summary.violations += 1
            await conn.expect_close(terminal[1])
        else:
            conn.drop()
    conn.drop()


async def run_fuzz(
    address: tuple[str, int], frames: int, seed: int, connections: int, s3_rate: float = 0.01
) -> Summary:
    summary = Summary(seed)
    host, port = address
    per = [
        frames // connections + (1 if i < frames % connections else 0) for i in range(connections)
    ]
    await asyncio.gather(
        *(
            fuzz_connection(host, port, n, random.Random(f"{seed}/{i}"), summary, s3_rate)
            for i, n in enumerate(per)
        )
    )
    return summary


async def round_trip(address: tuple[str, int], summary: Summary) -> None:
    """After the run: s3.Write then s3.Read of random bytes under both codecs, on one connection."""
    from s3rpc.client import AsyncClient

    host, port = address
    try:
        for codec in ("json", "msgpack"):
            client = await AsyncClient.connect(f"tcp://{host}:{port}", codec=codec, timeout=10)
            try:
                data = os.urandom(4096)
                for bucket in ("uploads", "private-docs"):
                    path = f"after-fuzz/{codec}.bin"
                    params = {"bucket": bucket, "pathname": path}
                    # the client carries bytes as the codec does (base64 under JSON)
                    await client.call("s3.Write", {**params, "content": data}, timeout=30)
                    got = await client.call("s3.Read", params, timeout=30)
                    if got.get("content") != data:
                        summary.fail(f"round trip under {codec} returned different bytes")
            finally:
                await client.close()
    except Exception as exc:
        summary.fail(f"round trip after the run failed: {exc!r}")


# --- daemon and S3 server -----------------------------------------------------------------------


def daemon_config(endpoint: str, buckets: dict[str, str]) -> dict[str, Any]:
    return {
        "rpc": {"listen": "tcp://127.0.0.1:0", "max_frame_size": MAX_FRAME},
        "s3": {
            "default": "uploads",
            "operation_timeout": 30,
            "shutdown_timeout": 5,
            "servers": {
                "local": {
                    "region": "us-east-1",
                    "endpoint": endpoint,
                    "credentials": {"key": "fuzz-access-key", "secret": "fuzz-secret-key"},
                }
            },
            "buckets": {
                "uploads": {
                    "server": "local",
                    "bucket": buckets["uploads"],
                    "visibility": "public",
                },
                "private-docs": {
                    "server": "local",
                    "bucket": buckets["private-docs"],
                    "prefix": "tenant/",
                },
            },
        },
        "logs": {"level": "info", "format": "json"},
    }


_SERVE = """
import sys
from s3rpc.config import load_config
from s3rpc.logs import configure_logging
from s3rpc.app import serve
config = load_config(sys.argv[1])
configure_logging(config.logs.level, config.logs.format)
def ready(app):
    print("FUZZ-ADDRESS " + app.server.bound, file=sys.stderr, flush=True)
sys.exit(serve(config, on_ready=ready))
"""


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    # one line per S3 request, and a traceback per moto bug (bogus continuation tokens)
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    address: tuple[str, int]
    stdout: Path
    stderr: Path

    def log_alarms(self) -> list[str]:
        """Log lines that mean a bug: tracebacks (with their exception line), handler failures."""
        found = []
        for path in (self.stdout, self.stderr):
            in_traceback = False
            with path.open("rb") as fh:
                for raw in fh:
                    line = raw.decode("utf-8", "replace").rstrip()
                    if in_traceback and line and not line[0].isspace():
                        found.append(f"traceback ending in: {line[:400]}")
                        in_traceback = False
                    if line.startswith("Traceback"):
                        in_traceback = True
                    elif not line.startswith("FUZZ-ADDRESS") and any(
                        alarm in line for alarm in LOG_ALARMS
                    ):
                        found.append(line[:400])
        return found


@contextlib.contextmanager
def daemon_process(endpoint: str, workdir: Path) -> Iterator[Daemon]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="fuzz-access-key",
        aws_secret_access_key="fuzz-secret-key",
    )
    buckets = {}
    for name in ("uploads", "private-docs"):
        physical = f"fuzz-{name}-{os.urandom(4).hex()}"
        s3.create_bucket(Bucket=physical)
        buckets[name] = physical
    config = workdir / "rr.yaml"
    config.write_text(yaml.safe_dump(daemon_config(endpoint, buckets)))
    stdout, stderr = workdir / "daemon.out", workdir / "daemon.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(config)], stdout=out, stderr=err
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        address = None
        while address is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start:\n{stderr.read_text()[-2000:]}")
            for line in stderr.read_text(errors="replace").splitlines():
                if line.startswith("FUZZ-ADDRESS tcp://"):
                    host, port = line.split("//", 1)[1].rsplit(":", 1)
                    address = (host, int(port))
            time.sleep(0.05)
        yield Daemon(process, address, stdout, stderr)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def fuzz(
    frames: int,
    seed: int,
    connections: int,
    endpoint: str | None = None,
    s3_rate: float = 0.01,
    echo: Callable[[str], None] = print,
) -> Summary:
    """The whole run: S3 server (unless ``endpoint`` is given), daemon, frames, checks."""
    echo(f"seed: {seed}")
    with contextlib.ExitStack() as stack:
        if endpoint is None:
            endpoint = stack.enter_context(moto_server())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3rpc-fuzz-")))
        daemon = stack.enter_context(daemon_process(endpoint, workdir))

        async def main() -> Summary:
            summary = await run_fuzz(daemon.address, frames, seed, connections, s3_rate)
            if daemon.process.poll() is not None:
                summary.fail(f"the daemon died (exit status {daemon.process.returncode})")
            else:
                await round_trip(daemon.address, summary)
            return summary

        summary = _run(main())
        if daemon.process.poll() is not None:
            summary.fail(f"the daemon died (exit status {daemon.process.returncode})")
        daemon.process.terminate()
        try:
            status = daemon.process.wait(30)
        except subprocess.TimeoutExpired:
            summary.fail("the daemon did not exit within 30 s of SIGTERM")
        else:
            if status != 0:
                summary.fail(f"the daemon exited with status {status} after SIGTERM")
        for line in daemon.log_alarms()[:10]:
            if f"daemon log: {line}" not in summary.failures:
                summary.fail(f"daemon log: {line}")
        if summary.failures:  # keep the daemon's output for the post-mortem
            keep = Path(tempfile.mkdtemp(prefix=f"s3rpc-fuzz-{seed}-"))
            for path in (daemon.stdout, daemon.stderr):
                keep.joinpath(path.name).write_bytes(path.read_bytes())
            echo(f"daemon output kept in {keep}")
    return summary


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--s3-rate", type=float, default=0.01, help="share of calls allowed to reach S3"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    started = time.monotonic()
    summary = fuzz(args.frames, seed, max(1, args.connections), s3_rate=args.s3_rate)
    print(summary.report())
    print(f"wall time: {time.monotonic() - started:.1f} s")
    print(
        f"seed: {seed} (rerun: python -m tests.fuzz --frames {args.frames} --seed {seed} "
        f"--connections {args.connections})"
    )
    print("FAILED" if summary.failures else "OK")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Pathname validation and the prefix join/strip."""

from __future__ import annotations

import pytest

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.pathnames import (
    MAX_KEY_BYTES,
    join_key,
    strip_prefix,
    validate_list_prefix,
    validate_pathname,
)


@pytest.mark.parametrize(
    "pathname",
    ["a.txt", "dir/sub/a.txt", "a..b.txt", "..a", "a..", "ünï cødé/日本.txt", "a+b %20#?.txt", "x"],
)
def test_valid_pathnames_are_accepted(pathname: str) -> None:
    assert validate_pathname(pathname) == pathname


@pytest.mark.parametrize(
    ("pathname", "why"),
    [
        ("", "empty"),
        ("/abs.txt", "start with '/'"),
        ("a//b.txt", "empty segment"),
        ("dir/", "empty segment"),
        ("./a.txt", "'.' segment"),
        ("a/../../etc/passwd", "'..' segment"),
        ("..", "'..' segment"),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\x7fb", "U+007F"),
        ("a\udcffb", "UTF-8"),
    ],
)
def test_invalid_pathnames_say_why(pathname: str, why: str) -> None:
    with pytest.raises(S3RpcError) as info:
        validate_pathname(pathname)
    assert info.value.code is ErrorCode.INVALID_PATHNAME
    assert why in info.value.message


def test_key_length_counts_prefix_in_utf8_bytes() -> None:
    prefix = "pre/"
    fits = "é" * ((MAX_KEY_BYTES - len(prefix)) // 2)
    assert join_key(prefix, fits) == prefix + fits
    with pytest.raises(S3RpcError) as info:
        join_key(prefix, fits + "xx")
    assert info.value.code is ErrorCode.INVALID_PATHNAME
    assert "1024" in info.value.message


def test_list_prefix_may_be_empty_or_end_with_slash() -> None:
    assert validate_list_prefix("") == ""
    assert validate_list_prefix("photos/") == "photos/"
    assert validate_list_prefix("photos/ph") == "photos/ph"
    for bad in ("/x", "../", "a/../", "a//", "a\x01"):
        with pytest.raises(S3RpcError):
            validate_list_prefix(bad)


def test_strip_prefix_returns_relative_key() -> None:
    assert strip_prefix("app/", "app/a/b.txt") == "a/b.txt"
    assert strip_prefix("", "a.txt") == "a.txt"

"""Pathname rules: what a relative object name may look like, and the bucket-prefix join/strip.

A *pathname* is what PHP sends (``photos/2024/a.jpg``); a *key* is the full S3 key, the bucket's
configured ``prefix`` followed by the pathname. The prefix is always applied and can never be
escaped, because a pathname has no ``.``/``..``/empty segments and no leading ``/``.
"""

from __future__ import annotations

import unicodedata

from s3rpc.errors import ErrorCode, S3RpcError

MAX_KEY_BYTES = 1024
#: A longer text can never fit in MAX_KEY_BYTES; refused before any character is looked at.
MAX_CHARS = MAX_KEY_BYTES


def _invalid(field: str, why: str) -> S3RpcError:
    return S3RpcError(ErrorCode.INVALID_PATHNAME, f"{field} is invalid: {why}")


def _check_text(value: str, field: str) -> None:
    # Length first, in constant time: a 60 MB name must cost no more than a short one.
    if len(value) > MAX_CHARS:
        raise _invalid(field, f"it is longer than {MAX_CHARS} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(field, "it is not valid UTF-8") from None
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise _invalid(field, f"it contains the control character U+{ord(ch):04X}")


def _check_segments(segments: list[str], field: str) -> None:
    for seg in segments:
        if seg == "":
            raise _invalid(field, "it contains an empty segment ('//' or a trailing '/')")
        if seg in (".", ".."):
            raise _invalid(field, f"it contains a '{seg}' segment")


def validate_pathname(pathname: str, field: str = "pathname") -> str:
    """Check a relative object pathname; return it unchanged or raise INVALID_PATHNAME."""
    if pathname == "":
        raise _invalid(field, "it is empty")
    _check_text(pathname, field)
    if pathname.startswith("/"):
        raise _invalid(field, "it must not start with '/'")
    _check_segments(pathname.split("/"), field)
    return pathname


def validate_list_prefix(prefix: str, field: str = "prefix") -> str:
    """Check a listing prefix: like a pathname, but may be empty or end with ``/``."""
    if prefix == "":
        return prefix
    _check_text(prefix, field)
    if prefix.startswith("/"):
        raise _invalid(field, "it must not start with '/'")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()
    _check_segments(segments, field)
    return prefix


def join_key(prefix: str, pathname: str, field: str = "pathname") -> str:
    """The full S3 key for a validated pathname under a bucket prefix (``""`` or ``"x/"``)."""
    key = prefix + pathname
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise _invalid(
            field,
            f"the key including the bucket prefix is longer than {MAX_KEY_BYTES} UTF-8 bytes",
        )
    return key


def strip_prefix(prefix: str, key: str) -> str:
    """The pathname of a key listed under ``prefix`` (keys outside it are returned unchanged)."""
    return key[len(prefix) :] if prefix and key.startswith(prefix) else key

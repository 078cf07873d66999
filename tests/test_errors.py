"""The one coded error type and its wire text (``CODE: message`` / ``CODE: message (details)``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import s3rpc.errors
from s3rpc.errors import ErrorCode, S3RpcError


def test_wire_text_without_details_is_code_colon_message() -> None:
    error = S3RpcError(ErrorCode.FILE_NOT_FOUND, "file 'golden/missing.txt' not found")
    assert error.wire_text() == "FILE_NOT_FOUND: file 'golden/missing.txt' not found"


def test_wire_text_with_details_appends_them_in_parentheses() -> None:
    error = S3RpcError(ErrorCode.S3_OPERATION_FAILED, "write failed", "SlowDown: reduce rate")
    assert error.wire_text() == "S3_OPERATION_FAILED: write failed (SlowDown: reduce rate)"


@pytest.mark.parametrize("details", [None, ""])
def test_empty_details_are_omitted(details: str | None) -> None:
    error = S3RpcError(ErrorCode.BUCKET_NOT_FOUND, "bucket 'nope' is not configured", details)
    assert error.details is None
    assert error.wire_text() == "BUCKET_NOT_FOUND: bucket 'nope' is not configured"


def test_str_is_the_wire_text() -> None:
    error = S3RpcError(ErrorCode.INVALID_REQUEST, "bad params", "pathname: required")
    assert str(error) == error.wire_text() == "INVALID_REQUEST: bad params (pathname: required)"


def test_error_keeps_code_message_and_details() -> None:
    error = S3RpcError(ErrorCode.OPERATION_TIMEOUT, "timed out", "after 60s")
    assert (error.code, error.message, error.details) == (
        ErrorCode.OPERATION_TIMEOUT,
        "timed out",
        "after 60s",
    )
    assert isinstance(error, Exception)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_appears_verbatim_as_the_wire_prefix(code: ErrorCode) -> None:
    assert code.value == code.name
    assert S3RpcError(code, "m").wire_text() == f"{code.name}: m"


def test_wire_text_matches_the_captured_php_error_replies() -> None:
    # Vectors 1 and 8 of shared/goridge-vectors.
    assert (
        S3RpcError(ErrorCode.FILE_NOT_FOUND, "file 'golden/missing.txt' not found").wire_text()
        == "FILE_NOT_FOUND: file 'golden/missing.txt' not found"
    )
    assert (
        S3RpcError(ErrorCode.BUCKET_NOT_FOUND, "bucket 'nope' is not configured").wire_text()
        == "BUCKET_NOT_FOUND: bucket 'nope' is not configured"
    )


def test_errors_module_imports_nothing_else_from_s3rpc() -> None:
    tree = ast.parse(Path(s3rpc.errors.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {name for name in imported if name.startswith("s3rpc")}

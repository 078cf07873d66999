"""botocore failures → S3RpcError, from real botocore exception objects."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.translate import s3_errors


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "message from S3"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def translated(exc: BaseException) -> S3RpcError:
    with pytest.raises(S3RpcError) as info, s3_errors("read 'a.txt'", physical_bucket="phys-1"):
        raise exc
    return info.value


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, ErrorCode.FILE_NOT_FOUND),
        ("404", 404, ErrorCode.FILE_NOT_FOUND),
        ("NotFound", 404, ErrorCode.FILE_NOT_FOUND),
        ("AccessDenied", 403, ErrorCode.PERMISSION_DENIED),
        ("SignatureDoesNotMatch", 403, ErrorCode.PERMISSION_DENIED),
        ("403", 403, ErrorCode.PERMISSION_DENIED),
        ("AccessDenied", 0, ErrorCode.PERMISSION_DENIED),
        ("AccessControlListNotSupported", 400, ErrorCode.INVALID_CONFIG),
        ("InternalError", 500, ErrorCode.S3_OPERATION_FAILED),
        ("SlowDown", 503, ErrorCode.S3_OPERATION_FAILED),
        ("NoSuchBucket", 404, ErrorCode.S3_OPERATION_FAILED),
    ],
)
def test_client_errors_map_by_status_then_code(code: str, status: int, expected: ErrorCode) -> None:
    error = translated(client_error(code, status))
    assert error.code is expected
    assert error.details is not None
    assert code in error.details


def test_access_denied_is_permission_denied_never_not_found() -> None:
    error = translated(client_error("AccessDenied", 403, "HeadObject"))
    assert error.code is ErrorCode.PERMISSION_DENIED
    assert error.wire_text().startswith("PERMISSION_DENIED: ")


def test_acl_not_supported_hints_at_visibility_mode_none() -> None:
    error = translated(client_error("AccessControlListNotSupported", 400, "PutObject"))
    assert error.code is ErrorCode.INVALID_CONFIG
    assert "visibility_mode: none" in error.message


def test_no_such_bucket_names_the_physical_bucket() -> None:
    error = translated(client_error("NoSuchBucket", 404))
    assert error.code is ErrorCode.S3_OPERATION_FAILED
    assert "'phys-1'" in error.message


def test_other_errors_carry_the_s3_code_in_details() -> None:
    error = translated(client_error("InternalError", 500))
    assert error.wire_text() == (
        "S3_OPERATION_FAILED: read 'a.txt': S3 request failed (InternalError, HTTP 500)"
    )


def test_connection_errors_become_s3_operation_failed() -> None:
    error = translated(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert error.code is ErrorCode.S3_OPERATION_FAILED
    assert error.details == "EndpointConnectionError"
    timeout = translated(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert timeout.code is ErrorCode.S3_OPERATION_FAILED


def test_message_never_contains_s3_error_text() -> None:
    error = translated(client_error("InvalidAccessKeyId", 403))
    assert "message from S3" not in error.wire_text()


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(ValueError, match="bug"), s3_errors("x", physical_bucket="b"):
        raise ValueError("bug")

"""The fault proxy itself, driven by plain boto3 through it to the moto server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import ACCESS_KEY, SECRET_KEY
from reliability.faultproxy import Fault, FaultProxy, Match

MIB = 1024 * 1024


def _client(proxy: FaultProxy, read_timeout: float = 5) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=proxy.endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=2,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"},
        ),
    )


def _exists(s3_admin: Any, bucket: str, key: str) -> bool:
    try:
        s3_admin.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError:
        return False
    return True


TRANSPORT_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def test_requests_pass_through_and_are_counted(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str]
) -> None:
    bucket = physical_buckets("fp")
    s3 = _client(fault_proxy)
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"hello"
    assert s3.head_object(Bucket=bucket, Key="a.txt")["ContentLength"] == 5
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a.txt"]
    ops = fault_proxy.stats.by_op()
    assert ops["PutObject"] == 1
    assert ops["GetObject"] == 1
    assert ops["HeadObject"] == 1
    assert ops["ListObjectsV2"] == 1
    assert fault_proxy.stats.by_method()["GET"] == 2
    assert fault_proxy.stats.total == 4
    assert fault_proxy.stats.peak_inflight == 1


def test_multipart_upload_with_large_parts_passes_through(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    bucket = physical_buckets("fp")
    s3 = _client(fault_proxy)
    body = bytes(range(256)) * (11 * MIB // 256)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, len(body), 5 * MIB), start=1):
        etag = s3.upload_part(
            Bucket=bucket,
            Key="big",
            UploadId=upload,
            PartNumber=number,
            Body=body[offset : offset + 5 * MIB],
        )["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert s3_admin.get_object(Bucket=bucket, Key="big")["Body"].read() == body
    ops = fault_proxy.stats.by_op()
    assert ops["CreateMultipartUpload"] == 1
    assert ops["UploadPart"] == 3
    assert ops["CompleteMultipartUpload"] == 1


@pytest.mark.parametrize(("kind", "code"), [("status_500", "500"), ("status_503", "503")])
def test_status_fault_answers_s3_error_without_forwarding(
    fault_proxy: FaultProxy,
    physical_buckets: Callable[..., str],
    s3_admin: Any,
    kind: str,
    code: str,
) -> None:
    bucket = physical_buckets("fp")
    s3 = _client(fault_proxy)
    fault = fault_proxy.add_fault(Fault(kind, match=Match(op="PutObject")))
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == int(code)
    assert fault.applied == 1
    assert not _exists(s3_admin, bucket, "k")
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")  # times=1: the next one passes
    assert s3_admin.get_object(Bucket=bucket, Key="k")["Body"].read() == b"y"


def test_reset_request_is_not_forwarded(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    bucket = physical_buckets("fp")
    s3 = _client(fault_proxy)
    fault_proxy.add_fault(Fault("reset_request", match=Match(method="PUT")))
    with pytest.raises(TRANSPORT_ERRORS):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100_000)
    assert not _exists(s3_admin, bucket, "k")


def test_lose_response_applies_the_write_but_answers_nothing(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    bucket = physical_buckets("fp")
    s3 = _client(fault_proxy)
    fault_proxy.add_fault(Fault("lose_response", match=Match(op="PutObject")))
    with pytest.raises(TRANSPORT_ERRORS):
        s3.put_object(Bucket=bucket, Key="k", Body=b"applied")
    assert s3_admin.get_object(Bucket=bucket, Key="k")["Body"].read() == b"applied"


def test_reset_response_cuts_a_get(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    bucket = physical_buckets("fp")
    s3_admin.put_object(Bucket=bucket, Key="k", Body=b"z" * 200_000)
    s3 = _client(fault_proxy)
    fault_proxy.add_fault(Fault("reset_response", match=Match(op="GetObject")))
    with pytest.raises(TRANSPORT_ERRORS):
        s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"z" * 200_000


def test_refuse_closes_new_connections(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str]
) -> None:
    bucket = physical_buckets("fp")
    s3 = _client(fault_proxy)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")  # a pooled keep-alive connection
    fault = fault_proxy.add_fault(Fault("refuse", times=5))
    with pytest.raises(TRANSPORT_ERRORS):
        s3.get_object(Bucket=bucket, Key="k")
    assert fault.applied >= 1
    fault_proxy.clear()
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"


def test_stall_holds_the_request_and_never_forwards_it(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    bucket = physical_buckets("fp")
    s3 = _client(fault_proxy, read_timeout=0.5)
    fault_proxy.add_fault(Fault("stall", match=Match(op="PutObject")))
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert not _exists(s3_admin, bucket, "k")


def test_stop_ends_stalled_requests(
    s3_endpoint: str, physical_buckets: Callable[..., str]
) -> None:
    bucket = physical_buckets("fp")
    proxy = FaultProxy(upstream=s3_endpoint).start()
    s3 = _client(proxy, read_timeout=30)
    fault = proxy.add_fault(Fault("stall", match=Match(op="PutObject")))
    errors: list[BaseException] = []

    def put() -> None:
        try:
            s3.put_object(Bucket=bucket, Key=f"k-{uuid.uuid4().hex}", Body=b"x")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=put)
    thread.start()
    for _ in range(200):
        if fault.applied and proxy.stats.inflight:
            break
        time.sleep(0.02)
    assert proxy.stats.inflight == 1
    proxy.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], TRANSPORT_ERRORS)

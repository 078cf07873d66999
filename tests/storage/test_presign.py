"""The fast SigV4 presigner: byte for byte botocore's generate_presigned_url at the same clock,
and botocore itself wherever the fast path is not proven."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3  # type: ignore[import-untyped, unused-ignore]
import botocore.auth  # type: ignore[import-untyped, unused-ignore]
import pytest
from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]
from aiobotocore.credentials import (  # type: ignore[import-untyped, unused-ignore]
    AioRefreshableCredentials,
)

from s3rpc.storage import presign
from s3rpc.storage.presign import Presigner

from .conftest import Storage

FROZEN = datetime.datetime(2026, 3, 4, 23, 59, 58)

KEYS = [
    "a.txt",
    "app/photos/2026/cat.jpg",
    "sp ace/x y.json",
    "plus+sign/a+b.txt",
    "per%cent/%20literal%2F.txt",
    "hash#/frag#ment",
    "quest?ion/a?b=c&d=e",
    "tilde~/~home",
    "ünï cødé/日本 語.txt",
    "emoji/😀.bin",
    "quotes/'single' \"double\" <angle>",
    "semi;colon,comma:colon@at!bang$dollar(paren)*star",
    "dots/a..b/./c/../d",
    "trailing/slash/",
    "double//slash",
    "=equals&amp",
]

#: (label, client arguments, addressing style)
SETUPS = [
    ("endpoint-path", {"endpoint_url": "http://127.0.0.1:9000"}, "path"),
    ("endpoint-virtual-port", {"endpoint_url": "https://S3.Example.test:8443"}, "virtual"),
    ("endpoint-default-port", {"endpoint_url": "https://cdn.example.test:443/"}, "path"),
    ("aws-us-east-1", {"region_name": "us-east-1"}, "auto"),
    ("aws-virtual", {"region_name": "eu-central-1"}, "virtual"),
    ("aws-path", {"region_name": "ap-south-1"}, "path"),
]

OVERRIDES = [
    [],
    [("ResponseContentType", "response-content-type", "text/plain; charset=utf-8+x")],
    [
        ("ResponseContentType", "response-content-type", "application/json"),
        (
            "ResponseContentDisposition",
            "response-content-disposition",
            "attachment; filename*=UTF-8''%E2%82%AC rates.txt",
        ),
    ],
]

UPLOAD_HEADERS = [
    [("ContentType", "content-type", "image/png")],
    [("ContentType", "content-type", "text/csv"), ("ACL", "x-amz-acl", "public-read")],
]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's and the fast path's clocks both at FROZEN (a second before midnight)."""
    set_clock(monkeypatch, FROZEN)


def set_clock(monkeypatch: pytest.MonkeyPatch, when: datetime.datetime) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: when)
    stamp = when.replace(tzinfo=datetime.UTC).timestamp()
    monkeypatch.setattr(presign, "_now", lambda: stamp)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def make_client(
    stack: AsyncExitStack,
    args: dict[str, Any],
    style: str,
    token: str | None = None,
    signature_version: str | None = "s3v4",
) -> Any:
    options: dict[str, Any] = {
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "aws_session_token": token,
        **args,
    }
    config = AioConfig(signature_version=signature_version, s3={"addressing_style": style})
    return await stack.enter_async_context(
        aioboto3.Session().client("s3", config=config, **options)
    )


async def compare_all(client: Any, presigner: Presigner, bucket: str = "my-bucket") -> int:
    """Presign every key and shape both ways; assert equality; the number compared."""
    compared = 0
    for key in KEYS:
        for query in OVERRIDES:
            params = {"Bucket": bucket, "Key": key, **{param: value for param, _, value in query}}
            expected = await client.generate_presigned_url(
                "get_object", Params=dict(params), ExpiresIn=3600
            )
            got = await presigner.url("get_object", "GET", params, 3600, query=query)
            assert got == expected, key
            compared += 1
        for headers in UPLOAD_HEADERS:
            params = {"Bucket": bucket, "Key": key, **{param: value for param, _, value in headers}}
            expected = await client.generate_presigned_url(
                "put_object", Params=dict(params), ExpiresIn=900, HttpMethod="PUT"
            )
            got = await presigner.url("put_object", "PUT", params, 900, headers=headers)
            assert got == expected, key
            compared += 1
    return compared


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(
    "token", [None, "FQoGZXIvYXdzE//+token==/+"], ids=["keys", "session-token"]
)
@pytest.mark.parametrize(
    ("args", "style"), [(a, s) for _, a, s in SETUPS], ids=[s[0] for s in SETUPS]
)
async def test_fast_urls_equal_botocores_byte_for_byte(
    stack: AsyncExitStack, args: dict[str, Any], style: str, token: str | None
) -> None:
    client = await make_client(stack, args, style, token)
    presigner = Presigner(client)
    compared = await compare_all(client, presigner)
    assert compared == len(KEYS) * (len(OVERRIDES) + len(UPLOAD_HEADERS))
    # botocore presigned only the first URL of each shape; every other one was the fast path.
    assert presigner.slow == len(OVERRIDES) + len(UPLOAD_HEADERS)


async def test_signing_key_follows_the_date(
    stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client(stack, {"endpoint_url": "http://127.0.0.1:9000"}, "path")
    presigner = Presigner(client)
    for when in (
        FROZEN,
        FROZEN + datetime.timedelta(seconds=2),
        FROZEN + datetime.timedelta(days=40),
    ):
        set_clock(monkeypatch, when)
        expected = await client.generate_presigned_url(
            "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60
        )
        assert await presigner.url("get_object", "GET", {"Bucket": "b", "Key": "k"}, 60) == expected
    assert presigner.slow == 1


@pytest.mark.usefixtures("frozen_clock")
async def test_refreshing_credentials_are_always_presigned_by_botocore(
    stack: AsyncExitStack,
) -> None:
    client = await make_client(stack, {"endpoint_url": "http://127.0.0.1:9000"}, "path")

    async def refresh() -> dict[str, str]:
        raise AssertionError("not expected to refresh")

    client._request_signer._credentials = AioRefreshableCredentials.create_from_metadata(
        metadata={
            "access_key": "ASIAREFRESH",
            "secret_key": "refreshing-secret",
            "token": "refreshing-token",
            "expiry_time": "2999-01-01T00:00:00Z",
        },
        refresh_using=refresh,
        method="test",
    )
    presigner = Presigner(client)
    params = {"Bucket": "b", "Key": "k"}
    for _ in range(3):
        url = await presigner.url("get_object", "GET", params, 60)
        assert "ASIAREFRESH" in url
    assert presigner.slow == 3


@pytest.mark.usefixtures("frozen_clock")
async def test_other_signature_versions_are_presigned_by_botocore(stack: AsyncExitStack) -> None:
    client = await make_client(
        stack, {"endpoint_url": "http://127.0.0.1:9000"}, "path", signature_version=None
    )
    presigner = Presigner(client)
    for key in KEYS[:3]:
        expected = await client.generate_presigned_url(
            "get_object", Params={"Bucket": "b", "Key": key}, ExpiresIn=60
        )
        assert await presigner.url("get_object", "GET", {"Bucket": "b", "Key": key}, 60) == expected
    assert presigner.slow == 3


@pytest.mark.usefixtures("frozen_clock")
async def test_a_shape_that_does_not_reproduce_botocore_stays_with_botocore(
    stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client(stack, {"endpoint_url": "http://127.0.0.1:9000"}, "path")
    presigner = Presigner(client)
    monkeypatch.setattr(Presigner, "_sign", lambda *args: "https://wrong.example/")
    for key in KEYS[:4]:
        url = await presigner.url("get_object", "GET", {"Bucket": "b", "Key": key}, 60)
        assert url.startswith("http://127.0.0.1:9000/b/")
    assert presigner.slow == 4


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("key", ["", "/leading", "tab\there", "lone\udc80surrogate"])
async def test_unusual_keys_go_to_botocore(stack: AsyncExitStack, key: str) -> None:
    client = await make_client(stack, {"endpoint_url": "http://127.0.0.1:9000"}, "path")
    presigner = Presigner(client)
    await presigner.url("get_object", "GET", {"Bucket": "b", "Key": "warm"}, 60)
    try:
        expected: Any = await client.generate_presigned_url(
            "get_object", Params={"Bucket": "b", "Key": key}, ExpiresIn=60
        )
    except Exception as exc:  # whatever botocore raises, the presigner raises too
        expected = type(exc)
    try:
        got: Any = await presigner.url("get_object", "GET", {"Bucket": "b", "Key": key}, 60)
    except Exception as exc:
        got = type(exc)
    assert got == expected
    assert presigner.slow == 2


async def test_daemon_presigned_urls_download_and_upload(storage: Storage) -> None:
    """Through s3.GetPublicURL / s3.GetUploadURL: the fast URLs work against the server."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for index, name in enumerate(["a.txt", "ü x+y%z~/日本.txt", "q?r#s.txt"]):
            content = f"body {index}".encode()
            upload = await storage.call(
                "s3.GetUploadURL",
                {"pathname": name, "expires_in": 300, "content_type": "text/plain"},
            )
            async with http.put(upload["url"], data=content, headers=upload["headers"]) as put:
                assert put.status == 200, await put.text()
            got = await storage.call(
                "s3.GetPublicURL",
                {
                    "pathname": name,
                    "expires_in": 300,
                    "response_content_disposition": f'attachment; filename="{index}.txt"',
                },
            )
            async with http.get(got["url"]) as response:
                assert response.status == 200, await response.text()
                assert await response.read() == content
                assert (
                    response.headers["Content-Disposition"] == f'attachment; filename="{index}.txt"'
                )
    presigner = presign.presigner(storage.manager.get("files").presign_client)
    assert presigner.slow == 2  # the first GET and the first PUT shape; the rest were fast


def test_a_presigner_does_not_keep_its_client_alive() -> None:
    import gc

    class Client:
        pass

    client = Client()
    first = presign.presigner(client)
    assert presign.presigner(client) is first
    before = len(presign._PRESIGNERS)
    del client, first
    gc.collect()
    assert len(presign._PRESIGNERS) == before - 1

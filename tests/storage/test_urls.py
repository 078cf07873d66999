"""GetPublicURL: permanent URLs and SigV4 presigned URLs."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest

from s3rpc.errors import ErrorCode, S3RpcError

from .conftest import MakeStorage, Storage


async def test_permanent_url_is_path_style_for_custom_endpoint(
    storage: Storage, s3_endpoint: str
) -> None:
    await storage.call("s3.Write", {"bucket": "media", "pathname": "a b/ü+#?.txt", "content": b"u"})
    result = await storage.call("s3.GetPublicURL", {"bucket": "media", "pathname": "a b/ü+#?.txt"})
    physical = storage.physical["media"]
    assert result == {"url": f"{s3_endpoint}/{physical}/a%20b/%C3%BC%2B%23%3F.txt"}
    with urllib.request.urlopen(result["url"], timeout=10) as response:  # public-read object
        assert response.read() == b"u"


async def test_permanent_url_uses_public_url_with_full_key(make_storage: MakeStorage) -> None:
    storage = await make_storage({"cdn": {"public_url": "https://cdn.example.com/", "prefix": "p"}})
    result = await storage.call("s3.GetPublicURL", {"bucket": "cdn", "pathname": "x y.png"})
    assert result["url"] == "https://cdn.example.com/p/x%20y.png"


async def test_permanent_url_for_aws_is_virtual_hosted(make_storage: MakeStorage) -> None:
    storage = await make_storage(
        {
            "aws": {
                "bucket": "my-bucket",
                "region": "eu-west-1",
                "credentials": {"key": "k", "secret": "s"},
            }
        }
    )
    result = await storage.call("s3.GetPublicURL", {"bucket": "aws", "pathname": "a/b.txt"})
    assert result["url"] == "https://my-bucket.s3.eu-west-1.amazonaws.com/a/b.txt"


async def test_presigned_url_downloads_the_object(storage: Storage) -> None:
    await storage.call("s3.Write", {"pathname": "secret ü.txt", "content": b"sig"})
    before = int(time.time())
    result = await storage.call("s3.GetPublicURL", {"pathname": "secret ü.txt", "expires_in": 60})
    assert before + 60 <= result["expires_at"] <= int(time.time()) + 60
    assert "X-Amz-Signature=" in result["url"]
    assert "X-Amz-Expires=60" in result["url"]
    with urllib.request.urlopen(result["url"], timeout=10) as response:
        assert response.read() == b"sig"


async def test_presigned_url_is_signed_for_public_endpoint(
    make_storage: MakeStorage, s3_endpoint: str
) -> None:
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    storage = await make_storage(
        {"pub": {"server": "edge"}},
        servers={
            "edge": {
                "endpoint": s3_endpoint,
                "public_endpoint": public,
                "credentials": {"key": "k", "secret": "s"},
            }
        },
    )
    result = await storage.call(
        "s3.GetPublicURL", {"bucket": "pub", "pathname": "a", "expires_in": 5}
    )
    assert result["url"].startswith(public + "/")
    assert "X-Amz-SignedHeaders=host" in result["url"]


@pytest.mark.parametrize("expires_in", [-1, 604_801])
async def test_presign_expiry_out_of_range_is_invalid_request(
    storage: Storage, expires_in: Any
) -> None:
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.GetPublicURL", {"pathname": "a", "expires_in": expires_in})
    assert info.value.code is ErrorCode.INVALID_REQUEST

"""What only a real S3 service can prove: it refuses bad, expired and out-of-policy signed
requests, it serves public objects to anyone and private ones to no one, and ``if_none_match``
never overwrites, also where the service ignores ``If-None-Match`` (RGW 16), and RGW's empty
CompleteMultipartUpload ETag never reaches a caller.

moto checks no signature and no policy, so most of these run on RGW only
(``@pytest.mark.backends("rgw")``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from conftest import RunningDaemon, S3Backend, StartDaemon
from s3rpc.client import RpcError
from s3rpc.storage.multipart import Multipart, upload_buffer

from .conftest import MakeStorage

TIMEOUT = 10

real_s3 = pytest.mark.backends("rgw")


def with_query(url: str, **changes: str) -> str:
    """``url`` with query parameters replaced (the others kept, in order)."""
    parts = urlsplit(url)
    query = [(k, changes.pop(k) if k in changes else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def tampered(signature: str) -> str:
    return ("0" if signature[0] != "0" else "1") + signature[1:]


def object_url(s3_endpoint: str, bucket: str, key: str) -> str:
    return f"{s3_endpoint}/{bucket}/{key}"


@real_s3
async def test_presigned_get_with_a_bad_or_expired_signature_is_refused(
    daemon: RunningDaemon, s3_endpoint: str
) -> None:
    await daemon.call(
        "s3.Write", {"bucket": "private-docs", "pathname": "a.txt", "content": "c2Vj"}
    )
    good = await daemon.call(
        "s3.GetPublicURL", {"bucket": "private-docs", "pathname": "a.txt", "expires_in": 60}
    )
    assert requests.get(good["url"], timeout=TIMEOUT).content == b"sec"
    signature = dict(parse_qsl(urlsplit(good["url"]).query))["X-Amz-Signature"]
    bad = with_query(good["url"], **{"X-Amz-Signature": tampered(signature)})
    assert requests.get(bad, timeout=TIMEOUT).status_code == 403
    longer = with_query(good["url"], **{"X-Amz-Expires": "3600"})  # not what was signed
    assert requests.get(longer, timeout=TIMEOUT).status_code == 403
    short = await daemon.call(
        "s3.GetPublicURL", {"bucket": "private-docs", "pathname": "a.txt", "expires_in": 1}
    )
    await asyncio.sleep(2.5)
    expired = requests.get(short["url"], timeout=TIMEOUT)
    assert expired.status_code == 403
    assert "AccessDenied" in expired.text


@real_s3
async def test_presigned_put_with_a_bad_signature_or_other_headers_is_refused(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    answer = await daemon.call("s3.GetUploadURL", {"pathname": "in/p.png", "expires_in": 60})
    url, headers = answer["url"], answer["headers"]
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    bad = with_query(url, **{"X-Amz-Signature": tampered(signature)})
    assert requests.put(bad, data=b"x", headers=headers, timeout=TIMEOUT).status_code == 403
    other_acl = {**headers, "x-amz-acl": "private"}  # the ACL is signed
    assert requests.put(url, data=b"x", headers=other_acl, timeout=TIMEOUT).status_code == 403
    other_key = url.replace("/in/p.png", "/in/q.png")
    assert requests.put(other_key, data=b"x", headers=headers, timeout=TIMEOUT).status_code == 403
    physical = daemon.buckets["uploads"]
    assert s3_admin.list_objects_v2(Bucket=physical).get("KeyCount", 0) == 0
    ok = requests.put(url, data=b"\x89PNG", headers=headers, timeout=TIMEOUT)
    assert ok.status_code == 200, ok.text
    assert s3_admin.get_object(Bucket=physical, Key="in/p.png")["Body"].read() == b"\x89PNG"


@real_s3
async def test_presigned_post_outside_its_policy_or_badly_signed_is_refused(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    answer = await daemon.call(
        "s3.GetUploadPost",
        {"bucket": "private-docs", "pathname": "forms/a.txt", "expires_in": 60, "max_size": 10},
    )
    url, fields = answer["url"], answer["fields"]
    physical = daemon.buckets["private-docs"]

    def post(form: dict[str, str], body: bytes) -> requests.Response:
        return requests.post(url, data=form, files={"file": ("a.txt", body)}, timeout=TIMEOUT)

    too_big = post(fields, b"x" * 11)
    assert too_big.status_code == 400
    assert "EntityTooLarge" in too_big.text
    assert post({**fields, "key": "forms/other.txt"}, b"x").status_code == 403
    assert post({**fields, "Content-Type": "text/html"}, b"x").status_code == 403
    assert post({**fields, "acl": "public-read"}, b"x").status_code == 403
    bad = {**fields, "x-amz-signature": tampered(fields["x-amz-signature"])}
    assert post(bad, b"x").status_code == 403
    assert s3_admin.list_objects_v2(Bucket=physical).get("KeyCount", 0) == 0
    ok = post(fields, b"0123456789")
    assert ok.status_code in (200, 201, 204), ok.text
    stored = s3_admin.get_object(Bucket=physical, Key="forms/a.txt")
    assert stored["Body"].read() == b"0123456789"


@real_s3
async def test_a_public_object_is_readable_anonymously_and_a_private_one_is_not(
    daemon: RunningDaemon, s3_endpoint: str
) -> None:
    await daemon.call("s3.Write", {"pathname": "pub.txt", "content": "cHVi"})  # uploads: public
    await daemon.call(
        "s3.Write", {"bucket": "private-docs", "pathname": "priv.txt", "content": "cHI="}
    )
    public = await daemon.call("s3.GetPublicURL", {"pathname": "pub.txt", "expires_in": 0})
    answer = requests.get(public["url"], timeout=TIMEOUT)  # no signature at all
    assert answer.status_code == 200
    assert answer.content == b"pub"
    private = object_url(s3_endpoint, daemon.buckets["private-docs"], "priv.txt")
    assert requests.get(private, timeout=TIMEOUT).status_code == 403
    # Visibility flips both ways, and the anonymous reader sees it at once.
    await daemon.call("s3.SetVisibility", {"pathname": "pub.txt", "visibility": "private"})
    assert requests.get(public["url"], timeout=TIMEOUT).status_code == 403
    await daemon.call(
        "s3.SetVisibility",
        {"bucket": "private-docs", "pathname": "priv.txt", "visibility": "public"},
    )
    assert requests.get(private, timeout=TIMEOUT).content == b"pr"


async def test_if_none_match_write_never_overwrites_an_existing_object(
    daemon: RunningDaemon,
) -> None:
    await daemon.call("s3.Write", {"pathname": "once.txt", "content": "Zmlyc3Q="})
    with pytest.raises(RpcError) as info:
        await daemon.call(
            "s3.Write", {"pathname": "once.txt", "content": "c2Vjb25k", "if_none_match": "*"}
        )
    assert info.value.code == "PRECONDITION_FAILED"
    read = await daemon.call("s3.Read", {"pathname": "once.txt"})
    assert read["content"] == b"first"
    created = await daemon.call(
        "s3.Write", {"pathname": "new.txt", "content": "bmV3", "if_none_match": "*"}
    )
    assert created["success"] is True


RACERS = 8


async def test_racing_if_none_match_writes_have_exactly_one_winner(
    daemon: RunningDaemon, s3_backend: S3Backend
) -> None:
    bodies = [os.urandom(64) for _ in range(RACERS)]
    codes: list[str] = []

    async def attempt(body: bytes) -> bool:
        client = await daemon.client("msgpack")
        try:
            await client.call(
                "s3.Write",
                {"pathname": "race.bin", "content": body, "if_none_match": "*"},
                timeout=30,
            )
        except RpcError as exc:
            codes.append(exc.code)
            return False
        return True

    won = await asyncio.gather(*(attempt(body) for body in bodies))
    assert set(codes) <= {"PRECONDITION_FAILED"}
    assert won.count(True) == 1, f"{won.count(True)} winners on {s3_backend.name}"
    read = await daemon.call("s3.Read", {"pathname": "race.bin"}, codec="msgpack")
    assert read["content"] == bodies[won.index(True)]


MIB = 1024 * 1024


async def test_a_completed_multipart_upload_answers_the_objects_etag(
    make_storage: MakeStorage, s3_admin: Any
) -> None:
    # RGW 16 answers CompleteMultipartUpload with an empty <ETag/>; whatever reads the
    # engine's answer must get the object's ETag (RGW's UploadPartCopy ETags are unquoted too).
    storage = await make_storage({"big": {"part_size": 5 * MIB, "concurrency": 2}})
    bucket = storage.manager.get("big")
    data = os.urandom(11 * MIB)
    answer = await upload_buffer(storage.manager, bucket, "e.bin", memoryview(data), {})
    head = s3_admin.head_object(Bucket=bucket.physical, Key="e.bin")
    assert answer["ETag"] == head["ETag"]
    assert answer["ETag"].endswith('-3"')
    async with Multipart(
        storage.manager.uploads, bucket.client, bucket.physical, "c.bin", {}
    ) as up:
        await up.upload_copy(1, {"Bucket": bucket.physical, "Key": "e.bin"}, 0, 5 * MIB - 1)
        await up.upload_copy(2, {"Bucket": bucket.physical, "Key": "e.bin"}, 5 * MIB, 6 * MIB)
        copied = await up.complete()
    assert copied["ETag"] == s3_admin.head_object(Bucket=bucket.physical, Key="c.bin")["ETag"]


async def test_if_none_match_multipart_write_refuses_an_object_created_during_the_upload(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    # RGW 16 ignores If-None-Match on CompleteMultipartUpload: without a check right before
    # completing, an object another writer created while the parts went up was overwritten.
    daemon = await start_daemon({"uploads": {"part_size": 5 * MIB, "concurrency": 1}})
    physical = daemon.buckets["uploads"]
    client = daemon.app.buckets.get("uploads").client

    def other_writer_wins(params: dict[str, Any], **_: Any) -> None:
        if params.get("PartNumber") == 1:
            s3_admin.put_object(Bucket=physical, Key="late.bin", Body=b"the other writer")

    client.meta.events.register("before-parameter-build.s3.UploadPart", other_writer_wins)
    with pytest.raises(RpcError) as info:
        await daemon.call(
            "s3.Write",
            {"pathname": "late.bin", "content": os.urandom(6 * MIB), "if_none_match": "*"},
            codec="msgpack",
        )
    assert info.value.code == "PRECONDITION_FAILED"
    stored = s3_admin.get_object(Bucket=physical, Key="late.bin")["Body"].read()
    assert stored == b"the other writer"
    assert s3_admin.list_multipart_uploads(Bucket=physical).get("Uploads", []) == []



async def test_every_etag_a_caller_sees_is_quoted_and_the_same_in_metadata_and_listing(
    start_daemon: StartDaemon,
) -> None:
    # RGW 16 sends CopyObject's ETag unquoted and CompleteMultipartUpload's empty: neither may
    # leak into what PHP sees, after a plain write, a copy or a multipart write.
    daemon = await start_daemon({"uploads": {"part_size": 5 * MIB}})
    await daemon.call("s3.Write", {"pathname": "e/plain.txt", "content": "cGxhaW4="})
    await daemon.call("s3.Copy", {"source_pathname": "e/plain.txt", "dest_pathname": "e/copy.txt"})
    big = {"pathname": "e/big.bin", "content": os.urandom(6 * MIB)}
    await daemon.call("s3.Write", big, codec="msgpack")
    listed = await daemon.call("s3.ListObjects", {"prefix": "e/"})
    etags = {item["key"]: item["etag"] for item in listed["objects"]}
    assert set(etags) == {"e/plain.txt", "e/copy.txt", "e/big.bin"}
    for key, etag in etags.items():
        meta = await daemon.call("s3.GetMetadata", {"pathname": key})
        assert meta["etag"] == etag, key
        assert len(etag) > 2, key
        assert etag.startswith('"'), key
        assert etag.endswith('"'), key
    assert etags["e/copy.txt"] == etags["e/plain.txt"]
    assert etags["e/big.bin"].endswith('-2"')

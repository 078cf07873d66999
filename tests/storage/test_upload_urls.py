"""Browser uploads and download overrides through the daemon's socket: s3.GetUploadURL (a
presigned PUT), s3.GetUploadPost (a presigned POST form with a content-length-range) and
s3.GetPublicURL's response_content_type / response_content_disposition.

moto checks neither signatures nor POST policies, so each test also verifies the SigV4
signature itself with the test credentials (and that a tampered request fails that check), and
evaluates the signed POST policy as S3 does, before uploading to moto with ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests

from conftest import ACCESS_KEY, SECRET_KEY, RunningDaemon, StartDaemon
from s3rpc.client import RpcError

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
TIMEOUT = 30


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(date: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(f"AWS4{SECRET_KEY}".encode(), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")


def presigned_url_is_valid(url: str, method: str, headers: dict[str, str]) -> bool:
    """Recompute a SigV4 query-string signature as S3 does; True if it matches.

    Every signed header must be among ``headers`` (or be the host): what the daemon tells the
    browser to send is exactly what was signed.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = query.pop("X-Amz-Signature")
    signed = query["X-Amz-SignedHeaders"].split(";")
    sent = {"host": parts.netloc, **{name.lower(): value for name, value in headers.items()}}
    if any(name not in sent for name in signed):
        return False
    canonical = "\n".join(
        [
            method,
            parts.path,
            "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(query.items())),
            "".join(f"{name}:{sent[name].strip()}\n" for name in signed),
            ";".join(signed),
            "UNSIGNED-PAYLOAD",
        ]
    )
    access_key, date, region, service, _ = query["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            query["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    expected = hmac.new(signing_key(date, region, service), to_sign.encode(), hashlib.sha256)
    return access_key == ACCESS_KEY and hmac.compare_digest(expected.hexdigest(), signature)


def post_signature_is_valid(fields: dict[str, str]) -> bool:
    _, date, region, service, _ = fields["x-amz-credential"].split("/")
    expected = hmac.new(
        signing_key(date, region, service), fields["policy"].encode(), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["x-amz-signature"])


def policy_allows(fields: dict[str, str], bucket: str, size: int) -> bool:
    """Evaluate a POST policy's conditions against a form (with ``bucket``) and a file size."""
    policy = json.loads(base64.b64decode(fields["policy"]))
    form = {name.lower(): value for name, value in fields.items()} | {"bucket": bucket}
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            if form.get(name.lower()) != value:
                return False
        elif condition[0] == "content-length-range":
            if not condition[1] <= size <= condition[2]:
                return False
        elif condition[0] == "eq":
            if form.get(condition[1].lstrip("$").lower()) != condition[2]:
                return False
        elif condition[0] == "starts-with":
            if not form.get(condition[1].lstrip("$").lower(), "").startswith(condition[2]):
                return False
        else:
            return False
    return True


def is_public(s3_admin: Any, bucket: str, key: str) -> bool:
    grants = s3_admin.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(grant["Grantee"].get("URI") == ALL_USERS for grant in grants)


async def test_upload_url_is_a_signed_put_that_stores_type_and_visibility(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    answer = await daemon.call(
        "s3.GetUploadURL", {"pathname": "in/ünï photo.png", "expires_in": 300}
    )
    assert answer["method"] == "PUT"
    assert answer["headers"] == {"Content-Type": "image/png", "x-amz-acl": "public-read"}
    assert presigned_url_is_valid(answer["url"], "PUT", answer["headers"])
    assert not presigned_url_is_valid(
        answer["url"], "PUT", {**answer["headers"], "x-amz-acl": "private"}
    )
    assert not presigned_url_is_valid(
        answer["url"].replace("photo", "photx"), "PUT", answer["headers"]
    )
    response = requests.put(
        answer["url"], data=b"\x89PNG body", headers=answer["headers"], timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    physical = daemon.buckets["uploads"]
    stored = s3_admin.get_object(Bucket=physical, Key="in/ünï photo.png")
    assert stored["Body"].read() == b"\x89PNG body"
    assert stored["ContentType"] == "image/png"
    assert is_public(s3_admin, physical, "in/ünï photo.png")


async def test_upload_url_honours_content_type_and_private_visibility(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    answer = await daemon.call(
        "s3.GetUploadURL",
        {
            "pathname": "doc",
            "expires_in": 60,
            "content_type": "application/pdf",
            "visibility": "private",
        },
    )
    assert answer["headers"] == {"Content-Type": "application/pdf", "x-amz-acl": "private"}
    assert 0 < answer["expires_at"] - __import__("time").time() <= 61
    assert presigned_url_is_valid(answer["url"], "PUT", answer["headers"])
    response = requests.put(answer["url"], data=b"%PDF", headers=answer["headers"], timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    physical = daemon.buckets["uploads"]
    assert s3_admin.head_object(Bucket=physical, Key="doc")["ContentType"] == "application/pdf"
    assert not is_public(s3_admin, physical, "doc")


async def test_upload_post_is_a_signed_form_limited_to_max_size(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    answer = await daemon.call(
        "s3.GetUploadPost",
        {"bucket": "private-docs", "pathname": "forms/a.txt", "expires_in": 120, "max_size": 10},
    )
    fields = answer["fields"]
    physical = daemon.buckets["private-docs"]
    assert fields["key"] == "forms/a.txt"
    assert fields["Content-Type"] == "text/plain"
    assert fields["acl"] == "private"
    assert post_signature_is_valid(fields)
    assert not post_signature_is_valid({**fields, "policy": fields["policy"][:-4] + "AAA="})
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 0, 10] in policy["conditions"]
    assert policy_allows(fields, physical, 10)
    assert not policy_allows(fields, physical, 11)
    assert not policy_allows({**fields, "key": "forms/other.txt"}, physical, 5)
    assert not policy_allows({**fields, "Content-Type": "text/html"}, physical, 5)
    response = requests.post(
        answer["url"], data=fields, files={"file": ("a.txt", b"0123456789")}, timeout=TIMEOUT
    )
    assert response.status_code in (200, 201, 204), response.text
    stored = s3_admin.get_object(Bucket=physical, Key="forms/a.txt")
    assert stored["Body"].read() == b"0123456789"
    assert stored["ContentType"] == "text/plain"
    assert not is_public(s3_admin, physical, "forms/a.txt")


async def test_upload_urls_are_signed_for_the_public_endpoint(
    start_daemon: StartDaemon, s3_endpoint: str, s3_admin: Any
) -> None:
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    server = {
        "region": "us-east-1",
        "endpoint": s3_endpoint,
        "public_endpoint": public,
        "credentials": {"key": ACCESS_KEY, "secret": SECRET_KEY},
    }
    daemon = await start_daemon(
        {"web": {"visibility": "public"}}, s3={"servers": {"local": server}}
    )
    put = await daemon.call("s3.GetUploadURL", {"pathname": "p.txt", "expires_in": 60})
    post = await daemon.call(
        "s3.GetUploadPost", {"pathname": "f.txt", "expires_in": 60, "max_size": 100}
    )
    assert put["url"].startswith(public + "/")
    assert post["url"].startswith(public)
    assert presigned_url_is_valid(put["url"], "PUT", put["headers"])
    assert post_signature_is_valid(post["fields"])
    response = requests.put(put["url"], data=b"via public", headers=put["headers"], timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = s3_admin.get_object(Bucket=daemon.buckets["web"], Key="p.txt")["Body"].read()
    assert body == b"via public"


async def test_upload_urls_send_no_acl_under_visibility_mode_none(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon({"plain": {"visibility_mode": "none"}})
    put = await daemon.call("s3.GetUploadURL", {"pathname": "x.json", "expires_in": 60})
    post = await daemon.call(
        "s3.GetUploadPost", {"pathname": "x.json", "expires_in": 60, "max_size": 1}
    )
    assert put["headers"] == {"Content-Type": "application/json"}
    assert "acl" not in post["fields"]
    assert all(
        "acl" not in json.dumps(c)
        for c in json.loads(base64.b64decode(post["fields"]["policy"]))["conditions"]
    )


async def test_presigned_download_overrides_content_type_and_disposition(
    daemon: RunningDaemon,
) -> None:
    await daemon.call("s3.Write", {"pathname": "r/data.bin", "content": b"abc"})
    answer = await daemon.call(
        "s3.GetPublicURL",
        {
            "pathname": "r/data.bin",
            "expires_in": 60,
            "response_content_type": "text/csv",
            "response_content_disposition": 'attachment; filename="report.csv"',
        },
    )
    assert presigned_url_is_valid(answer["url"], "GET", {})
    response = requests.get(answer["url"], timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == b"abc"
    assert response.headers["Content-Type"] == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="report.csv"'


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("s3.GetUploadURL", {"expires_in": 0}, "expires_in"),
        ("s3.GetUploadURL", {}, "expires_in"),
        ("s3.GetUploadURL", {"expires_in": 604_801}, "expires_in"),
        ("s3.GetUploadURL", {"expires_in": "60"}, "expires_in"),
        ("s3.GetUploadURL", {"expires_in": 60, "content_type": "a\nb"}, "content_type"),
        ("s3.GetUploadPost", {"expires_in": 60}, "max_size"),
        ("s3.GetUploadPost", {"expires_in": 60, "max_size": 0}, "max_size"),
        ("s3.GetUploadPost", {"expires_in": 60, "max_size": 6 * 1024**3}, "max_size"),
        ("s3.GetPublicURL", {"response_content_type": "text/csv"}, "expires_in"),
    ],
)
async def test_bad_upload_url_requests_are_refused_naming_the_field(
    daemon: RunningDaemon, method: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(RpcError) as info:
        await daemon.call(method, {"pathname": "x.txt", **params})
    assert info.value.code == "INVALID_REQUEST"
    assert f"'{field}'" in str(info.value)


async def test_upload_url_with_a_bad_visibility_is_invalid_visibility(
    daemon: RunningDaemon,
) -> None:
    with pytest.raises(RpcError) as info:
        await daemon.call(
            "s3.GetUploadURL", {"pathname": "x", "expires_in": 60, "visibility": "world"}
        )
    assert info.value.code == "INVALID_VISIBILITY"


def post(answer: dict[str, Any], fields: dict[str, str], name: str, data: bytes) -> int:
    response = requests.post(
        answer["url"], data=fields, files={"file": (name, data)}, timeout=TIMEOUT
    )
    return response.status_code


def keys_of(s3_admin: Any, physical: str) -> list[str]:
    listed = s3_admin.list_objects_v2(Bucket=physical).get("Contents", [])
    return sorted(item["Key"] for item in listed)


@pytest.mark.parametrize("pathname", ["u/${filename}", "${filename}", "u/a-${filename}"])
async def test_upload_post_refuses_filename_without_the_opt_in(
    daemon: RunningDaemon, pathname: str
) -> None:
    with pytest.raises(RpcError) as info:
        await daemon.call(
            "s3.GetUploadPost", {"pathname": pathname, "expires_in": 60, "max_size": 10}
        )
    assert info.value.code == "INVALID_REQUEST"
    assert "'allow_filename'" in str(info.value)


@pytest.mark.parametrize(
    ("pathname", "code"),
    [
        ("${filename}", "INVALID_REQUEST"),  # no folder: the whole bucket
        ("u/${filename}/x", "INVALID_REQUEST"),
        ("u/${filename}.jpg", "INVALID_REQUEST"),
        ("u/${filename}${filename}", "INVALID_REQUEST"),
        ("${filename}/x/${filename}", "INVALID_REQUEST"),
        ("u/../${filename}", "INVALID_PATHNAME"),
        ("u//${filename}", "INVALID_PATHNAME"),
    ],
)
async def test_upload_post_with_filename_needs_a_folder_and_the_name_last(
    daemon: RunningDaemon, pathname: str, code: str
) -> None:
    with pytest.raises(RpcError) as info:
        await daemon.call(
            "s3.GetUploadPost",
            {"pathname": pathname, "expires_in": 60, "max_size": 10, "allow_filename": True},
        )
    assert info.value.code == code, info.value.text


async def test_upload_post_with_filename_is_bounded_to_its_folder(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start_daemon({"web": {"prefix": "tenant-a", "visibility_mode": "none"}})
    physical = daemon.buckets["web"]
    answer = await daemon.call(
        "s3.GetUploadPost",
        {
            "bucket": "web",
            "pathname": "u/${filename}",
            "expires_in": 120,
            "max_size": 100,
            "content_type": "text/plain",
            "allow_filename": True,
        },
    )
    fields = answer["fields"]
    assert fields["key"] == "tenant-a/u/${filename}"
    policy = json.loads(base64.b64decode(fields["policy"]))
    key_conditions = [c for c in policy["conditions"] if "$key" in c or "key" in c]
    assert key_conditions == [["starts-with", "$key", "tenant-a/u/"]]
    assert policy_allows({**fields, "key": "tenant-a/u/photo.txt"}, physical, 5)
    assert not policy_allows({**fields, "key": "tenant-a/other.txt"}, physical, 5)
    assert not policy_allows({**fields, "key": "tenant-a/uploads/x"}, physical, 5)
    assert not policy_allows({**fields, "key": "tenant-b/u/x"}, physical, 5)

    assert post(answer, fields, "photo.txt", b"photo") in (200, 201, 204)
    stored = keys_of(s3_admin, physical)
    assert len(stored) == 1
    assert stored[0].startswith("tenant-a/u/")

    # A service that checks POST policies (not moto) refuses a key outside the folder.
    if post(answer, {**fields, "policy": fields["policy"][:-4] + "AAA="}, "x", b"x") < 300:
        return
    for outside in ("tenant-a/other.txt", "tenant-a/uploads/x", "tenant-b/u/x", "x"):
        assert post(answer, {**fields, "key": outside}, "x.txt", b"x") == 403, outside
    # What S3 cannot refuse: the file's name is put in verbatim, and a hand-made form may send
    # any key below the folder. Such keys stay below it, and listings leave them out.
    assert post(answer, fields, "../evil.txt", b"e") in (200, 201, 204)
    assert post(answer, {**fields, "key": "tenant-a/u/a//b"}, "b", b"b") in (200, 201, 204)
    assert keys_of(s3_admin, physical) == [
        "tenant-a/u/../evil.txt",
        "tenant-a/u/a//b",
        "tenant-a/u/photo.txt",
    ]
    listed = await daemon.call("s3.ListContents", {"bucket": "web", "deep": True})
    assert [entry["path"] for entry in listed["contents"]] == ["u/photo.txt"]

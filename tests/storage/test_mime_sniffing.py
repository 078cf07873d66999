"""MIME detection for writes: the extension first, then the content's first bytes.

Sniffing may only give a passive type (an image other than SVG, a PDF, an archive, plain text):
content that looks like HTML, SVG, XML or script gets ``application/octet-stream`` unless an
explicit ``content_type`` or the extension says otherwise, so an upload without an extension
cannot become stored XSS on a public bucket (issue 14).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import RunningDaemon, StartDaemon
from s3rpc.storage.mime import detect_mime_type, sniff_mime_type

OCTET = "application/octet-stream"
#: Content a browser would render or run as active content if it were stored as such.
ACTIVE_CONTENT = [
    b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>",
    b"\xef\xbb\xbf  <html><body onload=alert(1)>",
    b"<HEAD><script src=//evil.example/x.js></script>",
    b"<body><img src=x onerror=alert(1)>",
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
    b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
    b'<?xml version="1.0"?><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script>',
    b"<script>alert(1)</script>",
    b"<iframe src=javascript:alert(1)>",
    b"  \n<!-- comment --><html>",
]


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"\xff\xd8\xff\xe0JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
        (b"\x00asm\x01\x00\x00\x00", "application/wasm"),
        ("grüße, 世界\n".encode(), "text/plain"),
        ("ab€".encode()[:-1], "text/plain"),  # a character cut at the end of the sample
        (b"\x00\x01\x02\x03binary", "application/octet-stream"),
        (b"text with a \x07 bell", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniffing_recognises_content_by_its_first_bytes(head: bytes, expected: str) -> None:
    assert sniff_mime_type(head) == expected


def test_a_known_extension_wins_over_the_content() -> None:
    assert detect_mime_type("photo.css", b"\x89PNG\r\n\x1a\n") == "text/css"


def test_an_unknown_or_missing_extension_falls_back_to_sniffing() -> None:
    assert detect_mime_type("upload", b"%PDF-1.4") == "application/pdf"
    assert detect_mime_type("upload.unknownext", b"GIF87a") == "image/gif"


def test_without_content_at_hand_only_the_extension_counts() -> None:
    assert detect_mime_type("upload", None) == "application/octet-stream"


@pytest.mark.parametrize("head", ACTIVE_CONTENT)
def test_markup_is_never_sniffed_as_an_active_type(head: bytes) -> None:
    assert sniff_mime_type(head) == OCTET
    assert detect_mime_type("upload", head) == OCTET
    assert detect_mime_type("upload.unknownext", head) == OCTET


def test_extension_still_gives_an_active_type() -> None:
    html = ACTIVE_CONTENT[0]
    assert detect_mime_type("page.html", html) == "text/html"
    assert detect_mime_type("logo.svg", ACTIVE_CONTENT[4]) == "image/svg+xml"
    assert detect_mime_type("feed.xml", b"<?xml version='1.0'?><rss/>") in (
        "application/xml",
        "text/xml",
    )


# --- through the daemon: what S3 stores on a public bucket -------------------------------------


async def stored_type(daemon: RunningDaemon, s3_admin: Any, key: str) -> str:
    head = s3_admin.head_object(Bucket=daemon.buckets["uploads"], Key=key)
    return str(head["ContentType"])


async def upload_in_session(daemon: RunningDaemon, pathname: str, content: bytes) -> None:
    client = await daemon.client()
    started = await client.call("s3.UploadStart", {"pathname": pathname})
    await client.call("s3.UploadChunk", {"upload_id": started["upload_id"], "content": content})
    await client.call(
        "s3.UploadComplete", {"upload_id": started["upload_id"], "size": len(content)}
    )


@pytest.mark.parametrize("index", [0, 4, 5, 7])
async def test_extensionless_markup_is_stored_as_octet_stream_by_every_write_path(
    start_daemon: StartDaemon, s3_admin: Any, tmp_path: Path, index: int
) -> None:
    content = ACTIVE_CONTENT[index]
    daemon = await start_daemon(s3={"local_paths": [str(tmp_path)]})  # uploads: public
    await daemon.call("s3.Write", {"pathname": "w/page", "content": content})
    source = tmp_path / "source"
    source.write_bytes(content)
    await daemon.call("s3.WriteFromFile", {"pathname": "f/page", "source_path": str(source)})
    await upload_in_session(daemon, "u/page", content)
    for key in ("w/page", "f/page", "u/page"):
        assert await stored_type(daemon, s3_admin, key) == OCTET, key


async def test_extension_or_explicit_content_type_still_sets_an_active_type(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    html = ACTIVE_CONTENT[0]
    await daemon.call("s3.Write", {"pathname": "page.html", "content": html})
    await daemon.call("s3.Write", {"pathname": "logo.svg", "content": ACTIVE_CONTENT[4]})
    await daemon.call(
        "s3.Write", {"pathname": "explicit", "content": html, "content_type": "text/html"}
    )
    assert await stored_type(daemon, s3_admin, "page.html") == "text/html"
    assert await stored_type(daemon, s3_admin, "logo.svg") == "image/svg+xml"
    assert await stored_type(daemon, s3_admin, "explicit") == "text/html"


async def test_passive_types_are_still_sniffed(daemon: RunningDaemon, s3_admin: Any) -> None:
    await daemon.call("s3.Write", {"pathname": "img", "content": b"\x89PNG\r\n\x1a\n\x00\x00"})
    await daemon.call("s3.Write", {"pathname": "doc", "content": b"%PDF-1.7\n"})
    await daemon.call("s3.Write", {"pathname": "note", "content": b"just words\n"})
    assert await stored_type(daemon, s3_admin, "img") == "image/png"
    assert await stored_type(daemon, s3_admin, "doc") == "application/pdf"
    assert await stored_type(daemon, s3_admin, "note") == "text/plain"

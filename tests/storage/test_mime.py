"""MIME types from extensions."""

from __future__ import annotations

import pytest

from s3rpc.storage.mime import guess_mime_type


@pytest.mark.parametrize(
    ("pathname", "mime"),
    [
        ("site.css", "text/css"),
        ("app.js", "text/javascript"),
        ("mod.mjs", "text/javascript"),
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("photo.webp", "image/webp"),
        ("photo.avif", "image/avif"),
        ("code.wasm", "application/wasm"),
        ("README.md", "text/markdown"),
        ("PHOTO.JPG", "image/jpeg"),
        ("doc.pdf", "application/pdf"),
        ("page.html", "text/html"),
        ("noext", "application/octet-stream"),
        ("a.unknownext", "application/octet-stream"),
        ("dir.v2/file", "application/octet-stream"),
    ],
)
def test_mime_type_from_extension(pathname: str, mime: str) -> None:
    assert guess_mime_type(pathname) == mime

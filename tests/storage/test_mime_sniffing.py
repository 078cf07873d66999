"""MIME detection for writes: the extension first, then the content's first bytes."""

from __future__ import annotations

import pytest

from s3rpc.storage.mime import detect_mime_type, sniff_mime_type


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
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg">', "image/svg+xml"),
        (b"\xef\xbb\xbf<!DOCTYPE html><html>", "text/html"),
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

"""MIME types of objects: from the pathname's extension, else sniffed from the first bytes.

stdlib :mod:`mimetypes` reads the host's ``/etc/mime.types``, which differs between machines and
has historically been wrong for web assets; the types browsers care about are fixed here.

Sniffing only ever yields a *passive* type: images other than SVG, PDF, archives, audio, video,
fonts, plain text. Content that looks like markup (HTML, SVG, XML) or script is stored as
``application/octet-stream``: a browser downloads it instead of rendering it, so an upload
without an extension cannot become stored XSS on a public bucket. Only the writer's explicit
``content_type`` or the pathname's extension — both chosen by the application, never by the
uploaded bytes — may give an active type.
"""

from __future__ import annotations

import mimetypes
import posixpath

DEFAULT_MIME_TYPE = "application/octet-stream"

_FIXED: dict[str, str] = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".wasm": "application/wasm",
    ".md": "text/markdown",
    ".gz": "application/gzip",
}


def guess_mime_type(pathname: str) -> str:
    """The MIME type for ``pathname``'s extension, else ``application/octet-stream``."""
    ext = posixpath.splitext(pathname)[1].lower()
    if not ext:
        return DEFAULT_MIME_TYPE
    fixed = _FIXED.get(ext)
    if fixed is not None:
        return fixed
    guessed, _encoding = mimetypes.guess_type("x" + ext, strict=False)
    return guessed or DEFAULT_MIME_TYPE


#: How many leading bytes :func:`sniff_mime_type` looks at.
SNIFF_BYTES = 512

# (offset, signature, type), checked in order; the first match wins.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"\x28\xb5\x2f\xfd", "application/zstd"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"BM", "image/bmp"),
    (0, b"\x00\x00\x01\x00", "image/x-icon"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
    (0, b"wOFF", "font/woff"),
    (0, b"wOF2", "font/woff2"),
    (0, b"\x00asm", "application/wasm"),
    (4, b"ftypavif", "image/avif"),
    (4, b"ftypheic", "image/heic"),
    (4, b"ftypqt", "video/quicktime"),
    (4, b"ftyp", "video/mp4"),
)


def _riff(head: bytes) -> str | None:
    if head[:4] != b"RIFF":
        return None
    return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])


def _text(head: bytes) -> str | None:
    """``text/plain`` for bytes that decode as UTF-8 without control characters and do not look
    like markup; else None."""
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may cut a multi-byte character at its end.
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
        return None
    start = text.lstrip("\ufeff \t\r\n\f").lower()
    if start.startswith("<") or "<script" in text.lower():
        # HTML, SVG, XML or a script: never an active type from content (module docstring).
        return None
    if start.startswith("%!ps"):
        return "application/postscript"
    return "text/plain"


def sniff_mime_type(head: bytes | bytearray | memoryview | None) -> str:
    """The passive MIME type of content from its first bytes (magic numbers, then plain text);
    else ``application/octet-stream``, also for empty content and for anything that looks like
    markup or script."""
    if not head:
        return DEFAULT_MIME_TYPE
    sample = bytes(head[:SNIFF_BYTES])
    for offset, signature, mime in _MAGIC:
        if sample[offset : offset + len(signature)] == signature:
            return mime
    return _riff(sample) or _text(sample) or DEFAULT_MIME_TYPE


def detect_mime_type(pathname: str, head: bytes | bytearray | memoryview | None) -> str:
    """The MIME type from ``pathname``'s extension; when that is unknown, sniffed from ``head``
    (the content's first bytes, or None when they are not at hand)."""
    guessed = guess_mime_type(pathname)
    if guessed != DEFAULT_MIME_TYPE or head is None:
        return guessed
    return sniff_mime_type(head)

"""MIME types of object pathnames, guessed from the extension.

stdlib :mod:`mimetypes` reads the host's ``/etc/mime.types``, which differs between machines and
has historically been wrong for web assets; the types browsers care about are fixed here.
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

"""Presigned S3 URLs in microseconds: SigV4 query signing with the signing key derived once.

botocore presigns a URL by building and serialising a whole request, resolving its endpoint and
deriving the SigV4 signing key (four HMACs) every time: about 300 µs. :class:`Presigner` does
the per-call part only — the canonical request, the string to sign and one HMAC with a signing
key kept per (date, region, service) — and leaves everything that depends on configuration to
botocore: the first URL of each *shape* (bucket, HTTP method, names of the signed headers and
query parameters) is presigned by botocore itself, the endpoint part of that URL becomes the
shape's base, and the fast path is used for the shape only if it reproduces botocore's URL byte
for byte at botocore's timestamp. Anything else — credentials that refresh, another signature
version, a key or value botocore might treat specially, a shape that did not reproduce — is
presigned by botocore, every time.

Signing follows AWS SigV4 for query-string authentication (S3 flavour: the path is not
normalised, the payload is ``UNSIGNED-PAYLOAD``), exactly as ``botocore.auth.S3SigV4QueryAuth``
lays the URL out: the operation's query parameters in the order given, then ``X-Amz-Algorithm``,
``-Credential``, ``-Date``, ``-Expires``, ``-SignedHeaders``, ``-Security-Token``, and last
``X-Amz-Signature``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: Shapes remembered per client (each bucket has a few: GET, GET with overrides, PUT).
MAX_SHAPES = 1024
#: What SigV4 leaves unencoded in query names and values.
_QUERY_SAFE = "-_.~"
#: What botocore leaves unencoded in a greedy ``{Key+}`` path.
_PATH_SAFE = "/~"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The clock of the fast path (tests freeze it beside botocore's).
_now = time.time

Shape = tuple[str, str, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _Base:
    """What a shape's URLs share: everything up to the key, and the credential scope."""

    prefix: str  # scheme://host[:port][/endpoint path], the key follows after "/"
    path: str  # the endpoint path alone (canonical URI = path + "/" + encoded key)
    host: str  # the signed Host value
    region: str
    service: str


def _host_of(url: str) -> str:
    """The Host header botocore signs for ``url`` (lowercase, default port left out)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _static_credentials(client: Any) -> tuple[str, str, str | None] | None:
    """(access key, secret, token) of a client with fixed credentials; None otherwise."""
    from botocore.credentials import (  # type: ignore[import-untyped, unused-ignore]
        Credentials,
        RefreshableCredentials,
    )

    signer = getattr(client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)
    if not isinstance(credentials, Credentials) or isinstance(credentials, RefreshableCredentials):
        return None  # none at all, or refreshing ones: botocore handles those
    access_key, secret_key = credentials.access_key, credentials.secret_key
    if not access_key or not secret_key:
        return None
    return access_key, secret_key, credentials.token


class Presigner:
    """Fast SigV4 presigning for one (presign) client, proven against botocore per shape."""

    def __init__(self, client: Any) -> None:
        # Weak: the presigners live in a WeakKeyDictionary keyed by their client.
        self._client = weakref.ref(client)
        config = getattr(getattr(client, "meta", None), "config", None)
        self._credentials = (
            _static_credentials(client)
            if getattr(config, "signature_version", None) == "s3v4"
            else None
        )
        self._bases: dict[Shape, _Base | None] = {}
        self._scopes: dict[tuple[str, str, str], tuple[str, str, bytes]] = {}
        token = self._credentials[2] if self._credentials is not None else None
        self._token = (
            f"&X-Amz-Security-Token={quote(token, _QUERY_SAFE)}" if token is not None else ""
        )
        self._stamp_second = -1
        self._stamp = ""
        #: URLs presigned by botocore (the first of each shape, and every fallback); tests read it.
        self.slow = 0

    async def url(
        self,
        operation: str,
        method: str,
        params: Mapping[str, str],
        expires_in: int,
        *,
        query: Sequence[tuple[str, str, str]] = (),
        headers: Sequence[tuple[str, str, str]] = (),
    ) -> str:
        """Presign ``operation`` (``get_object``, ``put_object``) for ``params`` (Bucket, Key and
        the rest, as botocore takes them).

        ``query`` and ``headers`` describe the other params for the fast path: (param, query
        name, value) for each one S3 reads from the query (``response-content-type``…), (param,
        header name, value) for each signed header (``content-type``, ``x-amz-acl``), in the
        order botocore serialises them.
        """
        bucket, key = params["Bucket"], params["Key"]
        shape: Shape = (
            bucket,
            method,
            tuple(name for _, name, _ in headers),
            tuple(name for _, name, _ in query),
        )
        fast = self._credentials is not None and _plain(key, query, headers)
        if fast:
            base = self._bases.get(shape)
            if base is not None:
                return self._sign(base, method, key, query, headers, expires_in, None)
            if shape in self._bases:
                fast = False  # proven not to reproduce botocore: botocore from now on
        self.slow += 1
        client = self._client()
        if client is None:
            raise RuntimeError("the presigning client is closed")
        url: str = await client.generate_presigned_url(
            operation, Params=dict(params), ExpiresIn=expires_in, HttpMethod=method
        )
        if fast:
            self._learn(shape, url, method, key, query, headers, expires_in)
        return url

    def _learn(
        self,
        shape: Shape,
        url: str,
        method: str,
        key: str,
        query: Sequence[tuple[str, str, str]],
        headers: Sequence[tuple[str, str, str]],
        expires_in: int,
    ) -> None:
        """Take ``shape``'s base from botocore's ``url``; keep it if signing reproduces ``url``."""
        if len(self._bases) >= MAX_SHAPES:
            self._bases.clear()
        base = _base_from(url, key, self._credentials)
        if base is not None:
            stamp = dict(parse_qsl(urlsplit(url).query)).get("X-Amz-Date", "")
            if self._sign(base, method, key, query, headers, expires_in, stamp) != url:
                base = None
        self._bases[shape] = base

    def _scope(self, date: str, region: str, service: str) -> tuple[str, str, bytes]:
        """(credential scope, encoded X-Amz-Credential, signing key), derived once per date."""
        cache_key = (date, region, service)
        found = self._scopes.get(cache_key)
        if found is None:
            assert self._credentials is not None
            access_key, secret, _ = self._credentials
            scope = f"{date}/{region}/{service}/aws4_request"
            signing_key = f"AWS4{secret}".encode()
            for part in (date, region, service, "aws4_request"):
                signing_key = hmac.digest(signing_key, part.encode(), "sha256")
            if len(self._scopes) >= 16:
                self._scopes.clear()  # older dates
            found = (scope, quote(f"{access_key}/{scope}", _QUERY_SAFE), signing_key)
            self._scopes[cache_key] = found
        return found

    def _timestamp(self) -> str:
        now = int(_now())
        if now != self._stamp_second:
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            self._stamp_second = now
        return self._stamp

    def _sign(
        self,
        base: _Base,
        method: str,
        key: str,
        query: Sequence[tuple[str, str, str]],
        headers: Sequence[tuple[str, str, str]],
        expires_in: int,
        stamp: str | None,
    ) -> str:
        stamp = stamp or self._timestamp()
        scope, credential, signing_key = self._scope(stamp[:8], base.region, base.service)
        signed = sorted([("host", base.host), *((name, value) for _, name, value in headers)])
        signed_names = ";".join(name for name, _ in signed)
        pairs = [
            f"{quote(name, _QUERY_SAFE)}={quote(value, _QUERY_SAFE)}" for _, name, value in query
        ]
        # In the order botocore writes them; the canonical query sorts (name, value) pairs.
        auth_query = (
            f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={stamp}"
            f"&X-Amz-Expires={expires_in}"
            f"&X-Amz-SignedHeaders={quote(signed_names, _QUERY_SAFE)}{self._token}"
        )
        path = quote(key, _PATH_SAFE)
        canonical = "\n".join(
            (
                method,
                f"{base.path}/{path}",
                "&".join(sorted([*auth_query.split("&"), *pairs], key=_name_value)),
                "".join(f"{name}:{' '.join(value.split())}\n" for name, value in signed),
                signed_names,
                UNSIGNED_PAYLOAD,
            )
        )
        string_to_sign = (
            f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(signing_key, string_to_sign.encode(), "sha256").hexdigest()
        query_string = "&".join([*pairs, auth_query])
        return f"{base.prefix}/{path}?{query_string}&X-Amz-Signature={signature}"


def _name_value(pair: str) -> list[str]:
    return pair.split("=", 1)


def _plain(
    key: str, query: Sequence[tuple[str, str, str]], headers: Sequence[tuple[str, str, str]]
) -> bool:
    """Whether the fast path covers these values exactly as botocore treats them."""
    if not key or key.startswith("/") or not key.isprintable():
        return False
    try:
        key.encode()
        for _, _, value in query:
            if not value:
                return False  # botocore keeps or drops empty values by its own rules
            value.encode()
    except UnicodeEncodeError:
        return False  # lone surrogates: botocore raises its own error
    # Header values are signed as sent: printable ASCII only.
    return all(value and value.isascii() and value.isprintable() for _, _, value in headers)


def _base_from(url: str, key: str, credentials: tuple[str, str, str | None] | None) -> _Base | None:
    """The endpoint part and credential scope of a URL botocore presigned for ``key``."""
    if credentials is None:
        return None
    location, _, query = url.partition("?")
    suffix = f"/{quote(key, _PATH_SAFE)}"
    if not location.endswith(suffix):
        return None
    prefix = location[: -len(suffix)]
    parts = urlsplit(prefix)
    if parts.query or parts.fragment or not parts.hostname:
        return None
    credential = dict(parse_qsl(query)).get("X-Amz-Credential", "")
    fields = credential.split("/")
    if len(fields) != 5 or fields[0] != credentials[0] or fields[4] != "aws4_request":
        return None
    return _Base(
        prefix=prefix, path=parts.path, host=_host_of(prefix), region=fields[2], service=fields[3]
    )


_PRESIGNERS: weakref.WeakKeyDictionary[Any, Presigner] = weakref.WeakKeyDictionary()


def presigner(client: Any) -> Presigner:
    """The :class:`Presigner` of ``client`` (one per client, made on first use)."""
    found = _PRESIGNERS.get(client)
    if found is None:
        found = _PRESIGNERS[client] = Presigner(client)
    return found

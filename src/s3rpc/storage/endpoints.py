"""Which S3 service an endpoint reaches: host identity, same-service checks, forbidden addresses.

Two logical buckets may reach one physical bucket through different clients (another
``read_timeout``, ``localhost`` vs ``127.0.0.1``, a RegisterBucket twin). Whether a copy's source
and destination are the same object is therefore decided here, from the *service* (normalised
host and port, optionally the resolved addresses) plus bucket and key — never from which client
object happens to be used.

The same host normalisation serves the ``s3.register`` policy: link-local and cloud-metadata
addresses are refused however they are spelt (``169.254.169.254``, ``[fe80::1]``,
``metadata.google.internal``, a name that resolves to one, ``::ffff:169.254.169.254`` …).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass
from socket import inet_aton  # a pure parser, no socket: see tests/test_layering.py
from urllib.parse import urlsplit

from s3rpc.config import ServerConfig

LOOPBACK = "loopback"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: How long a host name may take to resolve when it matters (a policy check, a same-object test).
RESOLVE_TIMEOUT = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Link-local ranges and the cloud instance-metadata services (AWS, GCP, Azure, Alibaba, OCI, …).
FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local: AWS/GCP/Azure/OCI metadata at 169.254.169.254
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",  # Oracle Cloud legacy metadata
    )
)
#: Names of metadata services, refused before (and whether or not) they resolve.
FORBIDDEN_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_IPV4 = re.compile(r"[0-9][0-9a-fA-FxX.]*", re.ASCII)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint URL reduced to what identifies the service behind it."""

    scheme: str
    host: str  # normalised: see normalise_host
    port: int
    path: str

    @property
    def identity(self) -> str:
        """Scheme-less ``host:port/path``; equal identities reach the same service."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}{self.path}"


def _numeric_ipv4(host: str) -> IPAddress | None:
    """The IPv4 forms inet_aton (so getaddrinfo) reads: 127.1, 0x7f.0.0.1, 0177.1, 2130706433."""
    # inet_aton itself would also take "1.2.3.4 anything" (it stops at whitespace).
    if _NUMERIC_IPV4.fullmatch(host) is None:
        return None
    try:
        return ipaddress.IPv4Address(inet_aton(host))
    except OSError:
        return None


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 IPv6 address; else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def host_address(host: str) -> IPAddress | None:
    """The IP address a host literal denotes (any spelling), or None for a name."""
    text = host.strip("[]")
    try:
        ip: IPAddress = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        numeric = _numeric_ipv4(text)
        if numeric is None:
            return None
        ip = numeric
    return unwrap(ip)


def _normal_ip(ip: IPAddress) -> str:
    ip = unwrap(ip)
    return LOOPBACK if ip.is_loopback else str(ip)


def normalise_host(host: str) -> str:
    """Lowercase, no trailing dot, IPs in one canonical spelling, every loopback as LOOPBACK."""
    host = host.lower().rstrip(".")
    ip = host_address(host)
    if ip is not None:
        return _normal_ip(ip)
    if host == "localhost" or host.endswith(".localhost"):
        return LOOPBACK
    return host


def parse_endpoint(url: str) -> Endpoint:
    """The :class:`Endpoint` of an ``http(s)://host[:port][/path]`` URL; ValueError if bad."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query or fragment")
    host = parts.hostname
    if not host:
        raise ValueError("must name a host")
    port = parts.port  # raises ValueError for a bad port
    return Endpoint(
        scheme=scheme,
        host=normalise_host(host),
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        path=parts.path.rstrip("/"),
    )


def _aws_partition(region: str) -> str:
    for prefix, partition in (
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
    ):
        if region.startswith(prefix):
            return partition
    return "aws"


def service_identity(server: ServerConfig) -> str:
    """Which S3 service ``server`` talks to (bucket names are unique within one)."""
    if not server.endpoint:
        return f"aws:{_aws_partition(server.region)}"
    endpoint = parse_endpoint(server.endpoint)
    if endpoint.host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return f"aws:{_aws_partition(server.region)}"
    return endpoint.identity


async def resolve(host: str, port: int, timeout: float = RESOLVE_TIMEOUT) -> set[IPAddress]:
    """Every address ``host`` resolves to (loop.getaddrinfo, bounded by ``timeout``)."""
    literal = host_address(host)
    if literal is not None:
        return {literal}
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port)
    return {unwrap(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos}


async def same_service(a: ServerConfig, b: ServerConfig) -> bool:
    """Whether two server configs reach the same S3 service.

    Equal identities are the same service. Otherwise two endpoints on one port whose host names
    resolve to a common address are too. If a name cannot be resolved the answer is True: the
    caller then treats source and destination as one object, which can fail a copy but can
    never delete the only copy of an object.
    """
    first, second = service_identity(a), service_identity(b)
    if first == second:
        return True
    if first.startswith("aws:") or second.startswith("aws:"):
        return False
    one, two = parse_endpoint(a.endpoint), parse_endpoint(b.endpoint)
    if one.port != two.port or one.path != two.path:
        return False
    try:
        return bool(await _addresses(one) & await _addresses(two))
    except (OSError, TimeoutError, ValueError):
        return True


async def _addresses(endpoint: Endpoint) -> set[str]:
    """Normalised addresses of an endpoint's host (LOOPBACK for any loopback one)."""
    if endpoint.host == LOOPBACK or host_address(endpoint.host) is not None:
        return {endpoint.host}  # already an address, normalised
    return {_normal_ip(ip) for ip in await resolve(endpoint.host, endpoint.port)}


class ForbiddenAddressError(OSError):
    """A host name resolved to a link-local or cloud-metadata address when a client connected
    (:mod:`s3rpc.storage.resolver`). An OSError, so aiohttp reports it as a failed lookup."""

    def __init__(self, host: str) -> None:
        super().__init__(f"'{host}' resolves to a link-local or cloud metadata address")
        self.host = host


def forbidden_address(ip: IPAddress) -> bool:
    """A link-local or cloud-metadata address, whatever IPv6 wrapping it comes in."""
    ip = unwrap(ip)
    return any(ip.version == net.version and ip in net for net in FORBIDDEN_NETWORKS)


def forbidden_name(host: str) -> bool:
    return host.lower().rstrip(".") in FORBIDDEN_NAMES

"""The ``s3.register`` policy: which buckets ``s3.RegisterBucket`` may add, before any client.

A registered bucket is chosen by whoever can reach the RPC socket, so it must not turn the
daemon into a proxy to internal services or a signer for its own credentials:

- it must carry credentials or reference a configured ``server`` unless
  ``allow_ambient_credentials`` (never sign with the daemon's own credentials by default);
- inline credentials only if ``allow_credentials``;
- its endpoint must match ``allowed_endpoints`` (empty: a configured server's endpoint, or AWS
  when none is given);
- link-local and cloud-metadata addresses are always refused, also behind a host name that
  resolves to one;
- at most ``max_registered`` buckets.

Every refusal is INVALID_CONFIG naming the field; nothing here sends a request to the endpoint.
"""

from __future__ import annotations

from s3rpc.config import BucketConfig, RegisterPolicy, S3Config, ServerConfig
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.endpoints import (
    RESOLVE_TIMEOUT,
    Endpoint,
    forbidden_address,
    forbidden_name,
    host_address,
    normalise_host,
    parse_endpoint,
    resolve,
)


def _refuse(message: str) -> S3RpcError:
    return S3RpcError(ErrorCode.INVALID_CONFIG, message)


def check_credentials(policy: RegisterPolicy, bucket: BucketConfig) -> None:
    """Refuse inline credentials when not allowed, and a bucket that would sign with ours."""
    if bucket.server is not None:
        return  # the operator's own server, with the credentials the operator gave it
    creds = bucket.credentials
    given = creds is not None and (creds.key != "" or creds.secret.get_secret_value() != "")
    if given and not policy.allow_credentials:
        raise _refuse(
            "credentials: inline credentials are not allowed: s3.register.allow_credentials "
            "is false; reference a configured server with 'server'"
        )
    if given and creds is not None and (not creds.key or not creds.secret.get_secret_value()):
        raise _refuse("credentials: both 'key' and 'secret' are required")
    if not given and not policy.allow_ambient_credentials:
        raise _refuse(
            "credentials: a registered bucket needs 'credentials' or a configured 'server', "
            "as s3.register.allow_ambient_credentials is false"
        )


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        suffix = normalise_host(pattern[2:])
        return host.endswith("." + suffix)
    return normalise_host(pattern) == host


def _entry_matches(entry: str, endpoint: Endpoint) -> bool:
    if "://" in entry:
        allowed = parse_endpoint(entry)
        return (
            allowed.scheme == endpoint.scheme
            and allowed.host == endpoint.host
            and allowed.port == endpoint.port
            and (endpoint.path + "/").startswith(allowed.path + "/")
        )
    # A bare host, [v6] or host:port entry.
    port: int | None = None
    host = entry
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    elif entry.count(":") == 1:
        host, _, text = entry.partition(":")
        port = int(text) if text.isdigit() else None
    return _host_matches(host, endpoint.host) and (port is None or port == endpoint.port)


def _aws_endpoint(server: ServerConfig) -> Endpoint:
    suffix = "amazonaws.com.cn" if server.region.startswith("cn-") else "amazonaws.com"
    return Endpoint("https", f"s3.{server.region.lower()}.{suffix}", 443, "")


def check_endpoint_allowed(s3: S3Config, server: ServerConfig) -> Endpoint | None:
    """The registered server's endpoint if ``allowed_endpoints`` permits it (None for AWS)."""
    entries = s3.register_policy.allowed_endpoints
    if not server.endpoint:
        if not entries or any(_entry_matches(e, _aws_endpoint(server)) for e in entries):
            return None
        raise _refuse("endpoint: AWS (no endpoint) is not in s3.register.allowed_endpoints")
    try:
        endpoint = parse_endpoint(server.endpoint)
    except ValueError as exc:
        raise _refuse(f"endpoint: {exc}") from None
    if entries:
        allowed = any(_entry_matches(entry, endpoint) for entry in entries)
    else:
        allowed = False
        for configured in s3.servers.values():
            if configured.endpoint:
                known = parse_endpoint(configured.endpoint)
                allowed = allowed or (
                    known.scheme == endpoint.scheme and known.identity == endpoint.identity
                )
    if not allowed:
        raise _refuse(
            "endpoint: not allowed for a registered bucket by s3.register.allowed_endpoints, "
            "which when empty allows only the endpoints of configured servers"
        )
    return endpoint


async def check_not_internal(url: str, *, timeout: float = RESOLVE_TIMEOUT) -> None:
    """Refuse a URL whose host is, or resolves to, a link-local or metadata address."""
    parts = parse_endpoint(url)
    host = parts.host
    if forbidden_name(host):
        raise _refuse("endpoint: cloud metadata services are never allowed")
    literal = host_address(host)
    if literal is not None:
        addresses = {literal}
    elif host == "loopback":
        return
    else:
        try:
            addresses = await resolve(host, parts.port, timeout)
        except TimeoutError:
            raise _refuse(f"endpoint: its host did not resolve within {timeout:g}s") from None
        except (OSError, ValueError):
            raise _refuse("endpoint: its host name could not be resolved") from None
    if any(forbidden_address(ip) for ip in addresses):
        raise _refuse(
            "endpoint: link-local and cloud metadata addresses such as 169.254.0.0/16 "
            "and fe80::/10 are never allowed"
        )


async def check_register_policy(s3: S3Config, bucket: BucketConfig, registered: int) -> None:
    """Everything :mod:`s3rpc.storage.policy` refuses, in the order cheapest first."""
    policy = s3.register_policy
    if registered >= policy.max_registered:
        raise _refuse(
            f"name: {registered} buckets are already registered, "
            f"the limit set by s3.register.max_registered"
        )
    check_credentials(policy, bucket)
    if bucket.server is not None:
        return  # a configured server: the operator chose its endpoint
    server = bucket.inline_server()
    endpoint = check_endpoint_allowed(s3, server)
    if endpoint is not None:
        await check_not_internal(server.endpoint)

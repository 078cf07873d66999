"""Endpoint identity (which S3 service a URL reaches) and the addresses RegisterBucket refuses."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from s3rpc.config import ServerConfig
from s3rpc.storage.endpoints import (
    forbidden_address,
    host_address,
    parse_endpoint,
    same_service,
    service_identity,
)

from .conftest import MakeStorage, random_bucket, server_spec


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("http://localhost:9000", "http://127.0.0.1:9000"),
        ("http://LOCALHOST.:9000/", "http://[::1]:9000"),
        ("http://127.0.0.2:9000", "http://127.1:9000"),
        ("http://minio.example.com", "http://MinIO.Example.com.:80"),
        ("https://s3.example.com", "https://s3.example.com:443/"),
        ("http://[::ffff:127.0.0.1]:9000", "http://2130706433:9000"),
    ],
)
def test_spellings_of_one_service_have_one_identity(one: str, two: str) -> None:
    assert parse_endpoint(one).identity == parse_endpoint(two).identity


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:9001"),
        ("http://s3.example.com", "https://s3.example.com"),
        ("http://a.example.com", "http://b.example.com"),
        ("http://h:9000/one", "http://h:9000/two"),
    ],
)
def test_different_services_have_different_identities(one: str, two: str) -> None:
    assert parse_endpoint(one).identity != parse_endpoint(two).identity


def test_aws_by_region_and_by_endpoint_is_one_service_per_partition() -> None:
    plain = ServerConfig(region="eu-west-1")
    named = ServerConfig(region="eu-west-1", endpoint="https://s3.eu-west-1.amazonaws.com")
    china = ServerConfig(region="cn-north-1")
    assert service_identity(plain) == service_identity(named) == "aws:aws"
    assert service_identity(china) == "aws:aws-cn"


async def test_same_service_compares_resolved_addresses_of_names() -> None:
    # "localhost" is normalised; a name that resolves to no common address is another service.
    assert await same_service(
        ServerConfig(endpoint="http://localhost:9000"), ServerConfig(endpoint="http://[::1]:9000")
    )
    assert not await same_service(
        ServerConfig(endpoint="http://127.0.0.1:9000"),
        ServerConfig(endpoint="http://10.0.0.1:9000"),
    )


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",
        "0xa9.0xfe.0xa9.0xfe",
        "[fe80::1%25eth0]",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "fd00:ec2::254",
        "100.100.100.200",
    ],
)
def test_link_local_and_metadata_addresses_are_forbidden_in_any_spelling(host: str) -> None:
    ip = host_address(host.replace("%25", "%"))
    assert ip is not None
    assert forbidden_address(ip)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "::1", "2001:db8::1", "169.253.1.1"])
def test_ordinary_addresses_are_not_forbidden(host: str) -> None:
    assert not forbidden_address(ipaddress.ip_address(host))


async def test_twin_buckets_use_different_clients_and_move_keeps_the_object(
    make_storage: MakeStorage, s3_endpoint: str, s3_admin: Any
) -> None:
    physical = random_bucket("twin")
    s3_admin.create_bucket(Bucket=physical)
    storage = await make_storage(
        {"a": {"server": "local", "bucket": physical}, "b": {"server": "slow", "bucket": physical}},
        servers={"slow": server_spec(s3_endpoint, read_timeout=31)},
    )
    # Different clients for one physical bucket: client identity cannot tell "same object".
    assert storage.manager.get("a").client is not storage.manager.get("b").client
    await storage.call("s3.Write", {"bucket": "a", "pathname": "k", "content": b"only copy"})
    await storage.call(
        "s3.Move",
        {"source_bucket": "a", "source_pathname": "k", "dest_bucket": "b", "dest_pathname": "k"},
    )
    assert s3_admin.get_object(Bucket=physical, Key="k")["Body"].read() == b"only copy"

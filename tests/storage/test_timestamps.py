"""The fast timestamp parser returns exactly what botocore's parse_timestamp returns."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from botocore.utils import (  # type: ignore[import-untyped, unused-ignore]
    parse_timestamp as botocore_parse_timestamp,
)
from hypothesis import given
from hypothesis import strategies as st

from s3rpc.storage import timestamps
from s3rpc.storage.timestamps import parse_timestamp

from .conftest import Storage

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def both(value: Any) -> tuple[Any, Any]:
    results = []
    for parse in (parse_timestamp, botocore_parse_timestamp):
        try:
            parsed = parse(value)
        except ValueError as exc:
            results.append(("ValueError", str(exc)))
        else:
            # The same instant, aware, at the same offset. (dateutil itself answers tzutc() or
            # tzlocal() for "Z" depending on the machine's zone; both are UTC here.)
            results.append((parsed, parsed.utcoffset()))
    return results[0], results[1]


@given(
    st.datetimes(min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2200, 1, 1))
)
def test_rfc1123_headers_parse_as_botocore_parses_them(when: datetime.datetime) -> None:
    text = when.strftime(f"{DAYS[when.weekday()]}, %d {MONTHS[when.month - 1]} %Y %H:%M:%S GMT")
    fast, slow = both(text)
    assert fast == slow


@given(
    st.datetimes(min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2200, 1, 1)),
    st.sampled_from(["", ".000", ".5", ".123", ".123456"]),
)
def test_iso8601_timestamps_parse_as_botocore_parses_them(
    when: datetime.datetime, fraction: str
) -> None:
    fast, slow = both(when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z")
    assert fast == slow


@pytest.mark.parametrize(
    "text",
    [
        "Mon, 30 Feb 2016 23:59:59 GMT",  # no such day
        "Tue, 06 Nov 1994 08:49:37 GMT",  # wrong weekday
        "Sun, 06 Nov 1994 08:49:60 GMT",  # leap second
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "2026-03-04T05:06:07.1234567Z",
        "2026-03-04T05:06:07+02:00",
        "2026-03-04 05:06:07",
        "2026-02-30T05:06:07Z",
        "1700000000",
        "1700000000.5",
        "not a time",
        "",
    ],
)
def test_other_forms_give_what_botocore_gives(text: str) -> None:
    fast, slow = both(text)
    assert fast == slow


def test_numbers_give_what_botocore_gives() -> None:
    fast, slow = both(1700000000)
    assert fast == slow
    assert fast[0] == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)


async def test_bucket_manager_clients_parse_with_it(storage: Storage) -> None:
    bucket = storage.manager.get("files")
    factory = bucket.client._endpoint._response_parser_factory
    assert factory._defaults["timestamp_parser"] is timestamps.parse_timestamp
    written = await storage.call("s3.Write", {"pathname": "t.txt", "content": b"t"})
    metadata = await storage.call("s3.GetMetadata", {"pathname": "t.txt"})
    assert abs(metadata["last_modified"] - written["last_modified"]) <= 1
    listed = await storage.call("s3.ListContents", {"deep": True})
    assert any(item["last_modified"] == metadata["last_modified"] for item in listed["contents"])

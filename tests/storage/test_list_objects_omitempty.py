"""s3.ListObjects leaves out ``next_continuation_token`` and ``common_prefixes`` when empty, as the
Go plugin's ``omitempty`` does, so PHP written for it (``while (isset($r[...]))``) terminates."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.parametrize("codec", ["json", "msgpack"])

NAMES = ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]
#: More pages than 5 objects at 2 per page can take: the old "" token looped for ever.
MAX_PAGES = 10


async def test_a_php_isset_loop_ends_with_exactly_the_keys(daemon: Any, codec: Any) -> None:
    client = await daemon.client(codec)
    for name in NAMES:
        await client.call("s3.Write", {"pathname": f"loop/{name}", "content": b"x"})
    # $params = ['prefix' => 'loop/', 'max_keys' => 2];
    # do { $r = $rpc->call('s3.ListObjects', $params); ...;
    #      $params['continuation_token'] = $r['next_continuation_token'] ?? null; }
    # while (isset($r['next_continuation_token']));
    params: dict[str, Any] = {"prefix": "loop/", "max_keys": 2}
    keys: list[str] = []
    pages = 0
    with_prefixes = False
    while True:
        result = await client.call("s3.ListObjects", params)
        pages += 1
        keys += [item["key"] for item in result["objects"]]
        with_prefixes = with_prefixes or "common_prefixes" in result
        if "next_continuation_token" not in result:
            break
        assert result["next_continuation_token"]
        assert pages < MAX_PAGES, f"still paging after {pages} pages: {keys}"
        params["continuation_token"] = result["next_continuation_token"]
    assert keys == [f"loop/{name}" for name in NAMES]
    assert pages == 3
    assert result["is_truncated"] is False
    assert not with_prefixes  # no delimiter: no prefixes, so the key is left out


async def test_common_prefixes_are_present_only_when_there_are_some(
    daemon: Any, codec: Any
) -> None:
    client = await daemon.client(codec)
    await client.call("s3.Write", {"pathname": "tree/dir/x.txt", "content": b"x"})
    await client.call("s3.Write", {"pathname": "tree/top.txt", "content": b"x"})
    grouped = await client.call("s3.ListObjects", {"prefix": "tree/", "delimiter": "/"})
    assert grouped["common_prefixes"] == [{"prefix": "tree/dir/"}]
    assert [item["key"] for item in grouped["objects"]] == ["tree/top.txt"]
    assert "next_continuation_token" not in grouped
    flat = await client.call("s3.ListObjects", {"prefix": "tree/dir/", "delimiter": "/"})
    assert "common_prefixes" not in flat
    assert [item["key"] for item in flat["objects"]] == ["tree/dir/x.txt"]

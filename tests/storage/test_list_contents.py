"""s3.ListContents (Flysystem-style, deep and shallow, paginated) and s3.Exists on "dir/",
through the daemon's socket."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningDaemon, StartDaemon
from s3rpc.client import RpcError

from .test_batch import put_many

TREE = ["top.txt", "a/one.txt", "a/two.txt", "a/b/deep.txt", "a/b/c/deeper.txt", "z/last.txt"]


@pytest.fixture
async def tree(start_daemon: StartDaemon, s3_admin: Any) -> RunningDaemon:
    """Bucket ``files`` (prefix ``app/``) holding :data:`TREE`, a marker ``app/empty/`` and
    keys outside the prefix that must never show."""
    daemon = await start_daemon({"files": {"prefix": "app"}})
    physical = daemon.buckets["files"]
    put_many(s3_admin, physical, ["app/" + name for name in TREE] + ["outside.txt", "apple.txt"])
    s3_admin.put_object(Bucket=physical, Key="app/empty/", Body=b"")
    return daemon


def paths(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["type"], entry["path"]) for entry in result["contents"]]


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_shallow_listing_shows_files_and_directories_of_one_level(
    tree: RunningDaemon, codec: Any
) -> None:
    client = await tree.client(codec)
    root = await client.call("s3.ListContents", {})
    assert paths(root) == [
        ("dir", "a"),
        ("dir", "empty"),
        ("file", "top.txt"),
        ("dir", "z"),
    ]
    assert root["next_token"] == ""
    file = next(entry for entry in root["contents"] if entry["type"] == "file")
    assert file["file_size"] == 1
    assert isinstance(file["last_modified"], int)
    assert file["visibility"] is None
    assert file["mime_type"] is None
    directory = root["contents"][0]
    assert directory == {"type": "dir", "path": "a", "last_modified": None}
    for prefix in ("a", "a/"):
        sub = await client.call("s3.ListContents", {"prefix": prefix, "deep": False})
        assert paths(sub) == [("dir", "a/b"), ("file", "a/one.txt"), ("file", "a/two.txt")]


async def test_deep_listing_shows_every_file_below_and_directory_markers(
    tree: RunningDaemon,
) -> None:
    everything = await tree.call("s3.ListContents", {"deep": True})
    assert paths(everything) == [
        ("file", "a/b/c/deeper.txt"),
        ("file", "a/b/deep.txt"),
        ("file", "a/one.txt"),
        ("file", "a/two.txt"),
        ("dir", "empty"),
        ("file", "top.txt"),
        ("file", "z/last.txt"),
    ]
    under = await tree.call("s3.ListContents", {"prefix": "a/b", "deep": True})
    assert paths(under) == [("file", "a/b/c/deeper.txt"), ("file", "a/b/deep.txt")]


async def test_a_directory_does_not_list_its_own_marker(tree: RunningDaemon) -> None:
    assert (await tree.call("s3.ListContents", {"prefix": "empty"}))["contents"] == []
    assert (await tree.call("s3.ListContents", {"prefix": "empty", "deep": True}))["contents"] == []


async def test_listing_pages_with_an_opaque_token_over_2500_keys(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start_daemon({"files": {"prefix": "app"}})
    names = [f"d/{i:05d}.txt" for i in range(2500)]
    put_many(s3_admin, daemon.buckets["files"], ["app/" + n for n in names])
    seen: list[str] = []
    token = ""
    pages = 0
    for _ in range(10):  # bounded: 3 pages expected
        page = await daemon.call("s3.ListContents", {"prefix": "d", "deep": True, "token": token})
        pages += 1
        seen.extend(entry["path"] for entry in page["contents"])
        token = page["next_token"]
        if not token:
            break
    assert pages == 3
    assert seen == names
    small = await daemon.call("s3.ListContents", {"prefix": "d", "deep": True, "max_keys": 7})
    assert len(small["contents"]) == 7
    assert small["next_token"]


async def test_a_token_of_another_listing_is_refused(tree: RunningDaemon) -> None:
    first = await tree.call("s3.ListContents", {"deep": True, "max_keys": 2})
    assert first["next_token"]
    for params in (
        {"deep": False, "token": first["next_token"]},
        {"deep": True, "prefix": "a", "token": first["next_token"]},
        {"deep": True, "token": "not-a-token"},
    ):
        with pytest.raises(RpcError) as caught:
            await tree.call("s3.ListContents", {"max_keys": 2, **params})
        assert caught.value.code == "INVALID_REQUEST"
        assert "token" in caught.value.message
    second = await tree.call(
        "s3.ListContents", {"deep": True, "max_keys": 2, "token": first["next_token"]}
    )
    assert paths(second) == [("file", "a/one.txt"), ("file", "a/two.txt")]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"prefix": "../x"}, "INVALID_PATHNAME"),
        ({"prefix": "/a"}, "INVALID_PATHNAME"),
        ({"deep": "yes"}, "INVALID_REQUEST"),
        ({"deep": 1}, "INVALID_REQUEST"),
        ({"max_keys": "10"}, "INVALID_REQUEST"),
        ({"recursive": True}, "INVALID_REQUEST"),
    ],
)
async def test_list_contents_refuses_bad_params(
    tree: RunningDaemon, params: dict[str, Any], code: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await tree.call("s3.ListContents", params)
    assert caught.value.code == code


async def test_exists_on_a_directory_answers_whether_anything_is_under_it(
    tree: RunningDaemon,
) -> None:
    async def exists(pathname: str) -> bool:
        result = await tree.call("s3.Exists", {"pathname": pathname})
        return bool(result["exists"])

    assert await exists("a/") is True
    assert await exists("a/b/c/") is True
    assert await exists("empty/") is True  # only its marker
    assert await exists("missing/") is False
    assert await exists("top.txt/") is False  # a file is not a directory
    assert await exists("a") is False  # without "/": the object "a", which does not exist
    assert await exists("top.txt") is True


@pytest.mark.parametrize("pathname", ["/", "//", "a//", "../", "a/../"])
async def test_exists_refuses_a_directory_that_is_not_valid(
    tree: RunningDaemon, pathname: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await tree.call("s3.Exists", {"pathname": pathname})
    assert caught.value.code == "INVALID_PATHNAME"


async def test_a_trailing_slash_is_still_refused_by_other_object_methods(
    tree: RunningDaemon,
) -> None:
    for method in ("s3.Read", "s3.Delete", "s3.GetMetadata"):
        with pytest.raises(RpcError) as caught:
            await tree.call(method, {"pathname": "a/"})
        assert caught.value.code == "INVALID_PATHNAME", method


REFUSED_KEYS = ["u/../../x.txt", "u/../evil name.txt", "u/a//b.txt", "u/./c.txt", "u/ctl\x01.txt"]


@pytest.mark.parametrize("deep", [False, True])
async def test_keys_the_daemon_refuses_are_left_out_of_listings(
    start_daemon: StartDaemon, s3_admin: Any, deep: bool
) -> None:
    # Other writers (a browser's POST form with ${filename}, another S3 client) can store keys
    # that are no valid pathname; PHP must never be handed one as a path.
    daemon = await start_daemon({"files": {"prefix": "app"}})
    physical = daemon.buckets["files"]
    put_many(s3_admin, physical, ["app/" + key for key in [*REFUSED_KEYS, "u/ok.txt", "u/a/d.txt"]])
    listed: list[tuple[str, str]] = []
    for prefix in ("", "u", "u/a", "u/a/"):
        listed += paths(await daemon.call("s3.ListContents", {"prefix": prefix, "deep": deep}))
    for _, path in listed:
        await daemon.call("s3.Exists", {"bucket": "files", "pathname": path})  # a valid pathname
    if deep:
        assert sorted(set(listed)) == [("file", "u/a/d.txt"), ("file", "u/ok.txt")]
    else:
        assert sorted(set(listed)) == [
            ("dir", "u"),
            ("dir", "u/a"),
            ("file", "u/a/d.txt"),
            ("file", "u/ok.txt"),
        ]

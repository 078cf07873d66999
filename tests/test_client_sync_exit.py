"""The blocking ``Client`` leaves nothing pending: no "Task was destroyed but it is pending!" on
exit, whether the script closes it, leaves ``with``, or forgets it."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from typing import Any

import pytest

WAIT = 60  # seconds: bound for one script run (interpreter start, imports, one call)

SCRIPTS = {
    "never-closed": """
        c = Client(ADDRESS)
        print(c.call("s3.ListBuckets", {})["default"])
    """,
    "out-of-scope": """
        def listed():
            c = Client(ADDRESS)
            return c.call("s3.ListBuckets", {})["default"]
        print(listed())
        import gc
        gc.collect()
    """,
    "closed-after-an-error": """
        c = Client(ADDRESS)
        try:
            c.call("s3.Read", {"pathname": "missing.txt"})
        except RpcError as exc:
            print(exc.code)
        c.close()
        c.close()  # a second close does nothing
    """,
    "with-block": """
        with Client(ADDRESS, codec="msgpack") as c:
            print(c.call("s3.ListBuckets", {})["default"])
    """,
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
async def test_sync_client_exits_without_a_pending_task(daemon: Any, name: str) -> None:
    script = "from s3rpc.client import Client, RpcError\n" + textwrap.dedent(SCRIPTS[name])
    # The daemon runs on this test's loop: run the script without blocking it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-c",
        script.replace("ADDRESS", repr(daemon.address)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == (
        ["FILE_NOT_FOUND"] if name == "closed-after-an-error" else ["uploads"]
    )
    assert "Task was destroyed" not in err.decode()
    assert "unclosed" not in err.decode().lower(), err.decode()

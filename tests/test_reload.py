"""SIGHUP reload and the systemd watchdog, on a real ``s3rpc serve`` process.

The daemon's systemd messages arrive on a real unix datagram socket given as NOTIFY_SOCKET;
calls run on real connections while the config file is rewritten and SIGHUP sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.reliability.daemon_process import config_for

from conftest import free_port
from s3rpc.client import AsyncClient, RpcError, open_connection

WAIT = 20.0


class Daemon:
    """``s3rpc serve -c path`` with NOTIFY_SOCKET; its JSON log lines and notifications."""

    def __init__(self, path: Path, notify_path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify_path))
        self.notify.settimeout(WAIT)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s3rpc", "serve", "-c", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    found.append(event)
        return found

    async def wait_events(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT
        while len(found := self.events(name)) < count:
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {count} '{name}':\n" + "\n".join(self.lines)
            await asyncio.sleep(0.05)
        return found

    async def message(self, skip_watchdog: bool = True) -> str:
        """The next notification (WATCHDOG=1 pings skipped unless asked for)."""
        while True:
            data = await asyncio.to_thread(self.notify.recv, 4096)
            text = data.decode()
            if not (skip_watchdog and text == "WATCHDOG=1"):
                return text

    def write_config(self, data: dict[str, Any] | str) -> None:
        text = data if isinstance(data, str) else yaml.safe_dump(data)
        temp = self.path.with_suffix(".new")
        temp.write_text(text)
        temp.replace(self.path)  # as an editor or config management would: whole or not at all

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT)
        finally:
            self._reader.join(5)


Start = Callable[..., Daemon]


@pytest.fixture
def start(short_dir: Path) -> Iterator[Start]:
    started: list[Daemon] = []

    def run(config: dict[str, Any], **env: str) -> Daemon:
        """``start(config, WATCHDOG_USEC=...)``: the file written, the process started."""
        path = short_dir / "rr.yaml"
        path.write_text(yaml.safe_dump(config))
        daemon = Daemon(path, short_dir / f"notify-{len(started)}", env)
        started.append(daemon)
        return daemon

    try:
        yield run
    finally:
        for daemon in started:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(10)
            daemon.notify.close()


class Traffic:
    """Clients looping s3.Write + s3.Read on some buckets until stopped; every failure kept.

    A loop whose bucket answers BUCKET_NOT_FOUND stops (noted in ``gone``). On a bucket in
    ``write_only`` nothing is read back: across a change of its prefix, an object written just
    before the reload is rightly not found under the new prefix.
    """

    def __init__(self, address: str, buckets: list[str], write_only: tuple[str, ...] = ()) -> None:
        self.address = address
        self.buckets = buckets
        self.write_only = write_only
        self.calls = 0
        self.failures: list[str] = []
        self.gone: set[str] = set()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Traffic:
        for index, bucket in enumerate(self.buckets * 2):
            client = await AsyncClient.connect(self.address)
            self._tasks.append(asyncio.create_task(self._loop(client, bucket, index)))
        return self

    async def _loop(self, client: AsyncClient, bucket: str, index: int) -> None:
        async with client:
            while not self._stop.is_set():
                pathname = f"loop/{index}-{self.calls}.txt"
                try:
                    await client.call(
                        "s3.Write", {"bucket": bucket, "pathname": pathname, "content": b"x"}
                    )
                    if bucket not in self.write_only:
                        read = await client.call(
                            "s3.Read", {"bucket": bucket, "pathname": pathname}
                        )
                        assert read["content"] == b"x"
                except RpcError as exc:
                    if exc.code == "BUCKET_NOT_FOUND":
                        self.gone.add(bucket)
                        return
                    self.failures.append(f"{bucket}: {exc}")
                except (ConnectionError, AssertionError) as exc:
                    self.failures.append(f"{bucket}: {exc}")
                self.calls += 2

    async def wait_calls(self, count: int) -> None:
        target = self.calls + count
        deadline = time.monotonic() + WAIT
        while self.calls < target:
            assert time.monotonic() < deadline, f"calls stalled at {self.calls}"
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), WAIT)


def keys(s3_admin: Any, physical: str) -> set[str]:
    listed = s3_admin.list_objects_v2(Bucket=physical)
    return {item["Key"] for item in listed.get("Contents", [])}


@pytest.fixture
def layout(physical_buckets: Callable[..., str]) -> dict[str, str]:
    return {name: physical_buckets(name) for name in ("keep", "docs", "old", "new")}


def configs(
    moto_endpoint: str, layout: dict[str, str], **rpc: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config a daemon starts with, and the one it reloads: ``new`` added, ``docs``'s
    prefix changed, ``old`` removed, an rpc limit changed (needs a restart)."""
    before = config_for(
        moto_endpoint,
        {
            "keep": {"bucket": layout["keep"]},
            "docs": {"bucket": layout["docs"], "prefix": "v1"},
            "old": {"bucket": layout["old"]},
        },
    )
    before["rpc"].update({"listen": f"tcp://127.0.0.1:{free_port()}", **rpc})
    after = json.loads(json.dumps(before))
    after["rpc"]["max_connections"] = 777
    buckets = after["s3"]["buckets"]
    buckets["docs"]["prefix"] = "v2"
    del buckets["old"]
    buckets["new"] = {"server": "local", "bucket": layout["new"]}
    return before, after


# --- tests ------------------------------------------------------------------------------------


async def test_watchdog_pings_at_half_the_interval_after_ready(
    start: Start, moto_endpoint: str, layout: dict[str, str]
) -> None:
    before, _ = configs(moto_endpoint, layout)
    daemon = start(before, WATCHDOG_USEC="600000")
    assert await daemon.message() == "READY=1"
    times = []
    for _ in range(4):
        assert await daemon.message(skip_watchdog=False) == "WATCHDOG=1"
        times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.3 s apart, give or take a busy machine's scheduling
    assert all(0.1 < gap < 1.0 for gap in gaps), gaps
    assert 0.2 < sum(gaps) / len(gaps) < 0.6, gaps
    assert daemon.stop() == 0


async def test_sighup_adds_rebuilds_and_removes_buckets_while_calls_run(
    start: Start,
    moto_endpoint: str,
    layout: dict[str, str],
    s3_admin: Any,
) -> None:
    before, after = configs(moto_endpoint, layout)
    daemon = start(before)
    assert await daemon.message() == "READY=1"
    address = before["rpc"]["listen"]
    async with AsyncClient(*await _open(address)) as client:
        # A bucket registered at run time outlives the reload.
        await client.call(
            "s3.RegisterBucket", {"name": "reg", "server": "local", "bucket": layout["keep"]}
        )
        async with Traffic(address, ["keep", "docs", "old"], write_only=("docs",)) as traffic:
            await traffic.wait_calls(20)
            daemon.write_config(after)
            daemon.proc.send_signal(signal.SIGHUP)
            reloading = await daemon.message()
            assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert int(reloading.split("=")[-1]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            assert (await daemon.message()).startswith("READY=1")
            (done,) = await daemon.wait_events("config_reloaded")
            assert (done["added"], done["changed"], done["removed"]) == (["new"], ["docs"], ["old"])
            await traffic.wait_calls(20)
        # No call failed; the loops on the removed bucket saw it go as BUCKET_NOT_FOUND.
        assert traffic.failures == []
        assert traffic.gone == {"old"}

        (warning,) = daemon.events("config_reload_needs_restart")
        assert warning["key"] == "rpc.max_connections"
        listed = await client.call("s3.ListBuckets")
        assert listed["buckets"] == ["docs", "keep", "new", "reg"]
        await client.call("s3.Write", {"bucket": "new", "pathname": "n.txt", "content": b"n"})
        assert keys(s3_admin, layout["new"]) == {"n.txt"}
        await client.call("s3.Write", {"bucket": "docs", "pathname": "d.txt", "content": b"d"})
        assert "v2/d.txt" in keys(s3_admin, layout["docs"])
        with pytest.raises(RpcError) as gone:
            await client.call("s3.Read", {"bucket": "old", "pathname": "x"})
        assert gone.value.code == "BUCKET_NOT_FOUND"
    await daemon.wait_events("bucket retired", 2)
    assert daemon.stop() == 0


async def test_sighup_with_a_broken_config_logs_the_key_and_keeps_serving(
    start: Start, moto_endpoint: str, layout: dict[str, str]
) -> None:
    before, after = configs(moto_endpoint, layout)
    daemon = start(before)
    assert await daemon.message() == "READY=1"
    address = before["rpc"]["listen"]
    after["s3"]["buckets"]["docs"]["visibility"] = "sideways"
    async with Traffic(address, ["keep", "docs", "old"]) as traffic:
        await traffic.wait_calls(20)
        daemon.write_config(after)
        daemon.proc.send_signal(signal.SIGHUP)
        assert (await daemon.message()).startswith("RELOADING=1\n")
        assert "reload failed" in await daemon.message()
        (failed,) = await daemon.wait_events("config_reload_failed")
        assert failed["error"].startswith("s3.buckets.docs.visibility:")
        daemon.write_config("s3: [unclosed")
        daemon.proc.send_signal(signal.SIGHUP)
        (_, yaml_error) = await daemon.wait_events("config_reload_failed", 2)
        assert "is not valid YAML" in yaml_error["error"]
        await traffic.wait_calls(20)
    assert traffic.failures == []
    assert daemon.events("config_reloaded") == []
    assert daemon.stop() == 0


async def test_sighup_reaches_every_worker_and_the_supervisor_pings_the_watchdog(
    start: Start, moto_endpoint: str, layout: dict[str, str]
) -> None:
    before, after = configs(moto_endpoint, layout, workers=2)
    daemon = start(before, WATCHDOG_USEC="2000000")
    assert await daemon.message() == "READY=1"
    assert await daemon.message(skip_watchdog=False) == "WATCHDOG=1"
    address = before["rpc"]["listen"]
    async with Traffic(address, ["keep", "docs"], write_only=("docs",)) as traffic:
        await traffic.wait_calls(20)
        daemon.write_config(after)
        daemon.proc.send_signal(signal.SIGHUP)
        assert (await daemon.message()).startswith("RELOADING=1\n")
        assert (await daemon.message()).startswith("READY=1")
        reloaded = await daemon.wait_events("config_reloaded", 2)
        assert {event["worker"] for event in reloaded} == {0, 1}
        assert all(event["added"] == ["new"] for event in reloaded)
        await traffic.wait_calls(20)
    assert traffic.failures == []
    for _ in range(8):  # connections land on either worker: every one knows the new bucket
        async with AsyncClient(*await _open(address)) as client:
            assert "new" in (await client.call("s3.ListBuckets"))["buckets"]
    assert await daemon.message(skip_watchdog=False) == "WATCHDOG=1"
    assert daemon.stop() == 0


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(open_connection(address), WAIT)


async def test_a_worker_whose_loop_stops_reporting_is_killed_and_restarted(
    start: Start, moto_endpoint: str, layout: dict[str, str]
) -> None:
    before, _ = configs(moto_endpoint, layout, workers=2)
    daemon = start(before, WATCHDOG_USEC="600000")
    assert await daemon.message() == "READY=1"
    first = (await daemon.wait_events("worker_started", 2))[0]
    os.kill(first["pid"], signal.SIGSTOP)  # its event loop stops: no more reports
    (killed,) = await daemon.wait_events("worker_unresponsive")
    assert killed["pid"] == first["pid"]
    restarted = (await daemon.wait_events("worker_started", 3))[2]
    assert restarted["worker"] == first["worker"]
    # the supervisor kept the watchdog fed all along
    assert await daemon.message(skip_watchdog=False) == "WATCHDOG=1"
    async with AsyncClient(*await _open(before["rpc"]["listen"])) as client:
        assert "keep" in (await client.call("s3.ListBuckets"))["buckets"]
    assert daemon.stop() == 0

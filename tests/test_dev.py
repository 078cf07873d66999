"""``s3rpc dev`` as a real subprocess: embedded moto, banner, RPC, clean exit on signals.

No daemon runs in this process here, so the subprocesses are driven with blocking calls.
Output goes to files rather than pipes, so a chatty daemon can never block on a full pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import free_port
from s3rpc.client import Client, RpcError
from s3rpc.config import ConfigError, load_config
from s3rpc.dev import DEFAULT_BUCKETS, dev_config

REPO = Path(__file__).resolve().parent.parent
ALL_BYTES = bytes(range(256))
START_TIMEOUT = 30
EXIT_TIMEOUT = 15
CALL_TIMEOUT = 30


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RR_RPC"}


@dataclass
class DevProcess:
    proc: subprocess.Popen[bytes]
    address: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` and return the exit code (killing the process if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise


def start_dev(workdir: Path, *extra: str, file_listens: str | None = None) -> DevProcess:
    """Start ``s3rpc dev`` on a free loopback port and wait (polling) until it answers RPC.

    ``file_listens``: no ``--listen``; the config file given in ``extra`` listens there.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    address = file_listens or f"tcp://127.0.0.1:{free_port()}"
    listen = [] if file_listens else ["--listen", address]
    stdout, stderr = workdir / "dev.out", workdir / "dev.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3rpc", "dev", *listen, *extra],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=clean_env(),
            cwd=workdir,
        )
    dev = DevProcess(proc, address, stdout, stderr)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"s3rpc dev exited early ({proc.returncode}):\n{dev.output()}")
        try:
            with Client(address, timeout=2) as client:
                client.call("s3.ListBuckets")
            break
        except OSError:
            pass
        if time.monotonic() > deadline:
            dev.stop(signal.SIGKILL)
            pytest.fail(f"s3rpc dev did not answer within {START_TIMEOUT} s:\n{dev.output()}")
        time.sleep(0.2)
    # The banner is printed once the server is ready, i.e. by now (give the flush a moment).
    deadline = time.monotonic() + 5
    while "Press Ctrl-C" not in stdout.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.05)
    return dev


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3rpc", "call", *args],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT,
        env=clean_env(),
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    """One ``s3rpc dev`` with the default buckets, shared by this module's read-only tests."""
    process = start_dev(tmp_path_factory.mktemp("dev"))
    try:
        yield process
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.stop(signal.SIGINT)


# --- the default dev server --------------------------------------------------------------------


def embedded_s3(banner: str) -> Any:
    """A boto3 client for the embedded S3 server the dev banner names."""
    endpoint = re.search(r"embedded S3 server: (http://127\.0\.0\.1:\d+)", banner)
    assert endpoint is not None, banner
    return boto3.client(
        "s3",
        endpoint_url=endpoint[1],
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )


def test_banner_mentions_the_address_and_that_data_lives_in_memory(dev: DevProcess) -> None:
    banner = dev.stdout.read_text(errors="replace")
    assert f"serving RPC on {dev.address}" in banner
    assert "memory" in banner
    # the running interpreter's absolute path: works without an activated virtualenv
    assert f"{shlex.quote(sys.executable)} -m s3rpc call --rpc {dev.address} s3.Write" in banner
    assert 'the embedded server is called "embedded"' in banner
    assert f"Relay::create('{dev.address}')" in banner  # the PHP snippet


def test_write_then_read_through_s3rpc_call_returns_the_same_bytes(
    dev: DevProcess, tmp_path: Path
) -> None:
    original = ALL_BYTES + os.urandom(64 * 1024)
    (tmp_path / "in.bin").write_bytes(original)
    params = json.dumps({"pathname": "dev/blob.bin"})
    for codec in ("json", "msgpack"):
        write = cli(
            "s3.Write",
            params,
            "--file",
            str(tmp_path / "in.bin"),
            "--rpc",
            dev.address,
            "--codec",
            codec,
        )
        assert write.returncode == 0, write.stderr
        assert json.loads(write.stdout)["size"] == len(original)
        out = tmp_path / f"out-{codec}.bin"
        read = cli("s3.Read", params, "--out", str(out), "--rpc", dev.address, "--codec", codec)
        assert read.returncode == 0, read.stderr
        assert out.read_bytes() == original


def test_the_banner_one_liners_work(dev: DevProcess, tmp_path: Path) -> None:
    banner = dev.stdout.read_text(errors="replace")
    lines = [line.strip() for line in banner.splitlines() if " -m s3rpc call " in line]
    assert len(lines) == 3, banner
    # Run as printed, with an environment where no virtualenv is active.
    env = {k: v for k, v in clean_env().items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    for line in lines:
        argv = shlex.split(line)
        assert argv[:4] == [sys.executable, "-m", "s3rpc", "call"]
        if "--out" in argv:
            # The printed read saves outside the working directory (never into a checkout);
            # the test redirects it into its own directory.
            at = argv.index("--out") + 1
            assert argv[at] == "/tmp/hello.txt", line
            argv[at] = str(tmp_path / "hello.txt")
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=CALL_TIMEOUT, env=env, cwd=tmp_path
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert (tmp_path / "hello.txt").read_bytes() == b"Hello, s3rpc!"
    # the RegisterBucket example added a usable bucket on the embedded server
    with Client(dev.address, timeout=CALL_TIMEOUT) as client:
        client.call("s3.Write", {"bucket": "scratch", "pathname": "s.txt", "content": b"s"})
        assert client.call("s3.Read", {"bucket": "scratch", "pathname": "s.txt"})["content"] == b"s"
        client.call("s3.UnregisterBucket", {"name": "scratch"})  # the fixture is shared


def test_list_buckets_shows_uploads_and_private_docs_with_default_uploads(
    dev: DevProcess,
) -> None:
    result = cli("s3.ListBuckets", "--rpc", dev.address)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert sorted(listed["buckets"]) == ["private-docs", "uploads"]
    assert listed["default"] == "uploads"


# --- lifecycle and other configs ---------------------------------------------------------------


def test_sigint_exits_0_within_15_seconds(tmp_path: Path) -> None:
    dev = start_dev(tmp_path)
    started = time.monotonic()
    assert dev.stop(signal.SIGINT) == 0, dev.output()
    assert time.monotonic() - started < EXIT_TIMEOUT


CUSTOM_CONFIG = """\
rpc:
  listen: tcp://127.0.0.1:6001
logs:
  level: warning
s3:
  default: media
  servers:
    main:
      region: us-east-1
      endpoint: http://127.0.0.1:9
      credentials:
        key: some-key
        secret: some-secret
  buckets:
    media:
      server: main
      bucket: media-files
      visibility: public
    archive:
      server: main
      bucket: archive-store
      visibility: private
"""


def test_config_file_buckets_are_served_and_sigterm_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "custom.yaml"
    config.write_text(CUSTOM_CONFIG)
    dev = start_dev(tmp_path / "run", "-c", str(config))
    try:
        banner = dev.stdout.read_text(errors="replace")
        assert "media (public)" in banner
        assert "archive (private)" in banner

        listed = cli("s3.ListBuckets", "--rpc", dev.address)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["default"] == "media"
        assert sorted(json.loads(listed.stdout)["buckets"]) == ["archive", "media"]

        written = cli(
            "s3.Write",
            json.dumps({"pathname": "a/b.bin", "content": "AAEC/w=="}),
            "--rpc",
            dev.address,
        )
        assert written.returncode == 0, written.stderr
        with Client(dev.address, codec="msgpack", timeout=CALL_TIMEOUT) as client:
            read = client.call("s3.Read", {"bucket": "media", "pathname": "a/b.bin"})
        assert read["content"] == b"\x00\x01\x02\xff"

        # the object is in the physical bucket the config names, on the embedded server
        s3 = embedded_s3(banner)
        body = s3.get_object(Bucket="media-files", Key="a/b.bin")["Body"].read()
        assert body == b"\x00\x01\x02\xff"
        assert {"media-files", "archive-store"} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}

        missing = cli(
            "s3.Read", json.dumps({"bucket": "uploads", "pathname": "x"}), "--rpc", dev.address
        )
        assert missing.returncode == 1
        assert missing.stderr.startswith("BUCKET_NOT_FOUND: ")
    finally:
        code = dev.stop(signal.SIGTERM)
    assert code == 0, dev.output()


# --- the defaults are those of .rr.yaml.example ------------------------------------------------


def test_default_buckets_are_those_of_rr_yaml_example() -> None:
    example = load_config(REPO / ".rr.yaml.example", environ={})
    buckets = {
        name: {"bucket": b.bucket, "visibility": b.visibility}
        for name, b in example.s3.buckets.items()
    }
    assert buckets == DEFAULT_BUCKETS
    assert example.s3.default == "uploads"
    # and dev mode serves the same set whether given the example or nothing
    from_example = dev_config("http://127.0.0.1:9", "tcp://127.0.0.1:0", example)
    built_in = dev_config("http://127.0.0.1:9", "tcp://127.0.0.1:0")
    assert built_in.s3.default == from_example.s3.default == "uploads"
    assert {n: (b.bucket, b.visibility) for n, b in built_in.s3.buckets.items()} == {
        n: (b.bucket, b.visibility) for n, b in from_example.s3.buckets.items()
    }


def test_busy_port_exits_1_with_a_message(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "s3rpc", "dev", "--listen", address],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            env=clean_env(),
            cwd=tmp_path,
            check=False,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot listen on {address}" in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "s3rpc", "dev", "-c", str(missing), "--listen", "tcp://127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr


# --- dev -c FILE: everything in the file but the storage servers -------------------------------

FULL_CONFIG = """\
rpc:
  listen: tcp://127.0.0.1:{rpc_port}
  max_frame_size: 1048576
  max_connections: 50
  workers: 3
logs:
  level: warning
  format: json
  calls: errors
metrics:
  address: 127.0.0.1:{metrics_port}
status:
  address: 127.0.0.1:{status_port}
s3:
  default: media
  shutdown_timeout: 7
  operation_timeout: 12
  max_upload_sessions: 9
  register:
    max_registered: 3
    allow_credentials: false
  servers:
    main:
      region: eu-west-1
      endpoint: http://127.0.0.1:9
      visibility_mode: none
      read_timeout: 3
      credentials:
        key: ${{DEV_TEST_UNSET_KEY}}  # unset: dev needs no production credentials
        secret: file-secret-not-for-dev
  buckets:
    media:
      server: main
      bucket: media-files
      prefix: site/media
      visibility: public
      max_concurrent_operations: 7
      part_size: 8388608
    inline:
      bucket: inline-store
      region: eu-central-1
      endpoint: http://127.0.0.1:9
      credentials:
        key: k
        secret: s
      operation_timeout: 4
"""


def _full_config(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    ports = {"rpc_port": free_port(), "metrics_port": free_port(), "status_port": free_port()}
    path = tmp_path / "full.yaml"
    path.write_text(FULL_CONFIG.format(**ports))
    return path, ports


def test_dev_config_keeps_every_setting_but_moves_each_bucket_to_the_embedded_server(
    tmp_path: Path,
) -> None:
    path, ports = _full_config(tmp_path)
    with pytest.raises(ConfigError, match=r"DEV_TEST_UNSET_KEY"):
        load_config(path, {})  # what serve would say
    source = load_config(path, {}, servers=False)  # what dev reads
    config = dev_config("http://127.0.0.1:4566", None, source)
    # the file's servers keep their names and point at the embedded S3; inline fields gone
    assert sorted(config.s3.servers) == ["embedded", "main"]
    for server in config.s3.servers.values():
        assert server.endpoint == "http://127.0.0.1:4566"
        assert server.credentials.secret.get_secret_value() != "file-secret-not-for-dev"
    assert config.s3.servers["main"].visibility_mode == "none"
    assert config.s3.buckets["media"].server == "main"
    assert config.s3.buckets["inline"].server == "embedded"
    for name, bucket in config.s3.buckets.items():
        assert bucket.inline_server_fields() == {}, name
    media, inline = config.s3.buckets["media"], config.s3.buckets["inline"]
    # bucket settings, and what the file's server decided for the bucket, kept
    assert (media.bucket, media.prefix, media.visibility) == (
        "media-files",
        "site/media/",
        "public",
    )
    assert (media.max_concurrent_operations, media.part_size) == (7, 8 * 1024 * 1024)
    assert media.visibility_mode == "none"
    assert (inline.bucket, inline.operation_timeout) == ("inline-store", 4)
    # everything else as in the file (one process: rpc.workers is 1)
    assert config.rpc.listen == f"tcp://127.0.0.1:{ports['rpc_port']}"
    assert config.rpc.model_copy(update={"workers": 3}) == source.rpc
    assert config.rpc.workers == 1
    assert (config.logs, config.metrics, config.status) == (
        source.logs,
        source.metrics,
        source.status,
    )
    assert config.s3.model_copy(update={"servers": {}, "buckets": {}}) == source.s3.model_copy(
        update={"servers": {}, "buckets": {}}
    )
    # an explicit --listen wins over the file's
    assert dev_config("http://x:1", "tcp://127.0.0.1:7000", source).rpc.listen == (
        "tcp://127.0.0.1:7000"
    )


def test_dev_with_a_config_file_listens_where_it_says_and_serves_its_metrics_and_prefixes(
    tmp_path: Path,
) -> None:
    path, ports = _full_config(tmp_path)
    address = f"tcp://127.0.0.1:{ports['rpc_port']}"
    dev = start_dev(tmp_path / "run", "-c", str(path), file_listens=address)
    try:
        banner = dev.stdout.read_text(errors="replace")
        assert f"serving RPC on {address}" in banner
        assert "file-secret-not-for-dev" not in dev.output()
        with Client(address, timeout=CALL_TIMEOUT) as client:
            client.call("s3.Write", {"pathname": "a.txt", "content": b"a"})  # default: media
            client.call("s3.Write", {"bucket": "inline", "pathname": "i.txt", "content": b"i"})
            # the register policy of the file: inline credentials refused, "embedded" accepted
            with pytest.raises(RpcError, match="allow_credentials"):
                client.call(
                    "s3.RegisterBucket",
                    {
                        "name": "r1",
                        "bucket": "media-files",
                        "credentials": {"key": "a", "secret": "b"},
                    },
                )
            client.call(
                "s3.RegisterBucket", {"name": "r2", "server": "embedded", "bucket": "media-files"}
            )
            # the file's server name works as in production, on the embedded S3
            client.call(
                "s3.RegisterBucket",
                {"name": "r3", "server": "main", "bucket": "media-files", "prefix": "r3"},
            )
            client.call("s3.Write", {"bucket": "r3", "pathname": "r.txt", "content": b"r"})
        s3 = embedded_s3(banner)
        assert s3.get_object(Bucket="media-files", Key="site/media/a.txt")["Body"].read() == b"a"
        assert s3.get_object(Bucket="inline-store", Key="i.txt")["Body"].read() == b"i"
        assert s3.get_object(Bucket="media-files", Key="r3/r.txt")["Body"].read() == b"r"
        with urllib.request.urlopen(
            f"http://127.0.0.1:{ports['metrics_port']}/metrics", timeout=CALL_TIMEOUT
        ) as response:
            assert response.status == 200
            assert b'bucket="media"' in response.read()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{ports['status_port']}/health", timeout=CALL_TIMEOUT
        ) as response:
            assert response.status == 200
        # logs.calls: errors and level warning: no call line for the successful calls
        assert '"event":"call"' not in dev.output().replace(" ", "")
    finally:
        code = dev.stop(signal.SIGTERM)
    assert code == 0, dev.output()

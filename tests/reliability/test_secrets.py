"""Secrets never leak: not in an answer, an error text, a daemon log line, or check-config output.

Canary strings stand in for the credentials (a ``${VAR}``-expanded secret key, a session token,
an access key, and the credentials of a bucket registered at run time). Every method is called
with good and bad params, under both codecs, against a daemon run as ``s3rpc serve`` (logging at
debug) and one run in-process; a second configured server answers every request 403
``SignatureDoesNotMatch`` with the access key and a canonical request holding the session token
in its error body, as AWS does. Access key and session token may appear in one place only: the
query of a presigned URL, which cannot work without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import structlog
import yaml

from conftest import run_daemon
from s3rpc.client import AsyncClient, RpcError
from s3rpc.config import config_from_mapping
from s3rpc.logs import configure_logging
from server import wire

ACCESS = "AKIACANARYACCESS7Q3Z"
SECRET = "canary-secret-4b1d9e77c2"
TOKEN = "canary-session-token-8f02aa51"
REG_ACCESS = "AKIACANARYREGISTER5K"
REG_SECRET = "canary-registered-secret-6e3c"
REG_TOKEN = "canary-registered-token-19df"
SECRET_ENV = "S3RPC_CANARY_SECRET"
NEVER = (SECRET, TOKEN, REG_SECRET, REG_TOKEN, ACCESS, REG_ACCESS)
RUN_TIMEOUT = 60


class DenyingS3(http.server.BaseHTTPRequestHandler):
    """Every request: 403 SignatureDoesNotMatch, echoing the key id and the security token."""

    protocol_version = "HTTP/1.1"  # answers botocore's "Expect: 100-continue" on uploads
    #: (access key, session token) of every request: proof the canaries reached this server.
    seen: list[tuple[str, str]] = []

    def _deny(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        auth = self.headers.get("Authorization", "")
        key = auth.split("Credential=", 1)[-1].split("/", 1)[0]
        token = self.headers.get("x-amz-security-token", "")
        self.seen.append((key, token))
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
            "<Message>The request signature we calculated does not match the signature you "
            f"provided. Key {key}.</Message><AWSAccessKeyId>{key}</AWSAccessKeyId>"
            f"<CanonicalRequest>GET\n/\n\nx-amz-security-token:{token}\n</CanonicalRequest>"
            "<RequestId>canary</RequestId></Error>"
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _deny

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def denying_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DenyingS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def canary_config(
    moto: str, denying: str, buckets: dict[str, str], secret: str = f"${{{SECRET_ENV}}}"
) -> dict[str, Any]:
    credentials = {"key": ACCESS, "secret": secret, "token": TOKEN}
    return {
        "rpc": {"listen": "tcp://127.0.0.1:0"},
        "s3": {
            "default": "uploads",
            "shutdown_timeout": 5,
            "servers": {
                "local": {"endpoint": moto, "credentials": credentials},
                "denied": {"endpoint": denying, "credentials": credentials, "max_attempts": 1},
            },
            "buckets": {
                "uploads": {
                    "server": "local",
                    "bucket": buckets["uploads"],
                    "visibility": "public",
                },
                "private-docs": {"server": "local", "bucket": buckets["private-docs"]},
                "locked": {"server": "denied", "bucket": "locked-phys"},
            },
        },
        "logs": {"level": "debug", "format": "json"},
    }


def assert_no_canary(text: str, where: str) -> None:
    for canary in NEVER:
        assert canary not in text, f"{canary!r} leaked into {where}: {text[:300]!r}"


def assert_presigned_url_holds_only_what_it_must(url: str) -> None:
    """The presigned URL carries the access key and session token (it cannot work without
    them) in their query parameters, and nothing else of the credentials."""
    query = parse_qs(urlsplit(url).query)
    key, token = query["X-Amz-Credential"][0].split("/", 1)[0], query["X-Amz-Security-Token"]
    assert (key, token) in ((ACCESS, [TOKEN]), (REG_ACCESS, [REG_TOKEN]))
    stripped = re.sub(r"X-Amz-(Credential|Security-Token)=[^&]*", "", url)
    assert_no_canary(stripped, "a presigned URL")


async def exercise(address: str, moto: str) -> list[str]:
    """Every method, good and bad, both codecs; the texts of all answers (URLs checked apart)."""
    seen: list[str] = []

    async def call(client: AsyncClient, method: str, params: dict[str, Any]) -> Any:
        try:
            result = await client.call(method, params, timeout=30)
        except TimeoutError:
            raise AssertionError(f"{method} {params} got no answer within 30 s") from None
        except RpcError as exc:
            seen.append(str(exc))
            return None
        if isinstance(result, dict) and "url" in result and "X-Amz-Signature" in result["url"]:
            assert_presigned_url_holds_only_what_it_must(result["url"])
            result = {**result, "url": "<presigned>"}
        seen.append(repr(result))
        return result

    creds = {"key": REG_ACCESS, "secret": REG_SECRET, "token": REG_TOKEN}
    for codec in ("json", "msgpack"):
        client = await AsyncClient.connect(address, codec=codec, timeout=10)
        try:
            n = f"{codec}-reg"
            dest = {"dest_pathname": "b"}

            def reg(suffix: str, n: str = n, **fields: Any) -> tuple[str, dict[str, Any]]:
                return "s3.RegisterBucket", {"name": n + suffix, "bucket": "b", **fields}

            good: list[tuple[str, dict[str, Any]]] = [
                ("s3.ListBuckets", {}),
                ("s3.Write", {"pathname": "s/a.txt", "content": b"payload", "config": {"o": "1"}}),
                ("s3.Read", {"pathname": "s/a.txt"}),
                ("s3.Exists", {"pathname": "s/a.txt"}),
                ("s3.GetMetadata", {"pathname": "s/a.txt"}),
                ("s3.GetPublicURL", {"pathname": "s/a.txt"}),
                ("s3.GetPublicURL", {"pathname": "s/a.txt", "expires_in": 3600}),
                ("s3.SetVisibility", {"pathname": "s/a.txt", "visibility": "private"}),
                ("s3.Copy", {"source_pathname": "s/a.txt", "dest_pathname": "s/b.txt"}),
                ("s3.Move", {"source_pathname": "s/b.txt", "dest_pathname": "s/c.txt"}),
                ("s3.ListObjects", {"prefix": "s/"}),
                ("s3.Delete", {"pathname": "s/c.txt"}),
                ("s3.RegisterBucket", {"name": n, "server": "local", "bucket": "reg-phys"}),
                (
                    "s3.RegisterBucket",
                    {"name": n + "-inline", "endpoint": moto, "bucket": "x", "credentials": creds},
                ),
                ("s3.ListBuckets", {}),
                ("s3.GetPublicURL", {"bucket": n + "-inline", "pathname": "a", "expires_in": 60}),
            ]
            bad: list[tuple[str, dict[str, Any]]] = [
                ("s3.Read", {"pathname": "../x"}),
                ("s3.Read", {"pathname": "missing"}),
                ("s3.Read", {"bucket": "nope", "pathname": "a"}),
                ("s3.Write", {"pathname": "a", "content": b"x", "visiblity": SECRET}),
                ("s3.Write", {"pathname": SECRET + "\x00", "content": b"x"}),
                ("s3.GetPublicURL", {"pathname": "a", "expires_in": "3600"}),
                ("s3.ListObjects", {"max_keys": "x"}),
                ("s3.Copy", {"source_pathname": "missing", "dest_pathname": "b"}),
                ("s3.Move", {"source_pathname": "missing", "dest_pathname": "b"}),
                ("s3.SetVisibility", {"pathname": "a", "visibility": "world"}),
                # the 403 server: every object method
                ("s3.Read", {"bucket": "locked", "pathname": "a"}),
                ("s3.Write", {"bucket": "locked", "pathname": "a", "content": b"x"}),
                ("s3.Exists", {"bucket": "locked", "pathname": "a"}),
                ("s3.Delete", {"bucket": "locked", "pathname": "a"}),
                ("s3.GetMetadata", {"bucket": "locked", "pathname": "a"}),
                ("s3.SetVisibility", {"bucket": "locked", "pathname": "a", "visibility": "public"}),
                ("s3.ListObjects", {"bucket": "locked"}),
                ("s3.Copy", {"source_bucket": "locked", "source_pathname": "a", **dest}),
                ("s3.Move", {"source_pathname": "s/a.txt", "dest_bucket": "locked", **dest}),
                # RegisterBucket refusals carrying credentials
                reg("", server="local", credentials=creds),  # name taken
                reg("2", endpoint="http://169.254.169.254", credentials=creds),
                reg("3", endpoint=moto, region="not a region!", credentials=creds),
                reg("4", endpoint=moto, credentials={"key": REG_ACCESS, "secret": [REG_SECRET]}),
                reg("5", endpoint=moto, credentials={**creds, "tokn": REG_TOKEN}),
                reg("6", endpoint=moto, credentials=REG_SECRET),
                reg("7", endpoint=f"http://{REG_ACCESS}:{REG_SECRET}@127.0.0.1:9"),
                reg("8", secret=REG_SECRET),
                reg("9", server="local", visibility=REG_SECRET),
                ("s3.Read", {"bucket": n + "-inline", "pathname": "a"}),
            ]
            for method, params in good:
                assert await call(client, method, params) is not None, (method, seen[-1])
            for method, params in bad:
                assert await call(client, method, params) is None, (method, seen[-1])
        finally:
            await client.close()
    # raw frames: an unknown method, a bad body, and a framing violation
    reader, writer = await wire.connect(address)
    try:
        for frame in (
            wire.request(wire.JSON_FLAG, 1, "s3.Nope", b"{}"),
            wire.request(wire.JSON_FLAG, 2, "s3.Read", b"{bad json"),
        ):
            seen.append((await wire.call(reader, writer, frame)).text)
        writer.write(b"\x15\x00" + b"\xff" * 18)
        await wire.assert_closed_by_server(reader)
    finally:
        await wire.close(writer)
    assert (ACCESS, TOKEN) in DenyingS3.seen  # the 403 bodies did carry the canaries
    codes = {text.split(":", 1)[0] for text in seen if text[:1].isupper()}
    assert {"PERMISSION_DENIED", "INVALID_CONFIG", "INVALID_REQUEST"} <= codes, seen
    return seen


# --- the daemon as `s3rpc serve` -----------------------------------------------------------------


@contextlib.contextmanager
def serve_process(config_path: Path, log_dir: Path) -> Iterator[tuple[str, Path, Path]]:
    out, err = log_dir / "serve.out", log_dir / "serve.err"
    env = {**os.environ, SECRET_ENV: SECRET}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "s3rpc", "serve", "-c", str(config_path)],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        address = None
        while address is None:
            assert process.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "s3rpc serve did not start"
            match = re.search(r'"address":\s*"(tcp://[^"]+)"', out.read_text())
            address = match.group(1) if match else None
            time.sleep(0.05)
        yield address, out, err
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


#: The canary credentials carry a made-up session token: moto accepts any, a real S3 (RGW)
#: refuses it, so the methods would never reach their success paths there.
ANY_CREDENTIALS = pytest.mark.backends(
    "moto", reason="signs with canary credentials and a made-up session token"
)


@ANY_CREDENTIALS
@pytest.mark.timeout(180)
def test_serve_process_never_shows_a_secret_in_answers_or_logs(
    tmp_path: Path, s3_endpoint: str, denying_endpoint: str, physical_buckets: Any
) -> None:
    buckets = {"uploads": physical_buckets("sec"), "private-docs": physical_buckets("sec")}
    path = tmp_path / "rr.yaml"
    path.write_text(yaml.safe_dump(canary_config(s3_endpoint, denying_endpoint, buckets)))
    assert SECRET not in path.read_text()  # only the ${VAR} reference is in the file
    with serve_process(path, tmp_path) as (address, out, err):
        seen = asyncio.run(exercise(address, s3_endpoint))
    for text in seen:
        assert_no_canary(text, "an answer")
    log = out.read_text() + err.read_text()
    assert '"event":"call"' in log.replace(" ", "")  # debug logging was on
    assert '"outcome":"PERMISSION_DENIED"' in log.replace(" ", "")
    assert "Traceback" not in log
    for line in log.splitlines():
        assert_no_canary(line, "the daemon log")


@ANY_CREDENTIALS
async def test_in_process_daemon_never_shows_a_secret_in_answers_or_logs(
    s3_endpoint: str, denying_endpoint: str, physical_buckets: Any
) -> None:
    buckets = {"uploads": physical_buckets("sec"), "private-docs": physical_buckets("sec")}
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    try:
        config = config_from_mapping(
            canary_config(s3_endpoint, denying_endpoint, buckets),
            environ={**os.environ, SECRET_ENV: SECRET},
        )
        assert config.s3.servers["local"].credentials.secret.get_secret_value() == SECRET
        for canary in (SECRET, TOKEN):  # SecretStr: masked even in the config's repr
            assert canary not in repr(config) + str(config)
        async with run_daemon(config, buckets) as daemon:
            seen = await exercise(daemon.address, s3_endpoint)
    finally:
        structlog.reset_defaults()
    for text in seen:
        assert_no_canary(text, "an answer")
    log = stream.getvalue()
    assert '"event":"call"' in log.replace(" ", "")
    for line in log.splitlines():
        assert_no_canary(line, "the daemon log")


# --- check-config -------------------------------------------------------------------------------


def check_config(tmp_path: Path, data: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "check.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return subprocess.run(
        [sys.executable, "-m", "s3rpc", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, SECRET_ENV: SECRET},
        check=False,
    )


def test_check_config_accepts_the_canary_config_without_printing_a_secret(
    tmp_path: Path,
) -> None:
    data = canary_config(
        "http://127.0.0.1:9", "http://127.0.0.1:9", {"uploads": "u", "private-docs": "p"}
    )
    result = check_config(tmp_path, data)
    assert result.returncode == 0, result.stderr
    assert_no_canary(result.stdout + result.stderr, "check-config output")


def _broken(mutate: Any) -> dict[str, Any]:
    data = canary_config(
        "http://127.0.0.1:9", "http://127.0.0.1:9", {"uploads": "u", "private-docs": "p"}
    )
    mutate(data["s3"]["servers"]["local"])
    return data


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda s: s["credentials"].update(secret=[SECRET]), "credentials.secret"),
        (lambda s: s["credentials"].update(secret={"value": SECRET}), "credentials.secret"),
        (lambda s: s["credentials"].update(token=[TOKEN]), "credentials.token"),
        (lambda s: s["credentials"].update(key=[ACCESS]), "credentials.key"),
        (lambda s: s["credentials"].update(secrett=SECRET), "credentials.secrett"),
        (lambda s: s.update(credentials=SECRET), "credentials"),
        (lambda s: s.update(region=f"not a region {SECRET}"), "region"),
        (lambda s: s.update(endpoint=f"http://{ACCESS}:{SECRET}@[::1"), "endpoint"),
        (lambda s: s.update(max_attempts=SECRET), "max_attempts"),
    ],
    ids=[
        "secret as list",
        "secret as map",
        "token as list",
        "key as list",
        "misspelt key holding a secret",
        "credentials as a string",
        "secret as region",
        "credentials in a bad endpoint",
        "secret as a number",
    ],
)
def test_check_config_errors_name_the_key_but_never_the_secret(
    tmp_path: Path, mutate: Any, named: str
) -> None:
    result = check_config(tmp_path, _broken(mutate))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"s3.servers.local.{named}" in result.stderr
    assert_no_canary(result.stdout + result.stderr, "check-config output")
    assert "Traceback" not in result.stderr

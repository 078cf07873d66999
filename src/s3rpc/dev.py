"""``s3rpc dev``: the daemon on an embedded, in-memory S3 server (moto), for trying it out.

No account and no config needed: the buckets of ``.rr.yaml.example`` are created on an S3
server running inside this process on 127.0.0.1, and RPC is served on 127.0.0.1:6001.

``s3rpc dev -c FILE`` serves FILE as ``serve`` would — its rpc limits and listen address, logs,
metrics, status, s3 limits and timeouts, register policy, every bucket's settings — except the
storage servers: each server of the file keeps its name but points at the embedded S3 (its
``visibility_mode`` kept), so ``s3.RegisterBucket(['server' => 'aws-primary', …])`` works as in
production; inline buckets, and ``s3.RegisterBucket`` given ``server: embedded``, use the one
called ``embedded``. Every physical bucket is created there. One process (``rpc.workers`` is 1).
"""

from __future__ import annotations

import logging
import shlex
import sys
from typing import TYPE_CHECKING, Any, TextIO

from s3rpc.config import (
    DEFAULT_LISTEN,
    Config,
    Credentials,
    ServerConfig,
    config_from_mapping,
    load_config,
    resolve_bucket,
)

if TYPE_CHECKING:
    from s3rpc.app import App

DEV_ACCESS_KEY = "s3rpc-dev"
DEV_SECRET = "s3rpc-dev-secret"  # noqa: S105 - the embedded server accepts any credentials
#: The embedded server's name in s3.servers (and for s3.RegisterBucket's ``server``).
EMBEDDED = "embedded"
DEFAULT_BUCKETS: dict[str, dict[str, Any]] = {
    "uploads": {"bucket": "uploads", "visibility": "public"},
    "private-docs": {"bucket": "private-docs", "visibility": "private"},
}
#: A bucket's own server fields, replaced by ``server: embedded``.
_INLINE_SERVER = (
    "region",
    "endpoint",
    "public_endpoint",
    "use_path_style_endpoint",
    "credentials",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
)


def embedded_server(endpoint: str) -> ServerConfig:
    return ServerConfig(
        region="us-east-1",
        endpoint=endpoint,
        credentials=Credentials(key=DEV_ACCESS_KEY, secret=DEV_SECRET),
    )


def dev_config(endpoint: str, listen: str | None, source: Config | None = None) -> Config:
    """The config served in dev mode: ``source`` (or the defaults) with every bucket on the
    embedded server at ``endpoint``; ``listen`` (the ``--listen`` given) overrides rpc.listen."""
    if source is None:
        return config_from_mapping(
            {
                "rpc": {"listen": listen or DEFAULT_LISTEN},
                "s3": {
                    "default": "uploads",
                    "shutdown_timeout": 5,
                    "servers": {EMBEDDED: embedded_server(endpoint).model_dump()},
                    "buckets": {
                        name: {**spec, "server": EMBEDDED} for name, spec in DEFAULT_BUCKETS.items()
                    },
                },
            }
        )
    s3 = source.s3
    embedded = embedded_server(endpoint)
    # Each file server keeps its name, so buckets and s3.RegisterBucket calls that name it
    # work unchanged; only where it stores (and how it signs) is the embedded server's.
    servers = {EMBEDDED: embedded} | {
        name: embedded.model_copy(update={"visibility_mode": server.visibility_mode})
        for name, server in s3.servers.items()
    }
    buckets = {}
    for name, bucket in s3.buckets.items():
        update: dict[str, Any] = dict.fromkeys(_INLINE_SERVER)
        # What the file's server decided (visibility_mode) stays with the bucket.
        update["visibility_mode"] = resolve_bucket(s3, name, bucket).visibility_mode
        update["server"] = bucket.server if bucket.server is not None else EMBEDDED
        buckets[name] = bucket.model_copy(update=update)
    rpc = source.rpc.model_copy(update={"workers": 1, **({"listen": listen} if listen else {})})
    return source.model_copy(
        update={
            "rpc": rpc,
            "s3": s3.model_copy(update={"servers": servers, "buckets": buckets}),
        }
    )


def banner(address: str, endpoint: str, config: Config) -> str:
    names = ", ".join(f"{name} ({b.visibility})" for name, b in sorted(config.s3.buckets.items()))
    rpc = address.removeprefix("tcp://")
    shown = config.s3.default or min(config.s3.buckets, default="uploads")
    # The running interpreter, so the commands work without an activated virtualenv.
    call = f"{shlex.quote(sys.executable)} -m s3rpc call --rpc {address}"
    first = min(config.s3.buckets.values(), key=lambda b: b.bucket, default=None)
    physical = first.bucket if first is not None else "uploads"
    register = shlex.quote(
        f'{{"name": "scratch", "server": "{EMBEDDED}", "bucket": "{physical}", '
        '"prefix": "scratch"}'
    )
    default = config.s3.default or "none (give 'bucket' in every call)"
    others = sorted(set(config.s3.servers) - {EMBEDDED})
    also = f"; the config's servers ({', '.join(others)}) point at it too" if others else ""
    return f"""
s3rpc dev is serving RPC on {address}
  embedded S3 server: {endpoint} (moto) -- data lives in memory and is gone when you stop
  buckets: {names}; default: {default}
  the embedded server is called "{EMBEDDED}"{also} (use it as "server" in s3.RegisterBucket)

Try it from a shell:
  {call} s3.Write '{{"pathname": "hello.txt"}}' --content 'Hello, s3rpc!'
  {call} s3.Read '{{"pathname": "hello.txt"}}' --out /tmp/hello.txt
  {call} s3.RegisterBucket {register}

or from PHP (composer require spiral/goridge):
  $rpc = new \\Spiral\\Goridge\\RPC\\RPC(\\Spiral\\Goridge\\Relay::create('tcp://{rpc}'));
  $rpc->call('s3.Write', ['bucket' => '{shown}', 'pathname' => 'hello.txt',
                          'content' => base64_encode('Hello, s3rpc!')]);
  var_dump($rpc->call('s3.Read', ['bucket' => '{shown}', 'pathname' => 'hello.txt']));

Press Ctrl-C to stop.
"""


def run_dev(listen: str | None, config_path: str | None, out: TextIO = sys.stdout) -> int:
    """Serve until a signal; ``listen`` (``--listen``) overrides the file's rpc.listen."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("s3rpc dev needs the embedded S3 server: pip install 's3rpc[dev]'", file=sys.stderr)
        return 2
    import boto3

    from s3rpc.app import serve
    from s3rpc.logs import LogOutputError, configure_logging

    # The file's servers are replaced, so their credentials and endpoints may be unset here.
    source = load_config(config_path, servers=False) if config_path else None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        config = dev_config(endpoint, listen, source)
        admin = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=DEV_ACCESS_KEY,
            aws_secret_access_key=DEV_SECRET,
        )
        for physical in sorted({b.bucket for b in config.s3.buckets.values()}):
            admin.create_bucket(Bucket=physical)
        logs = config.logs
        try:
            configure_logging(
                logs.level, logs.format, output=logs.output, err_output=logs.err_output
            )
        except LogOutputError as exc:
            print(f"s3rpc: invalid configuration: {exc}", file=sys.stderr)
            return 2

        def ready(app: App) -> None:
            address = app.server.bound if app.server else config.rpc.listen
            print(banner(address, endpoint, config), file=out, flush=True)

        return serve(config, on_ready=ready)
    finally:
        moto.stop()

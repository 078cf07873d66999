"""``s3rpc dev``: the daemon on an embedded, in-memory S3 server (moto), for trying it out.

No account and no config needed: the buckets of ``.rr.yaml.example`` are created on an S3
server running inside this process on 127.0.0.1, and RPC is served on 127.0.0.1:6001.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from s3rpc.config import Config, config_from_mapping, load_config

if TYPE_CHECKING:
    from s3rpc.app import App

DEV_ACCESS_KEY = "s3rpc-dev"
DEV_SECRET = "s3rpc-dev-secret"  # noqa: S105 - the embedded server accepts any credentials
DEFAULT_BUCKETS: dict[str, dict[str, Any]] = {
    "uploads": {"bucket": "uploads", "visibility": "public"},
    "private-docs": {"bucket": "private-docs", "visibility": "private"},
}
_BUCKET_KEEP = (
    "bucket",
    "prefix",
    "visibility",
    "visibility_mode",
    "public_url",
    "max_concurrent_operations",
    "part_size",
    "concurrency",
    "operation_timeout",
)


def dev_config(endpoint: str, listen: str, source: Config | None = None) -> Config:
    """The config served in dev mode: ``source``'s buckets (or the defaults) on ``endpoint``."""
    if source is not None:
        buckets = {
            name: {key: getattr(b, key) for key in _BUCKET_KEEP if getattr(b, key) is not None}
            for name, b in source.s3.buckets.items()
        }
        default = source.s3.default
        logs = source.logs.model_dump()
    else:
        buckets = {name: dict(spec) for name, spec in DEFAULT_BUCKETS.items()}
        default = "uploads"
        logs = {"level": "info", "format": "auto"}
    for spec in buckets.values():
        spec["server"] = "embedded"
    return config_from_mapping(
        {
            "rpc": {"listen": listen},
            "logs": logs,
            "s3": {
                "default": default,
                "shutdown_timeout": 5,
                "servers": {
                    "embedded": {
                        "region": "us-east-1",
                        "endpoint": endpoint,
                        "credentials": {"key": DEV_ACCESS_KEY, "secret": DEV_SECRET},
                    }
                },
                "buckets": buckets,
            },
        }
    )


def banner(address: str, endpoint: str, config: Config) -> str:
    names = ", ".join(f"{name} ({b.visibility})" for name, b in sorted(config.s3.buckets.items()))
    rpc = address.removeprefix("tcp://")
    return f"""
s3rpc dev is serving RPC on {address}
  embedded S3 server: {endpoint} (moto) -- data lives in memory and is gone when you stop
  buckets: {names}; default: {config.s3.default}

Try it from a shell:
  s3rpc call --rpc {address} s3.Write '{{"pathname": "hello.txt"}}' --content 'Hello, s3rpc!'
  s3rpc call --rpc {address} s3.Read '{{"pathname": "hello.txt"}}' --out hello.txt

or from PHP (composer require spiral/goridge):
  $rpc = new \\Spiral\\Goridge\\RPC\\RPC(\\Spiral\\Goridge\\Relay::create('tcp://{rpc}'));
  $rpc->call('s3.Write', ['bucket' => 'uploads', 'pathname' => 'hello.txt',
                          'content' => base64_encode('Hello, s3rpc!')]);
  var_dump($rpc->call('s3.Read', ['bucket' => 'uploads', 'pathname' => 'hello.txt']));

Press Ctrl-C to stop.
"""


def run_dev(listen: str, config_path: str | None, out: TextIO = sys.stdout) -> int:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("s3rpc dev needs the embedded S3 server: pip install 's3rpc[dev]'", file=sys.stderr)
        return 2
    import boto3

    from s3rpc.app import serve
    from s3rpc.logs import configure_logging

    source = load_config(config_path) if config_path else None
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
        configure_logging(config.logs.level, config.logs.format)

        def ready(app: App) -> None:
            address = app.server.bound if app.server else listen
            print(banner(address, endpoint, config), file=out, flush=True)

        return serve(config, on_ready=ready)
    finally:
        moto.stop()

"""Command line: ``s3rpc serve | check-config | dev | call``. Maps argv to the app; exit codes.

0 success; 1 a call or the daemon failed; 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from s3rpc import __version__
from s3rpc.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from s3rpc.errors import S3RpcError
from s3rpc.logs import configure_logging

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def run_async(main: Coroutine[Any, Any, int | None]) -> int | None:
    """Run on uvloop when it is installed (it is a dependency on POSIX), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a POSIX dependency
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _load(path: str) -> Config:
    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"s3rpc: invalid configuration in {args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    buckets = ", ".join(sorted(config.s3.buckets)) or "none"
    print(
        f"configuration OK: listen {config.rpc.listen}; buckets: {buckets}; "
        f"default: {config.s3.default or 'none'}"
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"s3rpc: invalid configuration in {args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.listen:
        config = _with_listen(config, args.listen)
    configure_logging(config.logs.level, config.logs.format)
    return _serve(config)


def _with_listen(config: Config, listen: str) -> Config:
    try:
        return Config.model_validate({**config.model_dump(), "rpc": {**config.rpc.model_dump(), "listen": listen}})
    except Exception as exc:
        raise SystemExit(f"s3rpc: --listen: {exc}") from None


def _serve(config: Config) -> int:
    from s3rpc.app import App

    async def main() -> int:
        app = App(config)
        try:
            await app.run()
        except S3RpcError as exc:
            print(f"s3rpc: {exc.wire_text()}", file=sys.stderr)
            return EXIT_CONFIG if exc.code == "INVALID_CONFIG" else EXIT_FAILED
        except OSError as exc:
            print(f"s3rpc: cannot listen on {config.rpc.listen}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK

    return run_async(main()) or EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3rpc", description="S3 object storage for PHP over Goridge RPC")
    parser.add_argument("--version", action="version", version=f"s3rpc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("-c", "--config", default=DEFAULT_CONFIG_PATH, help="path to .rr.yaml (default: %(default)s)")
    serve.add_argument("--listen", help="override rpc.listen, e.g. tcp://127.0.0.1:6001")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG_PATH, help="path to .rr.yaml (default: %(default)s)")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130

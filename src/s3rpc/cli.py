"""Command line: ``s3rpc serve | check-config | dev | call``. Maps argv to the app; exit codes.

0 success; 1 a call or the daemon failed; 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import structlog

from s3rpc import __version__
from s3rpc.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    check_host_port,
    load_config,
    parse_listen,
)
from s3rpc.logs import LogOutputError, configure_logging

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _load(path: str) -> Config | None:
    """The config, or None after saying on stderr why it cannot be used."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"s3rpc: invalid configuration in {path}: {exc}", file=sys.stderr)
        return None


def _start_logging(config: Config) -> bool:
    """Logging per ``logs``; False after saying on stderr which output cannot be opened."""
    logs = config.logs
    try:
        configure_logging(logs.level, logs.format, output=logs.output, err_output=logs.err_output)
    except LogOutputError as exc:
        print(f"s3rpc: invalid configuration: {exc}", file=sys.stderr)
        return False
    log = structlog.get_logger("s3rpc.config")
    for key in config.ignored_keys():
        log.debug("config_key_ignored", key=key, reason="a RoadRunner key s3rpc does not use")
    return True


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    buckets = ", ".join(sorted(config.s3.buckets)) or "none"
    print(
        f"configuration OK: listen {config.rpc.listen}; buckets: {buckets}; "
        f"default: {config.s3.default or 'none'}"
    )
    if config.ignored_keys():
        print(f"RoadRunner keys accepted, not used: {', '.join(config.ignored_keys())}")
    if args.connect:
        return _check_connect(config)
    return EXIT_OK


def _check_connect(config: Config) -> int:
    """One line per bucket: reachable, or what is wrong; 1 unless every bucket is reachable."""
    from s3rpc.app import run_async
    from s3rpc.errors import S3RpcError
    from s3rpc.probes import BucketHealth, connect_check

    found: list[BucketHealth] = []
    # The report is the lines printed below; the daemon's own log lines (its debug
    # "buckets ready", a retry warning) would only interleave with them on stdout.
    configure_logging("error", "console", output=("stderr",))

    async def check() -> None:
        found.extend(await connect_check(config))

    try:
        run_async(check())
    except S3RpcError as exc:
        print(f"s3rpc: {exc.wire_text()}", file=sys.stderr)
        return EXIT_CONFIG
    for result in found:
        where = f"s3://{result.physical}" + (f" at {result.endpoint}" if result.endpoint else "")
        print(f"bucket '{result.bucket}' ({where}): {result.describe()}")
    return EXIT_OK if all(result.ok for result in found) else EXIT_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.listen:
        try:
            parse_listen(args.listen)
        except ValueError as exc:
            print(f"s3rpc: --listen: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.workers is not None and not 1 <= args.workers <= 256:
        print("s3rpc: --workers must be between 1 and 256", file=sys.stderr)
        return EXIT_CONFIG
    for option, value in (
        ("--metrics-address", args.metrics_address),
        ("--status-address", args.status_address),
    ):
        if value and value != "off":
            try:
                check_host_port(value)
            except ValueError as exc:
                print(f"s3rpc: {option}: {exc}", file=sys.stderr)
                return EXIT_CONFIG
    config = _overridden(config, args)
    if not _start_logging(config):
        return EXIT_CONFIG
    path = os.path.abspath(args.config)

    def load() -> Config:
        """SIGHUP: the same file read again, with the same command-line overrides."""
        return _overridden(load_config(path), args)

    return _serve(config, load)


def _overridden(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with ``--listen``, ``--workers``, ``--metrics-address`` and
    ``--status-address`` applied (already checked); ``off`` turns metrics or status off."""
    if args.listen:
        rpc = config.rpc.model_copy(update={"listen": args.listen})
        config = config.model_copy(update={"rpc": rpc})
    if args.workers is not None:
        rpc = config.rpc.model_copy(update={"workers": args.workers})
        config = config.model_copy(update={"rpc": rpc})
    for section, value in (("metrics", args.metrics_address), ("status", args.status_address)):
        if value is not None:
            address = "" if value == "off" else value
            part = getattr(config, section).model_copy(update={"address": address})
            config = config.model_copy(update={section: part})
    return config


def _serve(config: Config, load: Callable[[], Config]) -> int:
    if config.rpc.workers > 1:
        from s3rpc.workers import supervise

        return supervise(config, load)
    from s3rpc.app import serve

    return serve(config, load=load)


def cmd_dev(args: argparse.Namespace) -> int:
    from s3rpc.dev import run_dev

    try:
        return run_dev(args.listen, args.config)
    except ConfigError as exc:
        print(f"s3rpc: invalid configuration in {args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_call(args: argparse.Namespace) -> int:
    import base64
    import json

    from s3rpc.client import Client, RpcError

    try:
        params = json.loads(args.params) if args.params else {}
    except json.JSONDecodeError as exc:
        print(f"s3rpc: params are not valid JSON: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not isinstance(params, dict):
        print("s3rpc: params must be a JSON object", file=sys.stderr)
        return EXIT_CONFIG
    if args.file is not None:
        try:
            with open(args.file, "rb") as fh:
                params["content"] = fh.read()
        except OSError as exc:
            print(f"s3rpc: cannot read --file {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_CONFIG
    elif args.content is not None:
        params["content"] = args.content.encode()
    elif isinstance(params.get("content"), str):
        # Given in the JSON argument, content is base64 text, as on the JSON wire.
        try:
            params["content"] = base64.b64decode(params["content"], validate=True)
        except ValueError:
            print(
                "s3rpc: 'content' in the JSON params must be base64 (or use --content/--file)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    address = args.rpc or os.environ.get("RR_RPC") or "tcp://127.0.0.1:6001"
    try:
        with Client(address, codec=args.codec, timeout=args.timeout) as client:
            result = client.call(args.method, params)
    except RpcError as exc:
        print(exc.text, file=sys.stderr)
        return EXIT_FAILED
    except (OSError, TimeoutError, ValueError) as exc:
        print(f"s3rpc: cannot call {address}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(result, dict) and isinstance(result.get("content"), bytes):
        if args.out is not None:
            try:
                with open(args.out, "wb") as fh:
                    fh.write(result["content"])
            except OSError as exc:
                print(
                    f"s3rpc: cannot write --out {args.out}: {exc.strerror or exc}", file=sys.stderr
                )
                return EXIT_FAILED
            result["content"] = f"<{len(result['content'])} bytes written to {args.out}>"
        else:
            result["content"] = base64.b64encode(result["content"]).decode()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return EXIT_OK


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG_PATH,
        help="path to .rr.yaml (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3rpc", description="S3 object storage for PHP over Goridge RPC"
    )
    parser.add_argument("--version", action="version", version=f"s3rpc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    _config_option(serve)
    serve.add_argument("--listen", help="override rpc.listen, e.g. tcp://127.0.0.1:6001")
    serve.add_argument(
        "--workers",
        type=int,
        help="override rpc.workers: worker processes on one listening socket (default 1)",
    )
    serve.add_argument(
        "--metrics-address",
        help="override metrics.address, e.g. 127.0.0.1:2113 ('off': no metrics endpoint)",
    )
    serve.add_argument(
        "--status-address",
        help="override status.address, e.g. 127.0.0.1:2115 ('off': no probe endpoint)",
    )
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    _config_option(check)
    check.add_argument(
        "--connect",
        action="store_true",
        help="also reach every bucket (HeadBucket, one attempt) and report what is wrong",
    )
    check.set_defaults(func=cmd_check_config)

    dev = sub.add_parser("dev", help="run on an embedded in-memory S3 server (no account needed)")
    dev.add_argument(
        "--listen", help="RPC address (default: the file's rpc.listen, else tcp://127.0.0.1:6001)"
    )
    dev.add_argument(
        "-c",
        "--config",
        help="serve this config file, every bucket on the embedded server (named 'embedded')",
    )
    dev.set_defaults(func=cmd_dev)

    call = sub.add_parser("call", help="call one RPC method and print the result as JSON")
    call.add_argument("method", help="e.g. s3.ListBuckets")
    call.add_argument("params", nargs="?", help="params as a JSON object")
    call.add_argument("--rpc", help="daemon address (default: $RR_RPC, else tcp://127.0.0.1:6001)")
    call.add_argument("--codec", choices=["json", "msgpack"], default="json")
    call.add_argument("--timeout", type=float, default=60.0, help="seconds (default: %(default)s)")
    content = call.add_mutually_exclusive_group()
    content.add_argument("--file", help="send this file's bytes as 'content' (s3.Write)")
    content.add_argument("--content", help="send this text (UTF-8) as 'content' (s3.Write)")
    call.add_argument("--out", help="write the result's 'content' (s3.Read) to this file")
    call.set_defaults(func=cmd_call)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130

"""The RPC endpoint: asyncio transport, the dispatch table and the daemon's lifecycle hooks.

Knows frames and handlers, never S3.
"""

from s3rpc.contract import Handler, Method, MethodTable
from s3rpc.server.rpc_server import RpcServer
from s3rpc.server.systemd import notify, reloading, watchdog_interval

__all__ = [
    "Handler",
    "Method",
    "MethodTable",
    "RpcServer",
    "notify",
    "reloading",
    "watchdog_interval",
]

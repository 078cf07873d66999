"""The RPC endpoint: asyncio transport, the dispatch table and the daemon's lifecycle hooks.

Knows frames and handlers, never S3.
"""

from s3rpc.server.dispatch import Handler, Method, MethodTable, RpcMethod
from s3rpc.server.rpc_server import RpcServer
from s3rpc.server.systemd import notify

__all__ = ["Handler", "Method", "MethodTable", "RpcMethod", "RpcServer", "notify"]

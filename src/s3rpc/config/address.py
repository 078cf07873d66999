"""Listen addresses: ``tcp://host:port`` and ``unix:///path`` for RPC, ``host:port`` for metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class ListenAddress:
    scheme: Literal["tcp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """``tcp://host:port`` (IPv6 in brackets) or ``unix:///absolute/or/relative/path``."""
    if value.startswith("unix://"):
        path = value[len("unix://") :]
        if not path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/s3rpc/rpc.sock")
        return ListenAddress("unix", path=path)
    rest = value[len("tcp://") :] if value.startswith("tcp://") else value
    if "://" in rest:
        raise ValueError("must be tcp://host:port or unix:///path")
    match = re.fullmatch(
        r"(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})", rest
    )
    if match is None:
        raise ValueError("must be tcp://host:port or unix:///path")
    port = int(match["port"])
    if port > 65535:
        raise ValueError("port must be between 0 and 65535")
    host = match["v6"] or match["host"] or "0.0.0.0"
    return ListenAddress("tcp", host=host, port=port)


def check_host_port(value: str) -> str:
    """A metrics address: ``host:port`` (IPv6 in brackets) or "" for none; returned unchanged."""
    if value and not re.fullmatch(r"(?:\[[0-9a-fA-F:.]+\]|[^:\[\]/\s]*):\d{1,5}", value):
        raise ValueError("must be host:port, e.g. 127.0.0.1:2112")
    return value

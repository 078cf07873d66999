"""Prometheus metrics of the RPC endpoint: calls by method and outcome, latency, load.

Served over HTTP at ``metrics.address`` (off by default). Each daemon has its own registry.
Method labels are limited to the served methods, so a client cannot grow label cardinality
by sending made-up method names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, methods: Collection[str]) -> None:
        self.methods = frozenset(methods)
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "s3rpc_calls", "RPC calls answered", ["method", "outcome"], registry=self.registry
        )
        self.duration = Histogram(
            "s3rpc_call_duration_seconds",
            "Time from frame received to answer written",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "s3rpc_request_bytes", "Request payload bytes received", registry=self.registry
        )
        self.bytes_out = Counter(
            "s3rpc_response_bytes", "Response bytes sent", registry=self.registry
        )
        self.in_flight = Gauge(
            "s3rpc_calls_in_flight", "Calls being processed", registry=self.registry
        )
        self.connections = Gauge(
            "s3rpc_connections", "Open client connections", registry=self.registry
        )
        self.protocol_errors = Counter(
            "s3rpc_protocol_errors",
            "Connections closed for breaking the framing",
            registry=self.registry,
        )
        self._http: Any = None

    def call_finished(
        self, method: str, outcome: str, seconds: float, size_in: int, size_out: int
    ) -> None:
        label = method if method in self.methods else "other"
        self.calls.labels(label, outcome).inc()
        self.duration.labels(label).observe(seconds)
        self.bytes_in.inc(size_in)
        self.bytes_out.inc(size_out)

    def serve_http(self, address: str) -> str:
        """Start the exporter on ``host:port`` (port 0 picks one); returns the bound address."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        self._http, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        bound_host, bound_port = self._http.server_address[:2]
        return f"{bound_host}:{bound_port}"

    def stop_http(self) -> None:
        if self._http is not None:
            with contextlib.suppress(Exception):
                self._http.shutdown()
                self._http.server_close()
            self._http = None

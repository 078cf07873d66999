"""Prometheus metrics of one daemon, named as the RoadRunner s3 plugin names them (``rr_s3_*``).

``rr_s3_operations_total{operation,bucket,status}`` and ``rr_s3_errors_total{bucket,error_type}``
are defined exactly as the Go plugin's ``metrics.go`` defines them, so its Grafana dashboards
work unchanged; the other series add latency, bytes, per-bucket load and RPC-level rejections.

Label values are bounded: ``operation`` comes from :data:`OPERATIONS` (else ``other``),
``bucket`` is a configured or registered bucket name (callers collapse anything else into
``other``) with at most ``max_buckets`` distinct values, ``reason`` from :data:`REJECT_REASONS`.
The hot paths touch cached label children only: no ``.labels()`` lookup per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

#: ``s3.*`` method -> ``operation`` label. The first ten are the Go plugin's names.
OPERATIONS: Mapping[str, str] = {
    "s3.Write": "write",
    "s3.Read": "read",
    "s3.Delete": "delete",
    "s3.Copy": "copy",
    "s3.Move": "move",
    "s3.ListObjects": "list",
    "s3.Exists": "exists",
    "s3.GetMetadata": "get_metadata",
    "s3.SetVisibility": "set_visibility",
    "s3.GetPublicURL": "get_url",
    "s3.Ping": "ping",
    "s3.ListBuckets": "list_buckets",
    "s3.RegisterBucket": "register_bucket",
    "s3.UnregisterBucket": "unregister_bucket",
    "s3.ListContents": "list_contents",
    "s3.DeleteMany": "delete_many",
    "s3.CreateDirectory": "create_directory",
    "s3.DeleteDirectory": "delete_directory",
    "s3.WriteFromFile": "write_from_file",
    "s3.ReadToFile": "read_to_file",
    "s3.GetUploadURL": "get_upload_url",
    "s3.GetUploadPost": "get_upload_post",
    "s3.UploadStart": "upload_start",
    "s3.UploadChunk": "upload_chunk",
    "s3.UploadComplete": "upload_complete",
    "s3.UploadAbort": "upload_abort",
}
OTHER = "other"
# prometheus_client does not export its child types: a child is an instance of its parent's class.
_CounterChild = Counter
_GaugeChild = Gauge
_HistogramChild = Histogram
#: ``rr_s3_rpc_frames_rejected_total`` reasons: frames answered or dropped before any method ran.
REJECT_REASONS = (
    "frame_too_large",
    "protocol_error",
    "unknown_method",
    "unsupported_codec",
    "shutting_down",
)
#: Error codes that mean the frame was rejected before dispatch, and the reason they count as.
REJECTED_OUTCOMES: Mapping[str, str] = {
    "UNKNOWN_METHOD": "unknown_method",
    "UNSUPPORTED_CODEC": "unsupported_codec",
    "FRAME_TOO_LARGE": "frame_too_large",
}
MAX_BUCKET_LABELS = 1000
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def operation_name(method: str) -> str:
    """The ``operation`` label of an ``s3.*`` method."""
    return OPERATIONS.get(method, OTHER)


@dataclass(slots=True)
class OperationSeries:
    """The children of one (operation, bucket): what a finished call updates.

    The counters' children are made on first use, so (like the Go plugin's) a series appears
    once it has counted something: no zero ``status="error"`` series for every operation.
    """

    metrics: Metrics
    operation: str
    bucket: str
    duration: _HistogramChild
    success: _CounterChild | None = None
    error: _CounterChild | None = None
    errors: dict[str, _CounterChild] = field(default_factory=dict)

    def succeeded(self, seconds: float) -> None:
        success = self.success
        if success is None:
            success = self.success = self.metrics.operation_child(self, "success")
        success.inc()
        self.duration.observe(seconds)

    def failed(self, seconds: float, error_type: str) -> None:
        error = self.error
        if error is None:
            error = self.error = self.metrics.operation_child(self, "error")
        error.inc()
        self.duration.observe(seconds)
        child = self.errors.get(error_type)
        if child is None:
            child = self.errors[error_type] = self.metrics.error_child(self.bucket, error_type)
        child.inc()


@dataclass(slots=True)
class BucketSeries:
    """The per-bucket children: load gauges and byte counters."""

    inflight: _GaugeChild
    waiters: _GaugeChild
    upload: _CounterChild
    download: _CounterChild


class Metrics:
    """One daemon's registry and the ``rr_s3_*`` series, with label children cached."""

    def __init__(self, max_buckets: int = MAX_BUCKET_LABELS) -> None:
        self.registry = CollectorRegistry()
        self.max_buckets = max_buckets
        r = self.registry
        self.operations_total = Counter(
            "rr_s3_operations_total",
            "Total number of S3 operations by type, bucket, and status",
            ["operation", "bucket", "status"],
            registry=r,
        )
        self.errors_total = Counter(
            "rr_s3_errors_total",
            "Total number of S3 errors by bucket and error type",
            ["bucket", "error_type"],
            registry=r,
        )
        self.duration = Histogram(
            "rr_s3_operation_duration_seconds",
            "Time from the call's start (waiting for a bucket slot included) to its result",
            ["operation", "bucket"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_total = Counter(
            "rr_s3_bytes_total",
            "Object bytes moved between clients and S3 by bucket and direction",
            ["bucket", "direction"],
            registry=r,
        )
        self.inflight = Gauge(
            "rr_s3_inflight_operations",
            "Operations holding one of the bucket's max_concurrent_operations slots",
            ["bucket"],
            registry=r,
        )
        self.semaphore_waiters = Gauge(
            "rr_s3_semaphore_waiters",
            "Calls waiting for one of the bucket's max_concurrent_operations slots",
            ["bucket"],
            registry=r,
        )
        self.rpc_connections = Gauge(
            "rr_s3_rpc_connections", "Open RPC client connections", registry=r
        )
        self.frames_rejected = Counter(
            "rr_s3_rpc_frames_rejected_total",
            "RPC frames refused before any method ran, by reason",
            ["reason"],
            registry=r,
        )
        self._rejected = {reason: self.frames_rejected.labels(reason) for reason in REJECT_REASONS}
        self._operations: dict[tuple[str, str], OperationSeries] = {}
        self._buckets: dict[str, BucketSeries] = {}
        self._bucket_labels: set[str] = set()

    # --- labels ----------------------------------------------------------------------------

    def bucket_label(self, name: str) -> str:
        """``name`` (a known bucket's) as a label, or ``other`` once ``max_buckets`` are in use."""
        labels = self._bucket_labels
        if name in labels:
            return name
        if len(labels) >= self.max_buckets:
            return OTHER
        labels.add(name)
        return name

    # --- cached children -------------------------------------------------------------------

    def operation(self, operation: str, bucket: str) -> OperationSeries:
        """The series of ``operation`` on ``bucket`` (a known bucket name, or "" / ``other``)."""
        series = self._operations.get((operation, bucket))
        if series is None:
            label = self.bucket_label(bucket) if bucket not in ("", OTHER) else bucket
            series = self._operations.get((operation, label))
            if series is None:
                series = OperationSeries(
                    self, operation, label, self.duration.labels(operation, label)
                )
                self._operations[(operation, label)] = series
            if label == bucket:
                self._operations[(operation, bucket)] = series
        return series

    def bucket(self, bucket: str) -> BucketSeries:
        """The load gauges and byte counters of ``bucket`` (a known bucket name)."""
        series = self._buckets.get(bucket)
        if series is None:
            label = self.bucket_label(bucket)
            series = self._buckets.get(label)
            if series is None:
                series = self._buckets[label] = BucketSeries(
                    self.inflight.labels(label),
                    self.semaphore_waiters.labels(label),
                    self.bytes_total.labels(label, "upload"),
                    self.bytes_total.labels(label, "download"),
                )
            if label == bucket:
                self._buckets[bucket] = series
        return series

    def operation_child(self, series: OperationSeries, status: str) -> _CounterChild:
        return self.operations_total.labels(series.operation, series.bucket, status)

    def error_child(self, bucket: str, error_type: str) -> _CounterChild:
        return self.errors_total.labels(bucket, error_type)

    # --- RPC level -------------------------------------------------------------------------

    def frame_rejected(self, reason: str) -> None:
        """Count a frame refused before dispatch; ``reason`` is one of :data:`REJECT_REASONS`."""
        self._rejected[reason].inc()

    def call_answered(self, outcome: str) -> None:
        """Count the answer's outcome as a rejection when it is one (an unknown method...)."""
        reason = REJECTED_OUTCOMES.get(outcome)
        if reason is not None:
            self._rejected[reason].inc()

    # --- exposition ------------------------------------------------------------------------

    def exposition(self) -> tuple[int, str, bytes]:
        """``/metrics``' answer: (status, content type, body) in the Prometheus text format."""
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

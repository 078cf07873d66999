"""Prometheus metrics of one daemon, named as the RoadRunner s3 plugin names them (``rr_s3_*``).

``rr_s3_operations_total{operation,bucket,status}`` and ``rr_s3_errors_total{bucket,error_type}``
are defined exactly as the Go plugin's ``metrics.go`` defines them, so its Grafana dashboards
work unchanged; the other series add latency, bytes, per-bucket load and RPC-level rejections.

Label values are bounded: ``operation`` comes from :data:`OPERATIONS` (else ``other``),
``bucket`` is a configured or registered bucket name (callers collapse anything else into
``other``) with at most ``max_buckets`` distinct values, ``reason`` from :data:`REJECT_REASONS`.

Cost: the series are plain numbers in slotted objects, cached by label tuple and updated from
the event loop only (no lock, no ``.labels()`` per call): recording an outcome takes about
0.4 µs, the whole metered wrapper and slot about 1.5 µs per call. A scrape snapshots them on the
loop into prometheus_client metric families and renders those in a thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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
    "s3.UploadStatus": "upload_status",
}
OTHER = "other"
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
_LE = [*(repr(bound) for bound in LATENCY_BUCKETS), "+Inf"]  # as prometheus_client spells them


def operation_name(method: str) -> str:
    """The ``operation`` label of an ``s3.*`` method."""
    return OPERATIONS.get(method, OTHER)


class Count:
    """A counter or gauge value: ``inc``/``dec`` on the event loop, read by a scrape."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class OperationSeries:
    """One (operation, bucket): its success and error counts and its latency histogram.

    A count still at zero is not exported, so (as with the Go plugin's) a series appears once it
    has counted something: no zero ``status="error"`` series for every operation.
    """

    __slots__ = ("bucket", "counts", "error", "errors", "metrics", "operation", "success", "sum")

    def __init__(self, metrics: Metrics, operation: str, bucket: str) -> None:
        self.metrics = metrics
        self.operation = operation
        self.bucket = bucket
        self.success = 0
        self.error = 0
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: over the largest bound
        self.sum = 0.0
        self.errors: dict[str, Count] = {}

    def succeeded(self, seconds: float) -> None:
        self.success += 1
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def failed(self, seconds: float, error_type: str) -> None:
        self.error += 1
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        count = self.errors.get(error_type)
        if count is None:
            count = self.errors[error_type] = self.metrics.error_count(self.bucket, error_type)
        count.value += 1


class BucketSeries:
    """One bucket's load gauges and byte counters."""

    __slots__ = ("download", "inflight", "upload", "waiters")

    def __init__(self) -> None:
        self.inflight = Count()
        self.waiters = Count()
        self.upload = Count()
        self.download = Count()


class Metrics:
    """One daemon's ``rr_s3_*`` series and the registry that exports them."""

    def __init__(self, max_buckets: int = MAX_BUCKET_LABELS) -> None:
        self.max_buckets = max_buckets
        self.rpc_connections = Count()
        self._rejected = {reason: Count() for reason in REJECT_REASONS}
        self._operations: dict[tuple[str, str], OperationSeries] = {}
        self._buckets: dict[str, BucketSeries] = {}
        self._errors: dict[tuple[str, str], Count] = {}
        self._bucket_labels: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

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

    # --- cached series ---------------------------------------------------------------------

    def operation(self, operation: str, bucket: str) -> OperationSeries:
        """The series of ``operation`` on ``bucket`` (a known bucket name, or "" / ``other``)."""
        series = self._operations.get((operation, bucket))
        if series is None:
            label = self.bucket_label(bucket) if bucket not in ("", OTHER) else bucket
            series = self._operations.get((operation, label))
            if series is None:
                series = self._operations[(operation, label)] = OperationSeries(
                    self, operation, label
                )
        return series

    def bucket(self, bucket: str) -> BucketSeries:
        """The load gauges and byte counters of ``bucket`` (a known bucket name)."""
        series = self._buckets.get(bucket)
        if series is None:
            label = self.bucket_label(bucket)
            series = self._buckets.get(label)
            if series is None:
                series = self._buckets[label] = BucketSeries()
        return series

    def error_count(self, bucket: str, error_type: str) -> Count:
        count = self._errors.get((bucket, error_type))
        if count is None:
            count = self._errors[(bucket, error_type)] = Count()
        return count

    # --- RPC level -------------------------------------------------------------------------

    def frame_rejected(self, reason: str) -> None:
        """Count a frame refused before dispatch; ``reason`` is one of :data:`REJECT_REASONS`."""
        self._rejected[reason].value += 1

    def call_answered(self, outcome: str) -> None:
        """Count the answer's outcome as a rejection when it is one (an unknown method...)."""
        reason = REJECTED_OUTCOMES.get(outcome)
        if reason is not None:
            self._rejected[reason].value += 1

    # --- exposition ------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The families as of now (prometheus_client's Collector protocol); on the event loop."""
        operations = CounterMetricFamily(
            "rr_s3_operations_total",
            "Total number of S3 operations by type, bucket, and status",
            labels=["operation", "bucket", "status"],
        )
        duration = HistogramMetricFamily(
            "rr_s3_operation_duration_seconds",
            "Time from the call's start (waiting for a bucket slot included) to its result",
            labels=["operation", "bucket"],
        )
        for (operation, bucket), series in list(self._operations.items()):
            if series.success:
                operations.add_metric([operation, bucket, "success"], series.success)
            if series.error:
                operations.add_metric([operation, bucket, "error"], series.error)
            cumulative, running = [], 0
            for le, in_bucket in zip(_LE, series.counts, strict=True):
                running += in_bucket
                cumulative.append((le, running))
            duration.add_metric([operation, bucket], cumulative, series.sum)
        yield operations
        errors = CounterMetricFamily(
            "rr_s3_errors_total",
            "Total number of S3 errors by bucket and error type",
            labels=["bucket", "error_type"],
        )
        for (bucket, error_type), count in list(self._errors.items()):
            errors.add_metric([bucket, error_type], count.value)
        yield errors
        yield duration
        transfers = CounterMetricFamily(
            "rr_s3_bytes_total",
            "Object bytes moved between clients and S3 by bucket and direction",
            labels=["bucket", "direction"],
        )
        inflight = GaugeMetricFamily(
            "rr_s3_inflight_operations",
            "Operations holding one of the bucket's max_concurrent_operations slots",
            labels=["bucket"],
        )
        waiters = GaugeMetricFamily(
            "rr_s3_semaphore_waiters",
            "Calls waiting for one of the bucket's max_concurrent_operations slots",
            labels=["bucket"],
        )
        for bucket, load in list(self._buckets.items()):
            transfers.add_metric([bucket, "upload"], load.upload.value)
            transfers.add_metric([bucket, "download"], load.download.value)
            inflight.add_metric([bucket], load.inflight.value)
            waiters.add_metric([bucket], load.waiters.value)
        yield from (transfers, inflight, waiters)
        yield GaugeMetricFamily(
            "rr_s3_rpc_connections", "Open RPC client connections", self.rpc_connections.value
        )
        rejected = CounterMetricFamily(
            "rr_s3_rpc_frames_rejected_total",
            "RPC frames refused before any method ran, by reason",
            labels=["reason"],
        )
        for reason, count in self._rejected.items():
            rejected.add_metric([reason], count.value)
        yield rejected

    def snapshot(self) -> list[Metric]:
        """Every family as of now: take it on the event loop, render it anywhere."""
        return list(self.collect())

    @staticmethod
    def render(families: Iterable[Metric]) -> tuple[int, str, bytes]:
        """``/metrics``' answer for a :meth:`snapshot`: (status, content type, body)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Frozen(families))
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)


class _Frozen:
    """A snapshot as a collector."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)

"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand: no extra dependency."""
from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: Labels = ()) -> str:
    """`{a="1",b="2"}` with label values escaped, or "" when there are none."""
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing value per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add `amount` to the series with these labels."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """Current value of one series (0 if never incremented)."""
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            yield f"{self.name}{_labels(labels)} {_number(value)}"


class Histogram:
    """Cumulative bucket counts, sum and count per label set."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Iterable[float]) -> None:
        self.name, self.help = name, help
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, list[float]] = {}  # labels -> [per-bucket counts..., +Inf count, sum]
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation."""
        key = tuple(sorted(labels.items()))
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            series[index] += 1
            series[-1] += value

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for labels, series in items:
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), series[:-1]):
                running += count
                yield f"{self.name}_bucket{_labels(labels, (('le', _number(bound)),))} {_number(running)}"
            yield f"{self.name}_sum{_labels(labels)} {_number(series[-1])}"
            yield f"{self.name}_count{_labels(labels)} {_number(running)}"


class Gauge:
    """A value read when metrics are scraped."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name, self.help, self._read = name, help, read

    def samples(self) -> Iterable[str]:
        yield f"{self.name} {_number(self._read())}"


class Registry:
    """The server's metrics, rendered together."""

    def __init__(self) -> None:
        self._metrics: list[Counter | Histogram | Gauge] = []

    def add(self, metric):  # returns its argument, so `x = registry.add(Counter(...))` reads well
        """Register a metric."""
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """All metrics in the text format."""
        lines: list[str] = []
        for metric in self._metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The metrics `bindspace serve` exports."""

    def __init__(self, pending: Callable[[], float]) -> None:
        self.registry = Registry()
        self.requests = self.registry.add(Counter(
            "bindspace_http_requests_total", "HTTP requests by route, method and status code."))
        self.latency = self.registry.add(Histogram(
            "bindspace_http_request_duration_seconds", "HTTP request latency by route.", LATENCY_BUCKETS))
        self.items = self.registry.add(Counter(
            "bindspace_embedded_items_total", "Items embedded by the model, by tower."))
        self.batch_size = self.registry.add(Histogram(
            "bindspace_batch_size", "Items per model call, by tower.", BATCH_BUCKETS))
        self.model_seconds = self.registry.add(Histogram(
            "bindspace_model_call_seconds", "Duration of one batched model call, by tower.", LATENCY_BUCKETS))
        self.input_errors = self.registry.add(Counter(
            "bindspace_input_errors_total", "Requests refused for bad input, by error type."))
        self.registry.add(Gauge("bindspace_pending_items", "Items waiting for the model.", pending))

    def on_batch(self, modality: str, size: int, seconds: float) -> None:
        """Batcher callback after each model call."""
        self.items.inc(size, modality=str(modality))
        self.batch_size.observe(size, modality=str(modality))
        self.model_seconds.observe(seconds, modality=str(modality))

    def render(self) -> str:
        return self.registry.render()

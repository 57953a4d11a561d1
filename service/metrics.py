"""Prometheus metrics of the service (served with BentoML's own at ``/metrics``).

Created on first use, inside a running worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR``
at worker start, after this module is imported, and ``prometheus_client`` must see it
for the metrics of all three services to show on the gateway's ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


@dataclass(frozen=True)
class Metrics:
    """The metric families; label names are in each one's documentation."""

    latency: Any  # speechloop_request_seconds{route,status}
    errors: Any  # speechloop_errors_total{route,error}
    audio_seconds: Any  # speechloop_audio_seconds_total{kind}
    rtf: Any  # speechloop_rtf{kind}
    batch_size: Any  # speechloop_batch_size{kind}
    model_info: Any  # speechloop_model_info{kind,version,backend}
    swaps: Any  # speechloop_model_swaps_total{kind,outcome}


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    """The process's metric objects (built once, after the worker set up Prometheus)."""
    import prometheus_client as prom

    return Metrics(
        latency=prom.Histogram(
            "speechloop_request_seconds",
            "Latency of /v1 requests, by route and status",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS,
        ),
        errors=prom.Counter(
            "speechloop_errors_total",
            "Failed requests by route and error class",
            ["route", "error"],
        ),
        audio_seconds=prom.Counter(
            "speechloop_audio_seconds_total", "Seconds of audio processed, by model kind", ["kind"]
        ),
        rtf=prom.Histogram(
            "speechloop_rtf",
            "Real-time factor of model calls (compute seconds / audio seconds)",
            ["kind"],
            buckets=_RTF_BUCKETS,
        ),
        batch_size=prom.Histogram(
            "speechloop_batch_size",
            "Items per model call",
            ["kind"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
        ),
        model_info=prom.Gauge(
            "speechloop_model_info",
            "1 for the model version being served, by kind, version and backend",
            ["kind", "version", "backend"],
            multiprocess_mode="livemax",
        ),
        swaps=prom.Counter(
            "speechloop_model_swaps_total",
            "Hot-swap attempts by kind and outcome (swapped, refused)",
            ["kind", "outcome"],
        ),
    )

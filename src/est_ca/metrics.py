"""Prometheus metrics: what an operator graphs and alerts on.

One registry per service (tests and tools open several in one process), exposed on the admin
listener at /admin/v1/metrics to a token with the read scope, never on the public HTTP port.
Values that already live elsewhere (CRL age and entries, the worker queue) are read when
Prometheus scrapes, so nothing has to remember to update them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Request and issuance latencies: sub-millisecond OCSP answers up to multi-second RSA keygen.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CrlFacts:
    """What the CRL collector needs of one published CRL: the CA, its age and its entries."""

    def __init__(self, ca: str, this_update: dt.datetime, entries: int) -> None:
        self.ca = ca
        self.this_update = this_update
        self.entries = entries


class _CrlCollector(Collector):
    def __init__(
        self, read: Callable[[], Iterable[CrlFacts]], now: Callable[[], dt.datetime]
    ) -> None:
        self._read = read
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "est_ca_crl_age_seconds", "Seconds since the published CRL's thisUpdate", labels=["ca"]
        )
        entries = GaugeMetricFamily(
            "est_ca_crl_entries", "Revoked certificates the published CRL lists", labels=["ca"]
        )
        now = self._now()
        for crl in self._read():
            age.add_metric([crl.ca], (now - crl.this_update).total_seconds())
            entries.add_metric([crl.ca], crl.entries)
        yield age
        yield entries


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "est_ca_http_request_seconds",
            "HTTP requests by listener, endpoint (route), method and status",
            ["listener", "endpoint", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.enrollments = Counter(
            "est_ca_enrollments",
            "Enrollments and renewals by outcome (issued, redelivered, refused), profile and CA",
            ["operation", "outcome", "profile", "ca"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "est_ca_enrollment_refusals",
            "Refused enrollments by reason (the domain error's kind)",
            ["operation", "reason"],
            registry=self.registry,
        )
        self.issuance = Histogram(
            "est_ca_issuance_seconds",
            "Building, checking and signing one certificate (on a worker thread), by CA",
            ["ca"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ocsp = Counter(
            "est_ca_ocsp_responses",
            "OCSP answers by certificate status (good, revoked, unknown) or response status",
            ["status"],
            registry=self.registry,
        )
        self.database_errors = Counter(
            "est_ca_database_errors",
            "Requests that failed on a database error",
            registry=self.registry,
        )
        self.throttled = Counter(
            "est_ca_throttled_requests",
            "Requests refused with 429 (a failing source) or 503 (enrollment slots full)",
            ["listener", "status"],
            registry=self.registry,
        )

    def watch_workers(self, pending: Callable[[], int]) -> None:
        """The worker queue's depth (CPU work submitted and not finished), read at scrape."""
        Gauge(
            "est_ca_worker_queue_depth",
            "CPU work (signing, CSR checks) submitted to the worker threads and not finished",
            registry=self.registry,
        ).set_function(lambda: float(pending()))

    def watch_crls(
        self, read: Callable[[], Iterable[CrlFacts]], now: Callable[[], dt.datetime]
    ) -> None:
        self.registry.register(_CrlCollector(read, now))

    def count_ocsp(self, statuses: Iterable[str]) -> None:
        """Each certificate status an OCSP answer gives (or its response status when it gives
        none, e.g. malformed_request), as the responder recorded them on the answer."""
        for status in statuses:
            self.ocsp.labels(status).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics for the resident adapters (milter, SMTP service): one small object any
adapter calls. Needs the ``metrics`` extra (``prometheus_client``).

An adapter makes one :class:`Metrics` and calls :meth:`Metrics.observe` with the record of
every message (the same record as its log line), :meth:`Metrics.error` for failures that are
not a message's verdict, and :meth:`Metrics.in_flight` around work; sizes it can report
(quarantine, a spool, a worker queue) are registered with :meth:`Metrics.track_size` and read
at scrape time. :meth:`Metrics.serve` exports everything over HTTP (``/metrics``).

Exported (``adapter`` is ``milter`` or ``serve``):

- ``mailroute_messages_total{adapter,verdict}``: messages by verdict;
- ``mailroute_filter_results_total{adapter,filter,result}``: each filter's result;
- ``mailroute_message_duration_seconds{adapter}``: histogram, arrival to decision;
- ``mailroute_errors_total{adapter,kind}``: ``internal``, ``timeout``, ``protocol`` ...;
- ``mailroute_messages_in_flight{adapter}``: messages being processed now;
- ``mailroute_queue_size{adapter,queue}``: sizes registered with :meth:`track_size`.

Label values are mailroute's own words (verdicts, filter names), never message content, so
the series stay few.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mailroute.adapters.messagelog import MessageRecord

__all__ = ["Metrics", "directory_size"]

#: Histogram buckets in seconds: a milter answers in milliseconds, crypto takes longer.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)


class _Sizes(Collector):
    """Reads the registered sizes when Prometheus scrapes."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter
        self.sizes: dict[str, Callable[[], float]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("mailroute_queue_size", "Messages waiting, by queue",
                                   labels=["adapter", "queue"])
        for name, size in sorted(self.sizes.items()):
            try:
                value = float(size())
            except OSError:  # a queue directory gone for a moment: leave the series out
                continue
            family.add_metric([self.adapter, name], value)
        yield family


class Metrics:
    """The metrics of one adapter, in a registry of its own (``registry``)."""

    def __init__(self, adapter: str, registry: CollectorRegistry | None = None) -> None:
        self.adapter = adapter
        self.registry = registry if registry is not None else CollectorRegistry()
        self._messages = Counter("mailroute_messages", "Messages by verdict",
                                 ["adapter", "verdict"], registry=self.registry)
        self._filters = Counter("mailroute_filter_results", "Filter results",
                                ["adapter", "filter", "result"], registry=self.registry)
        self._duration = Histogram("mailroute_message_duration_seconds",
                                   "Arrival to decision per message", ["adapter"],
                                   buckets=DURATION_BUCKETS, registry=self.registry)
        self._errors = Counter("mailroute_errors", "Failures by kind", ["adapter", "kind"],
                               registry=self.registry)
        self._in_flight = Gauge("mailroute_messages_in_flight", "Messages being processed",
                                ["adapter"], registry=self.registry)
        self._in_flight.labels(adapter)   # exported as 0 before the first message
        self._sizes = _Sizes(adapter)
        self.registry.register(self._sizes)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def observe(self, record: MessageRecord) -> None:
        """Count one message: its verdict, each filter's result, its duration."""
        self._messages.labels(self.adapter, record.verdict).inc()
        for name, result in record.filters:
            self._filters.labels(self.adapter, name, result).inc()
        self._duration.labels(self.adapter).observe(record.duration)

    def error(self, kind: str) -> None:
        """Count a failure of kind ``kind`` (``internal``, ``timeout``, ``protocol`` ...)."""
        self._errors.labels(self.adapter, kind).inc()

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a message as in flight while the block runs."""
        gauge = self._in_flight.labels(self.adapter)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def track_size(self, queue: str, size: Callable[[], float]) -> None:
        """Report ``size()`` as ``mailroute_queue_size{queue=...}`` at every scrape."""
        self._sizes.sizes[queue] = size

    def serve(self, host: str, port: int) -> int:
        """Export on ``http://host:port/metrics`` from a daemon thread; returns the port
        (useful with port 0).

        Raises:
            OSError: the address cannot be bound.
        """
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP exporter, if running."""
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None


def directory_size(folder: Path, suffix: str = ".eml") -> Callable[[], float]:
    """A size function: the files ending in ``suffix`` in ``folder`` (0 while it is missing)."""
    def size() -> float:
        if not folder.is_dir():
            return 0.0
        return float(sum(1 for entry in folder.iterdir() if entry.name.endswith(suffix)))
    return size


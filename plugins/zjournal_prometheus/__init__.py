"""First-party zjournal plugin: Prometheus metrics of every journal in the process.

Install with the ``prometheus`` extra (``pip install 'zjournal[prometheus]'``).
Every journal opened with plugins enabled is watched. Metrics:

* ``zjournal_entries{journal, name, state}``: entries by state (pending, acked, dead);
* ``zjournal_oldest_pending_age_seconds{journal}``: age of the oldest pending entry;
* ``zjournal_outbound_pending{journal, name}``: outbound entries pending (for a
  ``confirm=True`` sender: the messages no receiving journal confirmed yet);
* ``zjournal_confirm_latency_seconds{journal}`` (a summary: ``_count``, ``_sum``): from a
  ``confirm=True`` send to its confirmation, for this process's confirm senders
* ``zjournal_duplicates_dropped{journal}``: resends of ``confirm=True`` senders
  this journal held already and dropped, ever;
* ``zjournal_replication_lag_seconds{journal}``, ``zjournal_replication_lag_entries{journal}``: for a
  journal opened with ``replicate=``, how far shipping to the engine is behind (the loss window if this
  host died now: alarm on it); ``zjournal_replication_fenced{journal}``: 1 once another process took it over;
* ``zjournal_appended_total``, ``zjournal_acked_total``, ``zjournal_dead_total``,
  ``zjournal_redelivered_total`` ``{name, direction}``: counters (their ``rate()``
  is the append and ack rate).

The exporter is off until switched on, so journals pay nothing for it: set
``ZJOURNAL_PROMETHEUS_PORT`` before journals open (they are watched and
``/metrics`` is served on that port of 127.0.0.1), or call
``zjournal_prometheus.serve(port)`` (journals opened afterwards are watched) or
``zjournal_prometheus.watch(journal)``. Then ``curl http://127.0.0.1:PORT/metrics``.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from zjournal import Plugin

_lock = threading.Lock()
_server_started = False
_enabled = False


class JournalMetrics:
    """Observer and collector: counts events, reads gauges from the journals at scrape time."""

    def __init__(self) -> None:
        self._journals: weakref.WeakSet[Any] = weakref.WeakSet()
        self._counters: dict[str, Any] | None = None

    def _ensure_counters(self) -> dict[str, Any]:
        if self._counters is None:
            from prometheus_client import REGISTRY, Counter

            labels = ["name", "direction"]
            self._counters = {
                "append": Counter("zjournal_appended", "Entries journaled", labels),
                "ack": Counter("zjournal_acked", "Entries acknowledged", labels),
                "dead": Counter("zjournal_dead", "Entries given up (dead letters)", labels),
                "redelivery": Counter("zjournal_redelivered", "Deliveries after the first", labels),
            }
            REGISTRY.register(self)
        return self._counters

    def attach(self, journal: Any) -> bool:
        port = os.environ.get("ZJOURNAL_PROMETHEUS_PORT")
        if port:
            serve(int(port))
        if not _enabled:
            return False  # switched off: the journal does not call this observer at all
        with _lock:
            self._ensure_counters()
            self._journals.add(journal)
        return True

    def on_append(self, name: str, direction: str, count: int) -> None:
        if self._counters is not None:
            self._counters["append"].labels(name, direction).inc(count)

    def on_ack(self, name: str, direction: str, count: int) -> None:
        if self._counters is not None:
            self._counters["ack"].labels(name, direction).inc(count)

    def on_dead(self, name: str, direction: str, entry_id: int, reason: str) -> None:
        if self._counters is not None:
            self._counters["dead"].labels(name, direction).inc()

    def on_redelivery(self, name: str, direction: str, entry_id: int, attempts: int) -> None:
        if self._counters is not None:
            self._counters["redelivery"].labels(name, direction).inc()

    def collect(self) -> Any:
        """Gauges read from each open journal when Prometheus scrapes."""
        from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

        entries = GaugeMetricFamily("zjournal_entries", "Entries by state", labels=["journal", "name", "state"])
        oldest = GaugeMetricFamily(
            "zjournal_oldest_pending_age_seconds", "Age of the oldest pending entry", labels=["journal"]
        )
        outbound = GaugeMetricFamily(
            "zjournal_outbound_pending",
            "Outbound entries pending (confirm=True senders: not confirmed yet)",
            labels=["journal", "name"],
        )
        dropped = GaugeMetricFamily(
            "zjournal_duplicates_dropped", "Resends of confirm=True senders dropped as duplicates", labels=["journal"]
        )
        latency = SummaryMetricFamily(
            "zjournal_confirm_latency_seconds",
            "From a confirm=True send to its confirmation by the receiving journal (this process's senders)",
            labels=["journal"],
        )
        lag = GaugeMetricFamily(
            "zjournal_replication_lag_seconds", "Age of the oldest change not shipped to the engine", labels=["journal"]
        )
        lag_entries = GaugeMetricFamily(
            "zjournal_replication_lag_entries", "Changes not shipped to the engine yet", labels=["journal"]
        )
        fenced = GaugeMetricFamily(
            "zjournal_replication_fenced", "1: another process took this journal over", labels=["journal"]
        )
        now = time.time()
        for journal in list(self._journals):
            if journal.closed:
                continue
            where = journal.path or "memory"
            for name in journal.names():
                for state in ("pending", "acked", "dead"):
                    entries.add_metric([where, name, state], journal.count(name=name, state=state))
                waiting = journal.count(name=name, state="pending", direction="out")
                if waiting:
                    outbound.add_metric([where, name], waiting)
            first = journal.oldest_pending()  # not a scan past dead letters and retained entries
            oldest.add_metric([where], 0.0 if first is None else now - first.created)
            confirm = journal.info()["confirm"]
            dropped.add_metric([where], confirm["duplicates_dropped"])
            if confirm["confirmed"]:
                latency.add_metric([where], count_value=confirm["confirmed"], sum_value=confirm["latency_seconds_sum"])
            shipping = journal.replication
            if shipping is not None:
                lag.add_metric([where], shipping.lag_seconds)
                lag_entries.add_metric([where], shipping.lag_entries)
                fenced.add_metric([where], 1.0 if shipping.state == "fenced" else 0.0)
        yield entries
        yield oldest
        yield outbound
        yield dropped
        yield latency
        yield lag
        yield lag_entries
        yield fenced


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Serve /metrics over HTTP (once per process) and watch the journals opened from now on."""
    global _server_started, _enabled
    with _lock:
        _enabled = True
        if _server_started:
            return
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr)
        _server_started = True


def watch(journal: Any) -> None:
    """Watch an already open journal (it gets this module's observer)."""
    global _enabled
    _enabled = True
    journal.add_observer(metrics)


metrics = JournalMetrics()
plugin = Plugin(
    name="prometheus",
    description="Prometheus metrics: entries by state, oldest pending age, append/ack/dead/redelivery counters",
    observers=[metrics],
)

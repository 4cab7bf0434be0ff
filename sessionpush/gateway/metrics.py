"""``GET /metrics``: the gateway's numbers in the Prometheus text format.

Each gateway app has its own registry (never prometheus-client's global
one), so that two apps in one process (tests, an embedding) keep separate
counts. Counters that the engine already keeps (events in, live sessions,
deadlines) are read when scraped; decisions and delivery outcomes are
counted as they happen, through the engine's and the queue's listeners.

Series (names as exported):

- ``sessionpush_connections``: open websockets.
- ``sessionpush_sessions``: live sessions.
- ``sessionpush_events_total``: events received.
- ``sessionpush_rule_fires_total{rule}``: triggers that reached a decision.
- ``sessionpush_decisions_total{rule,decision}``: decisions by kind.
- ``sessionpush_sends_total{channel}`` and
  ``sessionpush_send_failures_total{channel}``: decided sends and failures.
- ``sessionpush_deliveries_total{channel,outcome}``: provider outcomes.
- ``sessionpush_timers_pending``, ``sessionpush_timers_overdue``: durable
  timers waiting in the store, and those already due (the backlog).
- ``sessionpush_deadlines``: in-memory deadlines (grace, idle, absence).
- ``sessionpush_send_delay_seconds{channel}``: trigger to send, waits
  included.
- ``sessionpush_delivery_latency_seconds{channel,outcome}``: message
  creation to the provider's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sessionpush.engine.core import Engine
from sessionpush.store.base import Decision, DeliveryOutcome

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A send waits from nothing (in-session) to a day (``wait 24h``).
_DELAY_BUCKETS = (0.01, 0.1, 1, 10, 60, 300, 600, 1800, 3600, 21600, 86400)
# Providers answer in milliseconds to seconds; retries take minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)


class _EngineCollector(Collector):
    """What the engine counts itself, read at scrape time."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine()
        if engine is None:
            return
        events = CounterMetricFamily("sessionpush_events", "Events received.")
        events.add_metric([], engine.events_in)
        yield events
        yield GaugeMetricFamily(
            "sessionpush_sessions", "Live sessions.", value=engine.sessions
        )
        yield GaugeMetricFamily(
            "sessionpush_deadlines",
            "In-memory deadlines: grace periods, idle timeouts, absence windows.",
            value=engine.pending(),
        )


class GatewayMetrics:
    """The gateway's instruments, in a registry of their own."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        self.registry = CollectorRegistry()
        self._engine = engine
        self._open = 0
        r = self.registry
        self.connections = Gauge(
            "sessionpush_connections", "Open websocket connections.", registry=r
        )
        self.fires = Counter(
            "sessionpush_rule_fires",
            "Triggers that reached a decision.",
            ["rule"],
            registry=r,
        )
        self.decisions = Counter(
            "sessionpush_decisions",
            "Decisions by rule and kind.",
            ["rule", "decision"],
            registry=r,
        )
        self.sends = Counter(
            "sessionpush_sends",
            "Messages handed to a channel.",
            ["channel"],
            registry=r,
        )
        self.failures = Counter(
            "sessionpush_send_failures",
            "Sends that every target refused.",
            ["channel"],
            registry=r,
        )
        self.deliveries = Counter(
            "sessionpush_deliveries",
            "Provider outcomes of queued messages.",
            ["channel", "outcome"],
            registry=r,
        )
        self.timers_pending = Gauge(
            "sessionpush_timers_pending", "Durable timers in the store.", registry=r
        )
        self.timers_overdue = Gauge(
            "sessionpush_timers_overdue",
            "Durable timers already due: the backlog.",
            registry=r,
        )
        self.send_delay = Histogram(
            "sessionpush_send_delay_seconds",
            "Seconds from trigger to send, waits included.",
            ["channel"],
            buckets=_DELAY_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "sessionpush_delivery_latency_seconds",
            "Seconds from a message's creation to a provider's answer.",
            ["channel", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_EngineCollector(engine))

    @property
    def open_connections(self) -> int:
        return self._open

    def connected(self) -> None:
        self._open += 1
        self.connections.set(self._open)

    def disconnected(self) -> None:
        self._open -= 1
        self.connections.set(self._open)

    def on_decision(self, decision: Decision) -> None:
        """An engine listener: count one decision."""
        self.decisions.labels(decision.rule, decision.decision).inc()
        if decision.decision == "deferred":
            return  # a step before the decision, which is counted then
        self.fires.labels(decision.rule).inc()
        if decision.decision == "sent":
            self.sends.labels(decision.channel).inc()
            self.send_delay.labels(decision.channel).observe(
                max(0.0, decision.at - decision.triggered_at)
            )
        elif decision.decision == "failed":
            self.failures.labels(decision.channel).inc()

    def on_outcome(self, outcome: DeliveryOutcome, age: float) -> None:
        """A delivery queue listener: count one provider outcome."""
        self.deliveries.labels(outcome.channel, outcome.outcome).inc()
        if outcome.outcome in ("delivered", "failed", "unsubscribed"):
            self.delivery_latency.labels(outcome.channel, outcome.outcome).observe(
                max(0.0, age)
            )

    async def render(self) -> bytes:
        """The text exposition, with the timer backlog read from the store."""
        engine = self._engine()
        if engine is not None:
            timers = await engine.store.pending_timers()
            now = engine.clock.now()
            self.timers_pending.set(len(timers))
            self.timers_overdue.set(sum(1 for t in timers if t.due <= now))
        return generate_latest(self.registry)

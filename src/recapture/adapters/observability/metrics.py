"""Prometheus metrics, on a registry of the application's own (several apps can live in one test process)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from recapture.application.processing import ProcessingResult


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Counter] = {}
        self.received = Counter(
            "recapture_events_received", "Events received, before validation", ["source"], registry=self.registry
        )
        self.rejected = Counter(
            "recapture_events_rejected", "Events or requests rejected, by reason", ["source", "reason"],
            registry=self.registry,
        )
        self.stored = Counter(
            "recapture_events_stored", "Events committed to storage", ["source"], registry=self.registry
        )
        self.duplicates = Counter(
            "recapture_events_duplicate", "Events already stored (retries, webhook redeliveries)", ["source"],
            registry=self.registry,
        )
        self.processed = Counter("recapture_events_processed", "Events worked off the processing queue",
                                 registry=self.registry)
        self.set_aside = Counter(
            "recapture_events_set_aside", "Events that failed processing on their own and were taken out of the queue",
            registry=self.registry,
        )
        self.identified = Counter(
            "recapture_events_identified", "Processed events that named their person (email, phone, customer id)",
            registry=self.registry,
        )
        self.probabilistic = Counter(
            "recapture_probabilistic_links", "Anonymous devices linked to a person by a scored guess",
            registry=self.registry,
        )
        self.conflicts = Counter(
            "recapture_identity_conflicts", "Links refused by the identity guards, by kind", ["kind"],
            registry=self.registry,
        )
        self.abandonments = Counter(
            "recapture_abandonments", "Abandonment decisions, by outcome (sent or the reason not to)", ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "recapture_deliveries", "Delivery attempts, by result (delivered, retry, dead)", ["result"],
            registry=self.registry,
        )
        # How well group commit shares the fsync: events per durable commit, and how long each commit took.
        self.commit_events = Histogram(
            "recapture_ingest_commit_events", "Events made durable by one ingest commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048), registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "recapture_ingest_commit_seconds", "Wall time of one ingest commit (statements and fsync)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0), registry=self.registry,
        )
        self.queue_depth = Gauge(
            "recapture_queue_depth", "Work that is due now, per queue", ["queue"], registry=self.registry
        )

    def child(self, family: Counter, *labels: str) -> Counter:
        """`family.labels(*labels)`, remembered: prometheus_client takes a lock and builds a key on every call."""
        key = (id(family), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = family.labels(*labels)
        return found

    def record_commit(self, events: int, seconds: float) -> None:
        self.commit_events.observe(events)
        self.commit_seconds.observe(seconds)

    def record_processing(self, result: ProcessingResult) -> None:
        self.processed.inc(result.processed)
        self.identified.inc(result.identified)
        self.probabilistic.inc(result.probabilistic_links)
        self.set_aside.inc(len(result.failures))
        for kind, count in result.conflicts.items():
            self.conflicts.labels(kind=kind).inc(count)

    def record_abandonments(self, outcomes: Tally[str]) -> None:
        for outcome, count in outcomes.items():
            self.abandonments.labels(outcome=outcome).inc(count)

    def record_deliveries(self, results: Tally[str]) -> None:
        for result, count in results.items():
            self.deliveries.labels(result=result).inc(count)

    def watch_queue(self, queue: str, depth: Callable[[], float]) -> None:
        self.queue_depth.labels(queue=queue).set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def total(self, counter: Counter) -> int:
        return int(sum(sample.value for metric in counter.collect() for sample in metric.samples
                       if sample.name.endswith("_total")))

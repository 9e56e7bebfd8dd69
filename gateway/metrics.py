"""Prometheus metrics, Lambda's metric set named the Prometheus way.

A registry per gateway (never the global one), so tests and several gateways in one process
do not share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 21600)
LABELS = ("namespace", "function", "version")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.invocations = Counter(
            "klambda_invocations", "Invocations run (Lambda: Invocations).", LABELS, registry=r
        )
        self.errors = Counter(
            "klambda_errors", "Invocations that ended in a function error.", LABELS, registry=r
        )
        self.throttles = Counter(
            "klambda_throttles",
            "Invocations refused for lack of concurrency (Lambda: Throttles).",
            ("namespace", "function"),
            registry=r,
        )
        self.duration = Histogram(
            "klambda_duration_seconds",
            "Time the function ran (Lambda: Duration).",
            LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.cold_starts = Counter(
            "klambda_cold_starts", "Invocations that started a new environment.", LABELS, registry=r
        )
        self.init_duration = Histogram(
            "klambda_init_duration_seconds",
            "Init phase of new environments (Lambda: Init Duration).",
            LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )

        fn = ("namespace", "function")
        self.async_received = Counter(
            "klambda_async_events_received",
            "Asynchronous events accepted (Lambda: AsyncEventsReceived).",
            fn,
            registry=r,
        )
        self.async_event_age = Histogram(
            "klambda_async_event_age_seconds",
            "Time from intake to dispatch, retries included (Lambda: AsyncEventAge).",
            fn,
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.async_dropped = Counter(
            "klambda_async_events_dropped",
            "Asynchronous events given up on with nowhere to go (Lambda: AsyncEventsDropped).",
            (*fn, "reason"),
            registry=r,
        )
        self.dead_letter_errors = Counter(
            "klambda_dead_letter_errors",
            "Events that could not be sent to the dead-letter queue (Lambda: DeadLetterErrors).",
            fn,
            registry=r,
        )
        self.destination_failures = Counter(
            "klambda_destination_delivery_failures",
            "Records that could not be delivered to a destination "
            "(Lambda: DestinationDeliveryFailures).",
            fn,
            registry=r,
        )
        self.recursive_dropped = Counter(
            "klambda_recursive_invocations_dropped",
            "Events stopped as a recursive loop (Lambda: RecursiveInvocationsDropped).",
            fn,
            registry=r,
        )

        self._event_source_metrics(r)

    def _event_source_metrics(self, r: CollectorRegistry) -> None:
        esm = ("namespace", "mapping")
        self.iterator_age = Gauge(
            "klambda_iterator_age_seconds",
            "Age of the last record of the newest batch of a shard (Lambda: IteratorAge).",
            (*esm, "shard"),
            registry=r,
        )
        self.esm_batches = Counter(
            "klambda_event_source_batches",
            "Batches an event source mapping invoked its function with, by outcome.",
            (*esm, "outcome"),
            registry=r,
        )
        self.esm_records = Counter(
            "klambda_event_source_records",
            "Records read by an event source mapping, by what became of them (delivered, "
            "filtered, dead-lettered: a queue's message to its dead-letter queue, failed: a "
            "stream's batch to the on-failure destination or skipped).",
            (*esm, "fate"),
            registry=r,
        )
        self.schedule_firings = Counter(
            "klambda_schedule_firings",
            "Firings of Schedules, by outcome: sent (an async invocation), skipped (missed "
            "while klambda was down, past the maximum event age), dead-lettered, dropped.",
            ("namespace", "schedule", "outcome"),
            registry=r,
        )
        self.esm_pollers = Gauge(
            "klambda_event_source_pollers",
            "Batches a mapping may have in flight now (queue pollers; stream shards owned).",
            esm,
            registry=r,
        )
        self.queue_backlog = Gauge(
            "klambda_queue_messages_visible",
            "Messages waiting in a queue read by a mapping (SQS: "
            "ApproximateNumberOfMessagesVisible), as its scaler last saw them.",
            ("namespace", "queue"),
            registry=r,
        )
        self.queue_oldest_age = Gauge(
            "klambda_queue_oldest_message_age_seconds",
            "Age of the oldest message in a queue read by a mapping (SQS: "
            "ApproximateAgeOfOldestMessage).",
            ("namespace", "queue"),
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""What `GET /metrics` shows, in Prometheus' text format: requests and errors by kind, how many requests and
question-passage pairs each batch held, how long requests waited for the worker and how long they took."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The server's metrics, in a registry of its own (no process-wide state: tests can build several)."""

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("jaxqa_serve_requests", "POST /v1/answer requests answered (200)", registry=r)
        self.errors = Counter("jaxqa_serve_errors", "requests refused or failed, by kind (bad_json, invalid, "
                              "too_large, not_ready, internal)", ["kind"], registry=r)
        self.in_progress = Gauge("jaxqa_serve_requests_in_progress", "answer requests received and not yet answered",
                                 registry=r)
        self.queue_depth = Gauge("jaxqa_serve_queue_depth", "requests waiting for the worker", registry=r)
        self.batch_requests = Histogram("jaxqa_serve_batch_requests", "requests per batch the worker ran",
                                        buckets=SIZES, registry=r)
        self.batch_pairs = Histogram("jaxqa_serve_batch_pairs", "question-passage pairs per batch",
                                     buckets=SIZES, registry=r)
        self.queue_wait = Histogram("jaxqa_serve_queue_wait_seconds", "time from a request's arrival in the queue "
                                    "to the start of its batch", buckets=SECONDS, registry=r)
        self.latency = Histogram("jaxqa_serve_request_latency_seconds", "time from a request's body read to its "
                                 "answer", buckets=SECONDS, registry=r)

    def text(self) -> bytes:
        return generate_latest(self.registry)

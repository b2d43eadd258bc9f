"""The one worker that owns the device. Requests wait in a queue; the worker takes the first, then whatever
else arrives within --max_wait_ms (up to --max_batch_size question-passage pairs), and answers them together
(it waits only while a request is arriving: received, its body not yet queued; a lone client's request runs
at once, without the wait):
those with the same settings are tokenised together and run through one `QuestionAnswerer.prepare` (the
rows of a batch share its compiled (rows, length) programs). One batch at a time on the device, so it never
runs two; the host overlaps it: while batch N runs, the worker tokenises batch N+1 and, once N+1 is on the device,
decodes N (`Batcher._work`). The HTTP side meanwhile keeps reading and queueing requests. Before taking any,
the worker compiles the program of every length bucket (`QuestionAnswerer.compile_programs`): no request waits
on a compile.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import queue
import threading
import time

from jaxqa.errors import JaxqaError
from jaxqa.scoring.answer import SAVED, PendingAnswers, QuestionAnswerer
from jaxqa.serving.metrics import Metrics
from jaxqa.serving.schema import Item, Query, RequestError

log = logging.getLogger("jaxqa")
_STOP = object()


class NotReady(Exception):
    """The programs are still compiling: nothing is answered yet."""


class InternalError(Exception):
    """A batch failed for a reason that is not the request's (logged with its traceback); the worker goes on."""


@dataclasses.dataclass
class Job:
    query: Query
    future: concurrent.futures.Future
    arrived: float = dataclasses.field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, qa: QuestionAnswerer, metrics: Metrics, *, max_batch_size: int, max_wait_ms: float):
        self.qa, self.metrics = qa, metrics
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000
        self.jobs: queue.Queue = queue.Queue()
        self.held: Job | None = None  # taken from the queue but too big for the batch it came to: the next one's
        self.stopping = False  # the stop is taken from the queue: nothing more comes
        self.ready = threading.Event()
        self.programs = 0
        # Requests received but not yet queued (counted by the event loop's thread; read by the worker's).
        self.arriving = 0
        self.thread = threading.Thread(target=self._work, name="jaxqa-serve", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, query: Query) -> concurrent.futures.Future:
        """Queue `query`; its future gets the response body (or the request's error)."""
        if not self.ready.is_set():
            raise NotReady("the model's programs are still compiling; retry when GET /health says ready")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.metrics.queue_depth.inc()
        self.jobs.put(Job(query, future))
        self.arriving -= 1  # after the put: the worker never sees neither
        return future

    def close(self) -> None:
        """Answer every queued request, then stop the worker."""
        self.jobs.put(_STOP)
        self.thread.join()

    def _work(self) -> None:
        started = time.perf_counter()
        self.programs = self.qa.compile_programs()
        log.info("%d programs compiled in %.1f s (every (rows, length) bucket up to %d rows of %d tokens); ready",
                 self.programs, time.perf_counter() - started, self.qa.predictor.batch_size,
                 self.qa.predictor.max_seq_length)
        self.ready.set()
        running: Batch | None = None  # on the device, not yet decoded
        while True:
            jobs = self._next_batch(wait=running is None)
            if jobs is None and running is None:
                return
            upcoming = self._prepare(jobs) if jobs else None  # the host tokenises while the device runs `running`
            if running is not None:
                running.each("wait")
            if upcoming is not None:
                upcoming.each("launch")
            if running is not None:  # the host decodes while the device runs `upcoming`
                running.finish()
            running = upcoming

    def _next_batch(self, *, wait: bool) -> list[Job] | None:
        """The jobs of the next batch: the first waiting (blocking for it if `wait`), then those queued or
        arriving within max_wait of it while the batch has room; None when none is waiting (`wait` False) or
        once stopped with nothing left."""
        if self.held is not None:
            first, self.held = self.held, None
        elif self.stopping:
            return None
        else:
            try:
                first = self.jobs.get(block=wait)
            except queue.Empty:
                return None
            if first is _STOP:
                self.stopping = True
                return None
        batch, size, deadline = [first], first.query.pairs, time.perf_counter() + self.max_wait
        while not self.stopping and size < self.max_batch_size and (self.arriving > 0 or not self.jobs.empty()):
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is _STOP:
                self.stopping = True
                break
            if size + job.query.pairs > self.max_batch_size:
                self.held = job
                break
            batch.append(job)
            size += job.query.pairs
        return batch

    def _prepare(self, jobs: list[Job]) -> Batch:
        """`jobs` tokenised and planned on the host, a `PendingAnswers` per group of items with the same settings."""
        taken = time.perf_counter()
        self.metrics.queue_depth.dec(len(jobs))
        for job in jobs:
            self.metrics.queue_wait.observe(taken - job.arrived)
        self.metrics.batch_requests.observe(len(jobs))
        self.metrics.batch_pairs.observe(sum(job.query.pairs for job in jobs))
        groups: dict[tuple, list[Item]] = {}
        for job in jobs:
            for item in job.query.items:
                groups.setdefault(item.key, []).append(item)
        batch = Batch(jobs)
        for key, items in groups.items():
            self._prepare_isolated(batch, items, key)
        return batch

    def _prepare_isolated(self, batch: Batch, items: list[Item], key: tuple) -> None:
        """`items` prepared together; where that fails for a reason of the requests (a question too long for the
        window, say), each alone, so that one bad request fails only itself."""
        try:
            batch.pending.append((items, self._prepare_items(items, key)))
        except (JaxqaError, ValueError) as err:
            if len(items) > 1:
                for item in items:
                    self._prepare_isolated(batch, [item], key)
            else:
                batch.answered[id(items[0])] = RequestError(422, "question",
                                                            f"cannot be answered with these settings: {err}")
        except Exception as err:
            batch.failed(items, err)

    def _prepare_items(self, items: list[Item], key: tuple) -> PendingAnswers:
        max_seq_length, doc_stride, max_query_length, max_answer_length, impossible = key
        questions = [item.question for item in items for _ in item.contexts]
        contexts = [context for item in items for context in item.contexts]
        return self.qa.prepare(questions, contexts, top_k=max(item.top_k for item in items),
                               max_seq_length=max_seq_length, doc_stride=doc_stride, max_query_length=max_query_length,
                               max_answer_length=max_answer_length, null_score_diff_threshold=self._threshold(impossible))

    def _threshold(self, impossible: bool | None):
        """handle_impossible_answer: not given, the model's saved threshold (if any); true, that threshold or 0
        (abstain when the null score beats the best span, as Hugging Face's pipeline does); false, never."""
        if impossible is None:
            return SAVED
        saved = self.qa.null_score_diff_threshold
        return (0.0 if saved is None else saved) if impossible else None


@dataclasses.dataclass
class Batch:
    """The jobs the worker answers together, on their way: prepared (`pending`, a `PendingAnswers` per group of
    items with the same settings), launched, waited for, then finished (each job's future answered)."""

    jobs: list[Job]
    pending: list[tuple[list[Item], PendingAnswers]] = dataclasses.field(default_factory=list)
    answered: dict[int, object] = dataclasses.field(default_factory=dict)  # id(item) -> its error, when it has one

    def failed(self, items: list[Item], err: Exception) -> None:
        """`items` failed for a reason that is not theirs: logged with its traceback, each answered with a 500."""
        log.error("a batch of %d failed", len(items), exc_info=err)
        for item in items:
            self.answered[id(item)] = InternalError(f"{type(err).__name__}: {err}")

    def each(self, step: str) -> None:
        """`PendingAnswers.launch` or `.wait` of every group not failed yet."""
        for items, pending in self.pending:
            if id(items[0]) not in self.answered:
                try:
                    getattr(pending, step)()
                except Exception as err:
                    self.failed(items, err)

    def finish(self) -> None:
        """Decode every group and answer each job's future with its response (or its first item's error)."""
        for items, pending in self.pending:
            if id(items[0]) in self.answered:
                continue
            try:
                ranked, first = pending.result(), 0
                for item in items:
                    self.answered[id(item)] = response(item, ranked[first:first + len(item.contexts)])
                    first += len(item.contexts)
            except Exception as err:
                self.failed(items, err)
        for job in self.jobs:
            answers = [self.answered[id(item)] for item in job.query.items]
            error = next((a for a in answers if isinstance(a, Exception)), None)
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(answers if job.query.listed else answers[0])


def response(item: Item, ranked: list[list[dict]]):
    """The answer (top_k 1) or best-first list of answers of `item` from its passages' ranked answers; over several
    passages, the best spans across them by score, each naming its passage ("" only where every passage
    abstains)."""
    if not item.several:
        answers = ranked[0][:item.top_k]
    else:
        tagged = [{**answer, "passage": p} for p, answers in enumerate(ranked) for answer in answers]
        found = [answer for answer in tagged if answer["answer"] and math.isfinite(answer["score"])]
        answers = sorted(found, key=lambda a: -a["score"]) if found else \
            sorted(tagged, key=lambda a: -a["probability"])
        answers = answers[:item.top_k]
    # A passage with no span inside its windows (all of it cut away, or no token in it) scores -inf: null in JSON.
    answers = [{**a, "score": a["score"] if math.isfinite(a["score"]) else None} for a in answers]
    return answers[0] if item.top_k == 1 else answers

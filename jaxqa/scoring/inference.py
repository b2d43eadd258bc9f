"""How a batch reaches the device, and how logits come back as answers.

Used by the training loop (train batches, evaluation) and by `QuestionAnswerer` alike: features are
planned into length-bucketed batches (`batching`; for a few questions, rows bucketed too), each
process gathers the rows its devices hold and puts them on the mesh in a producer thread a few
batches ahead (`device_batches`), and a jitted forward's logits are scattered back in window order
(`scatter_logits`) and decoded (`Predictor`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading

import jax
import numpy as np

from jaxqa import sharding
from jaxqa.data import batching
from jaxqa.data.features import Features
from jaxqa.scoring import decode


class GivenUp(Exception):
    """A prediction given up part-way at its caller's request (a run stopping in the middle of an evaluation)."""


def prefetch(items, size: int = 2):
    """Run the producer `items` (host gathering + device_put) in a thread, `size` batches ahead. When the
    consumer stops early (an error, a KeyboardInterrupt), the producer is stopped and joined: a thread
    left inside a device transfer while the interpreter exits can abort the process."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    done, stop = object(), threading.Event()

    def produce():
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
        except BaseException as err:  # re-raised in the consumer
            buffer.put(err)
        buffer.put(done)

    producer = threading.Thread(target=produce, daemon=True, name="jaxqa-prefetch")
    producer.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # a producer blocked on the full buffer gets room, then sees `stop`
            with contextlib.suppress(queue.Empty):
                buffer.get(timeout=0.05)
        producer.join()


def device_batches(arrays: dict[str, np.ndarray], plan: list[batching.Batch], mesh):
    """Global device batches of `plan`, prefetched (a lone batch is put in this thread: a producer thread
    would only add its start-up to the latency); each process gathers only the rows its devices hold."""
    def put(b: batching.Batch):
        mine = dataclasses.replace(b, rows=b.rows[sharding.local_rows(mesh, len(b.rows))])
        # the one intended transfer, allowed also in a train loop that disallows implicit ones
        with jax.transfer_guard_host_to_device("allow"):
            return sharding.put_batch(batching.gather(arrays, mine), mesh, len(b.rows))

    if len(plan) <= 1:
        return (put(b) for b in plan)
    return prefetch(put(b) for b in plan)


def scatter_logits(features: Features, plan: list[batching.Batch], outputs, max_seq_length: int):
    """Per-batch model outputs back in window order: (start, end) logits [windows, max_seq_length], -inf
    past each batch's length, and an answerability head's no-answer logits [windows] third where the model
    has one; filler rows are dropped."""
    columns = None
    for batch_plan, out in zip(plan, outputs):
        out = [np.asarray(x) for x in out]
        if columns is None:
            columns = [np.full((len(features), max_seq_length)[:x.ndim], -np.inf, np.float32) for x in out]
        real = batch_plan.rows >= 0
        for column, x in zip(columns, out):
            column[(batch_plan.rows[real], slice(0, batch_plan.seq_len))[:x.ndim]] = x[real]
    if columns is None:  # no windows
        columns = [np.full((len(features), max_seq_length), -np.inf, np.float32) for _ in range(2)]
    return tuple(columns)


# The most tokens (rows x length) of one answering program on CPU. Measured (benchmarks/README.md, "Answer
# latency"): the bf16 forward of MiniLM cost 26.9 ms per row at 4 x 256 tokens against 38.4 at 32 x 256
# (2-core AMD EPYC): a small batch's activations stay in cache. And up to ~3,000 tokens every row's logits
# were bitwise those it gets alone (from ~4,000, XLA:CPU splits the dots otherwise and a row rounds
# differently in bf16), so an answer does not depend on the questions it was batched with.
CPU_PROGRAM_TOKENS = 1024


def program_rows(batch_size: int, max_seq_length: int, platform: str, min_rows: int = 1) -> int:
    """Rows of the largest program of an answerer or a run's evaluation: `batch_size`, but on CPU at most
    the power of two of rows of `max_seq_length` tokens that fits CPU_PROGRAM_TOKENS (never fewer than
    `min_rows`, the devices a batch is split over). GPUs and TPUs keep the whole batch: they need the rows to fill the device."""
    if platform != "cpu":
        return batch_size
    rows = max(1, CPU_PROGRAM_TOKENS // max_seq_length)
    return max(min_rows, min(batch_size, 1 << (rows.bit_length() - 1)))


BATCH_OVERHEAD_TOKENS = 64  # what one more batch costs (its dispatch, smaller matmuls), in tokens computed


def least_padding(lengths: np.ndarray, batch_size: int, *, max_seq_length: int, bucket_width: int | None,
                  min_rows: int) -> list[batching.Batch]:
    """Batches on the same (rows, length) programs as `batching.plan_batches(min_rows=...)`, chosen to compute the
    fewest tokens: the windows, shortest first, cut into runs, each run one batch of the smallest row bucket that
    holds it at the length bucket of its longest window. A run may take shorter windows up into a longer bucket
    to fill rows that would be filler: 5 windows of 128 tokens and 11 of 192 as one 16 x 192 batch, not 8 x 128
    + 16 x 192. The cuts by dynamic programming (batch_size candidates per window); on SQuAD dev paragraphs
    with windows of 256, batches of 32 random requests compute 1.18x their tokens (filler included), not 1.71x."""
    order = np.argsort(lengths, kind="stable")
    padded = batching.bucket_lengths(np.asarray(lengths)[order], max_seq_length, bucket_width).tolist()
    n = len(order)
    cost, cut = [0.0] + [np.inf] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - batch_size), end):
            c = cost[start] + batching.batch_rows(end - start, batch_size, min_rows) * padded[end - 1] + \
                BATCH_OVERHEAD_TOKENS
            if c < cost[end]:
                cost[end], cut[end] = c, start
    batches, end = [], n
    while end:
        rows = order[cut[end]:end]
        size = batching.batch_rows(len(rows), batch_size, min_rows)
        batches.append(batching.Batch(np.concatenate([rows, np.full(size - len(rows), -1, rows.dtype)]),
                                      padded[end - 1]))
        end = cut[end]
    return batches[::-1]


@dataclasses.dataclass(frozen=True)
class Predictor:
    """Answers of a model on features. `forward(weights, batch)` is a jitted function returning (start,
    end) logits whole on every process; `weights` is whatever it takes (a TrainState, parameters)."""

    forward: object
    mesh: object
    batch_size: int  # global
    max_seq_length: int
    bucket_width: int | None = 64
    max_answer_length: int = 30
    # None: every batch has batch_size rows (a run's evaluation: one program per length). An int: a short
    # batch has the fewest rows of min_rows * 2**k that hold it (`batching.batch_rows`; answering a few
    # questions), at most batch_size; on a mesh, a multiple of the devices a batch is split over.
    min_rows: int | None = None
    # With min_rows: the batches of those programs that compute the fewest tokens (`least_padding`), rather
    # than one per length bucket (`jaxqa serve`, whose batches mix requests of every length).
    least_padding: bool = False

    def plan(self, features: Features) -> list[batching.Batch]:
        """The batches the device runs for `features`: their rows and length."""
        if self.least_padding and self.min_rows:
            return least_padding(features.lengths, self.batch_size, max_seq_length=self.max_seq_length,
                                 bucket_width=self.bucket_width, min_rows=self.min_rows)
        return batching.plan_batches(features.lengths, self.batch_size, max_seq_length=self.max_seq_length,
                                     bucket_width=self.bucket_width, min_rows=self.min_rows)

    def launch(self, weights, features: Features, plan: list[batching.Batch] | None = None, *,
               give_up=None) -> tuple[list[batching.Batch], list]:
        """The forward of every batch of `plan` (by default `self.plan(features)`) dispatched to the device: returns
        the plan and its outputs, still being computed, so that the host can do other work meanwhile (`jaxqa
        serve` tokenises the next requests and decodes the last ones). `give_up`: as in `logits`."""
        plan = self.plan(features) if plan is None else plan
        outputs = []
        for batch in device_batches(features.model_inputs(), plan, self.mesh):
            if give_up is not None:
                if len(outputs) >= 2:
                    jax.block_until_ready(outputs[-2])
                if give_up():
                    raise GivenUp
            outputs.append(self.forward(weights, batch))
        return plan, outputs

    def logits(self, weights, features: Features, *, give_up=None) -> tuple[np.ndarray, ...]:
        """Start/end logits of every window, [windows, max_seq_length], -inf past each batch's length (and an
        answerability head's no-answer logits [windows], `scatter_logits`).
        `give_up`: asked before each batch, True raises `GivenUp`; dispatch then runs at most two batches
        ahead of the device, so giving up does not wait for the whole evaluation queued behind it."""
        plan, outputs = self.launch(weights, features, give_up=give_up)
        return scatter_logits(features, plan, outputs, self.max_seq_length)

    def answers(self, weights, contexts: list[str], features: Features, *, null_score_diff_threshold=None,
                n_best_size: int = 0, give_up=None) -> decode.Answers:
        """Answers for every example, decoded from all its windows; with a threshold, SQuAD v2.0 style
        (abstain when the null score wins by more), with `n_best_size` > 0 the n-best lists too. `give_up`:
        as in `logits`, asked again before decoding."""
        logits = self.logits(weights, features, give_up=give_up)
        if give_up is not None and give_up():
            raise GivenUp
        return self.decoded(contexts, features, logits, null_score_diff_threshold=null_score_diff_threshold,
                            n_best_size=n_best_size)

    def decoded(self, contexts: list[str], features: Features, logits: tuple[np.ndarray, ...], *,
                null_score_diff_threshold=None, n_best_size: int = 0) -> decode.Answers:
        """`answers` from logits already gathered (`logits`, or `scatter_logits` of `launch`'s outputs)."""
        start, end, *no_answer = logits
        return decode.decode(contexts, start, end, features.offsets, features.example_index,
                             max_answer_length=self.max_answer_length, cls_index=features.cls_index,
                             null_score_diff_threshold=null_score_diff_threshold, n_best_size=n_best_size,
                             no_answer_logits=no_answer[0] if no_answer else None)

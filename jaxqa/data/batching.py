"""Feature rows -> batches of static shape, grouped by length so little compute goes to padding.

Each feature falls in the smallest length bucket (a multiple of `bucket_width`) that holds its
tokens; a batch is cut to its bucket's length. The number of distinct shapes, hence of compiled
programs, is at most max_seq_length / bucket_width. Rows of a short last batch are filled with
index -1: they get weight 0 in the loss and dropped from predictions, so every feature
counts exactly once and nothing is silently discarded.

Answering a few questions (`QuestionAnswerer`) buckets the batch's rows the same way: a short batch
is cut to the smallest of min_rows, 2 min_rows, 4 min_rows, ..., batch_size that holds it, so one
question runs a one-row program instead of a full batch of filler (`plan_batches(min_rows=...)`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # int64 [batch]: feature rows, -1 for filler
    seq_len: int


def bucket_lengths(lengths: np.ndarray, max_seq_length: int, bucket_width: int | None) -> np.ndarray:
    """The padded length of each feature: its bucket, or max_seq_length when bucketing is off."""
    if not bucket_width:
        return np.full(len(lengths), max_seq_length, dtype=np.int64)
    return np.minimum(-(-lengths // bucket_width) * bucket_width, max_seq_length).astype(np.int64)


def batch_rows(n: int, batch_size: int, min_rows: int) -> int:
    """Rows of the batch that holds `n` (<= batch_size) features: the smallest min_rows * 2**k (or
    batch_size) that holds them. On a mesh, `min_rows` is the devices a batch is split over, so
    every bucket divides among them."""
    rows = min_rows
    while rows < n:
        rows *= 2
    return min(rows, batch_size)


def plan_batches(lengths: np.ndarray, batch_size: int, *, max_seq_length: int,
                 bucket_width: int | None = 64, rng: np.random.Generator | None = None,
                 min_rows: int | None = None) -> list[Batch]:
    """All batches of one pass. With `rng`, rows are shuffled within buckets and batches across them.
    With `min_rows`, the last batch of each length bucket is cut to `batch_rows` rows instead of
    `batch_size` (a few questions run small programs; each row bucket is one more program to compile).

    The number of batches does not depend on the shuffle, so a learning-rate schedule can be
    computed from it before training.
    """
    padded = bucket_lengths(np.asarray(lengths), max_seq_length, bucket_width)
    batches = []
    for seq_len in np.unique(padded):
        rows = np.flatnonzero(padded == seq_len)
        if rng is not None:
            rows = rng.permutation(rows)
        full, rest = divmod(len(rows), batch_size)
        batches += [Batch(chunk, int(seq_len)) for chunk in rows[: full * batch_size].reshape(-1, batch_size)]
        if rest:
            size = batch_size if min_rows is None else batch_rows(rest, batch_size, min_rows)
            batches.append(Batch(np.concatenate([rows[full * batch_size:], np.full(size - rest, -1, rows.dtype)]),
                                 int(seq_len)))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def gather(arrays: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
    """Rows of `arrays` for one batch, [batch, seq] ones cut to the batch's length.

    Filler rows repeat a real row (so every row has a valid mask) with weight 0; their labels may lie
    past the cut, and the loss selects weight-0 rows out (`steps.summed_loss`)."""
    rows = np.maximum(batch.rows, 0)
    out = {name: array[rows, : batch.seq_len] if array.ndim == 2 else array[rows]
           for name, array in arrays.items()}
    out["weights"] = (batch.rows >= 0).astype(np.float32)
    return out

"""Logits -> answers: the best valid spans per window, merged over an example's windows.

A valid span starts and ends on context tokens, ends at or after its start and is at most
`max_answer_length` tokens long; its score is start_logit + end_logit. All windows are scored at
once with NumPy over a [windows, start, length] band of scores (no Python loop over windows or
span pairs), so the result is exact, not limited to the top-n starts and ends.
For SQuAD v2.0 the null score of an example is the lowest CLS score (start + end) over its
windows; it answers "" when null - best span > `null_score_diff_threshold`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

NO_SPAN = -np.inf


@dataclasses.dataclass
class Spans:
    """The k best spans per window, best first: token positions and scores (-inf: no such span)."""

    start: np.ndarray  # int [windows, k]
    end: np.ndarray  # int [windows, k]
    score: np.ndarray  # float32 [windows, k]


def top_spans(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray, max_answer_length: int,
              k: int = 1, chunk: int = 256) -> Spans:
    """The `k` best valid spans of every window. `offsets` [n, seq, 2] is -1 outside the context."""
    n, seq = start_logits.shape
    width = min(max_answer_length, seq)
    k = min(k, seq * width)
    is_context = offsets[..., 0] >= 0
    out = Spans(np.zeros((n, k), np.int64), np.zeros((n, k), np.int64), np.full((n, k), NO_SPAN, np.float32))
    for lo in range(0, n, chunk):  # bounded memory: chunk x seq x width scores at a time
        hi = min(lo + chunk, n)
        s = np.where(is_context[lo:hi], start_logits[lo:hi], NO_SPAN).astype(np.float32)
        e = np.where(is_context[lo:hi], end_logits[lo:hi], NO_SPAN).astype(np.float32)
        e = np.concatenate([e, np.full((hi - lo, width - 1), NO_SPAN, np.float32)], axis=1)
        band = (s[:, :, None] + sliding_window_view(e, width, axis=1)).reshape(hi - lo, -1)
        if k == 1:
            flat = band.argmax(axis=1)[:, None]
        else:
            flat = np.argpartition(band, -k, axis=1)[:, -k:]
            flat = np.take_along_axis(flat, np.argsort(-np.take_along_axis(band, flat, 1), axis=1, kind="stable"), 1)
        starts, lengths = np.divmod(flat, width)
        out.start[lo:hi], out.end[lo:hi] = starts, starts + lengths
        out.score[lo:hi] = np.take_along_axis(band, flat, axis=1)
    return out


def best_spans(start_logits, end_logits, offsets, max_answer_length: int) -> Spans:
    """The single best valid span per window (k = 1), as flat [windows] arrays."""
    spans = top_spans(start_logits, end_logits, offsets, max_answer_length, k=1)
    return Spans(spans.start[:, 0], spans.end[:, 0], spans.score[:, 0])


def best_per_example(spans: Spans, example_index: np.ndarray, num_examples: int) -> np.ndarray:
    """Row of the highest-scoring window of each example (-1 for an example with no window)."""
    order = np.lexsort((-spans.score, example_index))
    first = np.ones(len(order), dtype=bool)
    first[1:] = example_index[order][1:] != example_index[order][:-1]
    best = np.full(num_examples, -1, dtype=np.int64)
    best[example_index[order][first]] = order[first]
    return best


def null_scores(start_logits, end_logits, cls_index, example_index, num_examples: int) -> np.ndarray:
    """Per example, the lowest CLS score (start + end at CLS) over its windows."""
    rows = np.arange(len(start_logits))
    per_window = start_logits[rows, cls_index] + end_logits[rows, cls_index]
    null = np.full(num_examples, np.inf)
    np.minimum.at(null, example_index, per_window)
    return null


def answer_texts(contexts: list[str], spans: Spans, offsets: np.ndarray, best_rows: np.ndarray):
    """Text and character start of each example's best span ("" and -1 where there is none)."""
    texts, char_starts = [], np.full(len(best_rows), -1, np.int64)
    for example, row in enumerate(best_rows):
        if row < 0 or not np.isfinite(spans.score[row]):
            texts.append("")
            continue
        char_starts[example] = offsets[row, spans.start[row], 0]
        texts.append(contexts[example][char_starts[example]:offsets[row, spans.end[row], 1]])
    return texts, char_starts


@dataclasses.dataclass
class Answers:
    """Decoded answers of a set of examples, in example order."""

    texts: list[str]  # the answers: "" where the example has no span or (v2) the null score wins
    span_texts: list[str]  # the best span of each example, whatever the null score
    char_start: np.ndarray  # of the best span (kept when v2 decoding answers ""), -1 where none
    best_score: np.ndarray  # best non-null span score, -inf where none
    null_odds: np.ndarray | None  # null score - best span score (v2 only)
    nbest: list[list[dict]] | None = None


def decode(contexts: list[str], start_logits, end_logits, offsets, example_index, *, max_answer_length: int = 30,
           cls_index=None, null_score_diff_threshold: float | None = None, n_best_size: int = 0) -> Answers:
    """Answers per example. With `null_score_diff_threshold` (SQuAD v2.0) an example answers ""
    when its null score beats its best span by more than the threshold. With `n_best_size` > 0 the
    n best spans of each example (over all its windows) are returned too, with probabilities."""
    n = len(contexts)
    best = best_spans(start_logits, end_logits, offsets, max_answer_length)
    best_rows = best_per_example(best, example_index, n)
    span_texts, char_start = answer_texts(contexts, best, offsets, best_rows)
    texts = span_texts
    best_score = np.where(best_rows >= 0, best.score[np.maximum(best_rows, 0)], NO_SPAN).astype(np.float64)
    null = odds = None
    if null_score_diff_threshold is not None:
        cls_index = np.zeros(len(start_logits), np.int64) if cls_index is None else cls_index
        null = null_scores(start_logits, end_logits, cls_index, example_index, n)
        odds = np.clip(null - best_score, -1e6, 1e6)
        texts = [("" if o > null_score_diff_threshold else t) for t, o in zip(span_texts, odds)]
    nbest = None
    if n_best_size > 0:
        nbest = _nbest(contexts, start_logits, end_logits, offsets, example_index, max_answer_length, n_best_size,
                       null)
    return Answers(texts, span_texts, char_start, best_score, odds, nbest)


def _nbest(contexts, start_logits, end_logits, offsets, example_index, max_answer_length, n_best_size, null):
    """Up to `n_best_size` spans per example over all its windows (plus "" for v2), best first."""
    spans = top_spans(start_logits, end_logits, offsets, max_answer_length, k=n_best_size)
    rows = np.repeat(np.arange(len(start_logits)), spans.score.shape[1])
    score = spans.score.reshape(-1)
    example = example_index[rows]
    keep = np.isfinite(score)
    rows, score, example = rows[keep], score[keep], example[keep]
    start, end = spans.start.reshape(-1)[keep], spans.end.reshape(-1)[keep]
    order = np.lexsort((-score, example))
    group_start = np.searchsorted(example[order], example[order], side="left")
    order = order[np.arange(len(order)) - group_start < n_best_size]
    nbest: list[list[dict]] = [[] for _ in contexts]
    for i in order:
        r, s, e, ex = rows[i], start[i], end[i], example[i]
        c0, c1 = int(offsets[r, s, 0]), int(offsets[r, e, 1])
        nbest[ex].append({"text": contexts[ex][c0:c1], "score": float(score[i]),
                          "start_logit": float(start_logits[r, s]), "end_logit": float(end_logits[r, e]),
                          "char_start": c0, "char_end": c1})
    for ex, entries in enumerate(nbest):
        if null is not None:
            entries.append({"text": "", "score": float(null[ex]), "start_logit": None, "end_logit": None,
                            "char_start": -1, "char_end": -1})
            entries.sort(key=lambda d: -d["score"])
        scores = np.array([d["score"] for d in entries], dtype=np.float64)
        if len(scores):
            probs = np.exp(scores - scores.max())
            for d, p in zip(entries, probs / probs.sum()):
                d["probability"] = float(p)
    return nbest

"""Logits -> answers: the best valid spans per window, merged over an example's windows.

A valid span starts and ends on context tokens, ends at or after its start and is at most
`max_answer_length` tokens long; its score is start_logit + end_logit. All windows are decoded at
once with NumPy (no Python loop over windows or span pairs), and the result is exact: the top-n
starts and ends give the candidates, and a bound sends the rare window where a span outside them
could win to an exhaustive search.
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


def _top_of(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores of each row, best first."""
    flat = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.indices(scores.shape)[1]
    order = np.argsort(-np.take_along_axis(scores, flat, axis=1), axis=1, kind="stable")
    return np.take_along_axis(flat, order, axis=1)


def _band_top_spans(s: np.ndarray, e: np.ndarray, width: int, k: int, chunk: int = 256):
    """Exhaustive: every (start, length < width) pair scored, chunk x seq x width at a time."""
    n = len(s)
    starts, ends, scores = np.zeros((n, k), np.int64), np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        padded = np.concatenate([e[lo:hi], np.full((hi - lo, width - 1), NO_SPAN, np.float32)], axis=1)
        band = (s[lo:hi, :, None] + sliding_window_view(padded, width, axis=1)).reshape(hi - lo, -1)
        flat = _top_of(band, k)
        starts[lo:hi], lengths = np.divmod(flat, width)
        ends[lo:hi] = starts[lo:hi] + lengths
        scores[lo:hi] = np.take_along_axis(band, flat, axis=1)
    return starts, ends, scores


def top_spans(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray, max_answer_length: int,
              k: int = 1, candidates: int | None = None) -> Spans:
    """The `k` best valid spans of every window, exactly. `offsets` [n, seq, 2] is -1 outside the context.

    Fast path: pair the `candidates` best starts with the `candidates` best ends of each window. A
    span outside those pairs scores at most max(next start + best end, best start + next end); a
    window whose k-th best pair is below that bound is redone exhaustively (rare), so the result
    equals a search over all pairs.
    """
    n, seq = start_logits.shape
    width = min(max_answer_length, seq)
    k = min(k, seq * width)
    is_context = offsets[..., 0] >= 0
    s = np.where(is_context, start_logits, NO_SPAN).astype(np.float32)
    e = np.where(is_context, end_logits, NO_SPAN).astype(np.float32)
    c = min(candidates or max(20, k + k // 2), seq)  # measured fastest for n-best 20 on random logits
    s_part = np.argpartition(-s, c if c < seq else seq - 1, axis=1)
    e_part = np.argpartition(-e, c if c < seq else seq - 1, axis=1)
    s_idx, e_idx = s_part[:, :c], e_part[:, :c]
    pairs = np.take_along_axis(s, s_idx, 1)[:, :, None] + np.take_along_axis(e, e_idx, 1)[:, None, :]
    length = e_idx[:, None, :] - s_idx[:, :, None]
    pairs = np.where((length >= 0) & (length < width), pairs, NO_SPAN).reshape(n, c * c)
    flat = _top_of(pairs, min(k, c * c))
    out = Spans(np.take_along_axis(s_idx, flat // c, 1), np.take_along_axis(e_idx, flat % c, 1),
                np.take_along_axis(pairs, flat, 1))
    if out.score.shape[1] < k:  # fewer candidate pairs than asked: pad with "no span"
        pad = k - out.score.shape[1]
        out = Spans(np.pad(out.start, ((0, 0), (0, pad))), np.pad(out.end, ((0, 0), (0, pad))),
                    np.pad(out.score, ((0, 0), (0, pad)), constant_values=NO_SPAN))
    if c < seq:
        s_next = np.take_along_axis(s, s_part[:, c:c + 1], 1)[:, 0]
        e_next = np.take_along_axis(e, e_part[:, c:c + 1], 1)[:, 0]
        bound = np.maximum(s_next + e.max(axis=1), s.max(axis=1) + e_next)
        redo = np.flatnonzero(out.score[:, -1] < bound)
        if redo.size:
            out.start[redo], out.end[redo], out.score[redo] = _band_top_spans(s[redo], e[redo], width, k)
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
    spans = top_spans(start_logits, end_logits, offsets, max_answer_length, k=max(n_best_size, 1))
    best = Spans(spans.start[:, 0], spans.end[:, 0], spans.score[:, 0])
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
        nbest = _nbest(contexts, spans, start_logits, end_logits, offsets, example_index, n_best_size, null)
    return Answers(texts, span_texts, char_start, best_score, odds, nbest)


def _nbest(contexts, spans: Spans, start_logits, end_logits, offsets, example_index, n_best_size, null):
    """Up to `n_best_size` spans per example over all its windows (plus "" for v2), best first,
    with probabilities (softmax over the example's list). Arrays throughout; dicts only at the end."""
    rows = np.repeat(np.arange(len(start_logits)), spans.score.shape[1])
    score, start, end = spans.score.reshape(-1), spans.start.reshape(-1), spans.end.reshape(-1)
    keep = np.isfinite(score)
    rows, score, start, end, example = rows[keep], score[keep], start[keep], end[keep], example_index[rows[keep]]
    order = np.lexsort((-score, example))
    rank = np.arange(len(order)) - np.searchsorted(example[order], example[order], side="left")
    order = order[rank < n_best_size]
    rows, start, end, example = rows[order], start[order], end[order], example[order]
    cols = {"score": score[order].astype(np.float64), "example": example,
            "start_logit": start_logits[rows, start].astype(np.float64),
            "end_logit": end_logits[rows, end].astype(np.float64),
            "char_start": offsets[rows, start, 0], "char_end": offsets[rows, end, 1]}
    if null is not None:  # "" competes with the spans, scored by the example's null score
        n = len(contexts)
        extra = {"score": null, "example": np.arange(n), "start_logit": np.full(n, np.nan),
                 "end_logit": np.full(n, np.nan), "char_start": np.full(n, -1), "char_end": np.full(n, -1)}
        cols = {k: np.concatenate([cols[k], extra[k]]) for k in cols}
        resort = np.lexsort((-cols["score"], cols["example"]))
        cols = {k: v[resort] for k, v in cols.items()}
    groups = np.flatnonzero(np.r_[True, cols["example"][1:] != cols["example"][:-1]])
    sizes = np.diff(np.r_[groups, len(cols["example"])])
    exp = np.exp(cols["score"] - np.repeat(np.maximum.reduceat(cols["score"], groups), sizes))
    probability = exp / np.repeat(np.add.reduceat(exp, groups), sizes)
    nbest: list[list[dict]] = [[] for _ in contexts]
    for ex, c0, c1, sc, sl, el, p in zip(*(cols[k].tolist() for k in ("example", "char_start", "char_end", "score",
                                                                       "start_logit", "end_logit")),
                                         probability.tolist()):
        nbest[ex].append({"text": contexts[ex][c0:c1] if c0 >= 0 else "", "probability": p, "score": sc,
                          "start_logit": None if sl != sl else sl, "end_logit": None if el != el else el,
                          "char_start": c0, "char_end": c1})
    return nbest

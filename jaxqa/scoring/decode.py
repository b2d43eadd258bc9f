"""Logits -> answers: the best valid span per window, merged over an example's windows.

A valid span starts and ends on context tokens, ends at or after its start and is at most
`max_answer_length` tokens long; its score is start_logit + end_logit. The best span is exact: a
sliding maximum of the end logits over the next `max_answer_length` positions gives every start's
best end, so one argmax finds the best pair without listing pairs. The n-best list (for
nbest_predictions.json) pairs the n best starts with the n best ends, as the usual post-processing
does, with the exact best span always first. All windows are decoded at once with NumPy, in row
chunks spread over the CPU cores (NumPy releases the GIL), with no Python loop over windows or pairs.
For SQuAD v2.0 the null score of an example is the lowest CLS score (start + end) over its
windows; it answers "" when null - best span > `null_score_diff_threshold`. A model with an
answerability head adds its no-answer logit to each window's CLS score (`null_scores`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

NO_SPAN = -np.inf
ROWS_PER_TASK = 1024  # a chunk of float32 [rows, 384] logits stays in cache between passes


@dataclasses.dataclass
class Spans:
    """Spans per window, token positions and scores (-inf: no valid span): [windows] for the best
    span, [windows, k] for a best-first list."""

    start: np.ndarray
    end: np.ndarray
    score: np.ndarray


@functools.cache
def _workers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, 8)), thread_name_prefix="jaxqa-decode")


def _by_chunks(fn, *arrays):
    """fn over row chunks of `arrays`, in parallel; its tuple of outputs concatenated back."""
    n = len(arrays[0])
    bounds = [(lo, min(lo + ROWS_PER_TASK, n)) for lo in range(0, n, ROWS_PER_TASK)]
    if len(bounds) <= 1:
        return fn(*arrays)
    parts = list(_workers().map(lambda b: fn(*(a[b[0]:b[1]] for a in arrays)), bounds))
    return tuple(None if part[0] is None else np.concatenate(part) for part in zip(*parts))


def _masked(start_logits, end_logits, offsets):
    """Logits as float32 with -inf wherever the token is not context (offsets -1)."""
    outside = np.where(offsets[..., 0] >= 0, np.float32(0), np.float32(NO_SPAN))
    return start_logits.astype(np.float32) + outside, end_logits.astype(np.float32) + outside


def _best_in_chunk(start_logits, end_logits, offsets, width: int):
    s, e = _masked(start_logits, end_logits, offsets)
    n, seq = s.shape
    best_end = e.copy()  # after the loop: best_end[:, i] = max(e[:, i : i + width])
    covered = 1
    while covered < width:
        shift = min(covered, width - covered)
        np.maximum(best_end[:, :-shift], best_end[:, shift:], out=best_end[:, :-shift])
        covered += shift
    best_end += s
    start = best_end.argmax(axis=1)
    rows = np.arange(n)
    score = best_end[rows, start]
    reach = start[:, None] + np.arange(width)
    following = np.take_along_axis(e, np.minimum(reach, seq - 1), axis=1)
    following[reach >= seq] = NO_SPAN
    return start, start + following.argmax(axis=1), score


def best_spans(start_logits, end_logits, offsets, max_answer_length: int) -> Spans:
    """The best valid span of every window (exact; score -inf where the window has none).
    `offsets` [windows, seq, 2] is -1 outside the context."""
    width = max(1, min(max_answer_length, start_logits.shape[1]))
    return Spans(*_by_chunks(lambda s, e, o: _best_in_chunk(s, e, o, width), start_logits, end_logits, offsets))


def _top_of(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores of each row, best first."""
    flat = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.indices(scores.shape)[1]
    order = np.argsort(-np.take_along_axis(scores, flat, axis=1), axis=1, kind="stable")
    return np.take_along_axis(flat, order, axis=1)


def _candidates_in_chunk(start_logits, end_logits, offsets, width: int, n: int):
    s, e = _masked(start_logits, end_logits, offsets)
    c = min(n, s.shape[1])
    s_idx = np.argpartition(-s, c - 1, axis=1)[:, :c] if c < s.shape[1] else np.indices(s.shape)[1]
    e_idx = np.argpartition(-e, c - 1, axis=1)[:, :c] if c < e.shape[1] else np.indices(e.shape)[1]
    pairs = np.take_along_axis(s, s_idx, 1)[:, :, None] + np.take_along_axis(e, e_idx, 1)[:, None, :]
    length = e_idx[:, None, :] - s_idx[:, :, None]
    pairs = np.where((length >= 0) & (length < width), pairs, NO_SPAN).reshape(len(s), c * c)
    flat = _top_of(pairs, min(n, c * c))
    return np.take_along_axis(s_idx, flat // c, 1), np.take_along_axis(e_idx, flat % c, 1), \
        np.take_along_axis(pairs, flat, 1)


def candidate_spans(start_logits, end_logits, offsets, max_answer_length: int, n: int,
                    best: Spans | None = None) -> Spans:
    """Up to `n` spans per window, best first, from the pairs of its n best starts and n best ends
    (the usual n-best post-processing); the exact best span heads every list. [windows, n]."""
    width = max(1, min(max_answer_length, start_logits.shape[1]))
    best = best or best_spans(start_logits, end_logits, offsets, max_answer_length)
    top = Spans(*_by_chunks(lambda s, e, o: _candidates_in_chunk(s, e, o, width, n),
                            start_logits, end_logits, offsets))
    if top.score.shape[1] < n:  # fewer pairs than asked: pad with "no span"
        pad = ((0, 0), (0, n - top.score.shape[1]))
        top = Spans(np.pad(top.start, pad), np.pad(top.end, pad), np.pad(top.score, pad, constant_values=NO_SPAN))
    # Where the best span is not among the pairs (its start or end just outside the top n), it
    # goes first and the list moves down one.
    missing = best.score > top.score[:, 0]
    for field in ("start", "end", "score"):
        column = getattr(top, field)
        column[missing] = np.concatenate([getattr(best, field)[missing, None], column[missing, :-1]], axis=1)
    return top


def best_per_example(spans: Spans, example_index: np.ndarray, num_examples: int) -> np.ndarray:
    """Row of the highest-scoring window of each example (-1 for an example with no window)."""
    order = np.lexsort((-spans.score, example_index))
    first = np.ones(len(order), dtype=bool)
    first[1:] = example_index[order][1:] != example_index[order][:-1]
    best = np.full(num_examples, -1, dtype=np.int64)
    best[example_index[order][first]] = order[first]
    return best


def null_scores(start_logits, end_logits, cls_index, example_index, num_examples: int,
                no_answer_logits=None) -> np.ndarray:
    """Per example, the lowest CLS score (start + end at CLS) over its windows. With an answerability
    head, each window's score is start + end at CLS + its `no_answer_logits`: two estimates of the
    log-odds of "no answer", added (their odds multiplied) rather than weighed, since the threshold chosen
    on dev and saved with the model already absorbs any offset between them; the minimum over windows stays
    (the window most sure it holds the answer speaks for the example), as the best span is the maximum."""
    rows = np.arange(len(start_logits))
    per_window = start_logits[rows, cls_index] + end_logits[rows, cls_index]
    if no_answer_logits is not None:
        per_window = per_window + no_answer_logits
    null = np.full(num_examples, np.inf)
    np.minimum.at(null, example_index, per_window)
    return null


def answer_texts(contexts: list[str], spans: Spans, offsets: np.ndarray, best_rows: np.ndarray):
    """Text and character start of each example's best span ("" and -1 where there is none)."""
    row = np.maximum(best_rows, 0)
    found = (best_rows >= 0) & np.isfinite(spans.score[row]) if len(row) else np.zeros(0, bool)
    char_start = np.where(found, offsets[row, spans.start[row], 0], -1).astype(np.int64)
    char_end = np.where(found, offsets[row, spans.end[row], 1], -1)
    texts = [context[c0:c1] if c0 >= 0 else "" for context, c0, c1 in zip(contexts, char_start.tolist(),
                                                                          char_end.tolist())]
    return texts, char_start


@dataclasses.dataclass
class NBest:
    """The n-best lists of all examples as flat columns, grouped by example and best first.
    Turned into per-example dicts (`lists`) only when nbest_predictions.json is written."""

    example: np.ndarray  # which example each entry belongs to
    score: np.ndarray
    start_logit: np.ndarray  # NaN for the v2 "" entry
    end_logit: np.ndarray
    char_start: np.ndarray  # -1 for the "" entry
    char_end: np.ndarray
    probability: np.ndarray  # softmax over the example's list

    def lists(self, contexts: list[str]) -> list[list[dict]]:
        out: list[list[dict]] = [[] for _ in contexts]
        columns = (self.example, self.char_start, self.char_end, self.score, self.start_logit, self.end_logit,
                   self.probability)
        for ex, c0, c1, score, start, end, p in zip(*(c.tolist() for c in columns)):
            out[ex].append({"text": contexts[ex][c0:c1] if c0 >= 0 else "", "probability": p, "score": score,
                            "start_logit": None if start != start else start,
                            "end_logit": None if end != end else end, "char_start": c0, "char_end": c1})
        return out


@dataclasses.dataclass
class Answers:
    """Decoded answers of a set of examples, in example order."""

    texts: list[str]  # the answers: "" where the example has no span or (v2) the null score wins
    span_texts: list[str]  # the best span of each example, whatever the null score
    char_start: np.ndarray  # of the best span (kept when v2 decoding answers ""), -1 where none
    best_score: np.ndarray  # best non-null span score, -inf where none
    null_odds: np.ndarray | None  # null score - best span score (v2 only)
    nbest: NBest | None = None

    def probability(self) -> np.ndarray:
        """Per example, the probability of its answer: its share of the softmax over the example's n-best
        spans and, when decoded with a null score, "no answer" (as Hugging Face's pipeline reports); a
        span found in several windows adds up its entries. Needs the n-best lists."""
        if self.nbest is None:
            raise ValueError("probabilities need the n-best lists: decode with n_best_size > 0")
        nb, answered = self.nbest, np.array([bool(t) for t in self.texts])
        start = np.where(answered, self.char_start, -1)
        end = np.where(answered, start + np.array([len(t) for t in self.texts]), -1)
        hit = (nb.char_start == start[nb.example]) & (nb.char_end == end[nb.example])
        probability = np.zeros(len(self.texts))
        np.add.at(probability, nb.example[hit], nb.probability[hit])
        return probability


def decode(contexts: list[str], start_logits, end_logits, offsets, example_index, *, max_answer_length: int = 30,
           cls_index=None, null_score_diff_threshold: float | None = None, n_best_size: int = 0,
           no_answer_logits=None) -> Answers:
    """Answers per example. With `null_score_diff_threshold` (SQuAD v2.0) an example answers ""
    when its null score (`null_scores`; with an answerability head's `no_answer_logits` [windows]) beats
    its best span by more than the threshold. With `n_best_size` > 0 the n best spans of each example
    (over all its windows) come too, with probabilities."""
    n = len(contexts)
    example_index = np.asarray(example_index)
    best = best_spans(start_logits, end_logits, offsets, max_answer_length)
    best_rows = best_per_example(best, example_index, n)
    span_texts, char_start = answer_texts(contexts, best, offsets, best_rows)
    texts = span_texts
    best_score = np.where(best_rows >= 0, best.score[np.maximum(best_rows, 0)], NO_SPAN).astype(np.float64)
    null = odds = None
    if null_score_diff_threshold is not None:
        cls_index = np.zeros(len(start_logits), np.int64) if cls_index is None else cls_index
        null = null_scores(start_logits, end_logits, cls_index, example_index, n, no_answer_logits)
        odds = np.clip(null - best_score, -1e6, 1e6)
        texts = [("" if o > null_score_diff_threshold else t) for t, o in zip(span_texts, odds.tolist())]
    nbest = None
    if n_best_size > 0:
        spans = candidate_spans(start_logits, end_logits, offsets, max_answer_length, n_best_size, best)
        nbest = _nbest(n, spans, start_logits, end_logits, offsets, example_index, n_best_size, null)
    return Answers(texts, span_texts, char_start, best_score, odds, nbest)


def _nbest(n: int, spans: Spans, start_logits, end_logits, offsets, example_index, n_best_size, null) -> NBest:
    """Up to `n_best_size` spans per example over all its windows (plus "" for v2), best first,
    with probabilities (softmax over the example's list)."""
    k = spans.score.shape[1]
    rows = np.repeat(np.arange(len(start_logits)), k)
    score, start, end, example = spans.score.reshape(-1), spans.start.reshape(-1), spans.end.reshape(-1), \
        example_index[rows]
    # Each window's list is sorted already; only examples with several windows need a merge.
    windows_per_example = np.bincount(example_index, minlength=n)
    if np.all(example_index[1:] >= example_index[:-1]):  # windows in example order: merge in place
        order = np.arange(len(score))
        merge = np.flatnonzero(windows_per_example[example] > 1)
        order[merge] = merge[np.lexsort((-score[merge], example[merge]))]
    else:
        order = np.lexsort((-score, example))
    order = order[np.isfinite(score[order])]
    rank = np.arange(len(order)) - np.searchsorted(example[order], example[order], side="left")
    order = order[rank < n_best_size]
    rows, score, start, end, example = rows[order], score[order], start[order], end[order], example[order]
    cols = {"score": score.astype(np.float64), "example": example,
            "start_logit": start_logits[rows, start].astype(np.float64),
            "end_logit": end_logits[rows, end].astype(np.float64),
            "char_start": offsets[rows, start, 0], "char_end": offsets[rows, end, 1]}
    if null is not None:  # "" competes with the spans, scored by the example's null score
        extra = {"score": null, "example": np.arange(n), "start_logit": np.full(n, np.nan),
                 "end_logit": np.full(n, np.nan), "char_start": np.full(n, -1), "char_end": np.full(n, -1)}
        cols = {k: np.concatenate([cols[k], extra[k]]) for k in cols}
        resort = np.lexsort((-cols["score"], cols["example"]))
        cols = {k: v[resort] for k, v in cols.items()}
    groups = np.flatnonzero(np.r_[True, cols["example"][1:] != cols["example"][:-1]])
    sizes = np.diff(np.r_[groups, len(cols["example"])])
    exp = np.exp(cols["score"] - np.repeat(np.maximum.reduceat(cols["score"], groups), sizes))
    probability = exp / np.repeat(np.add.reduceat(exp, groups), sizes)
    return NBest(probability=probability, **cols)

"""Logits -> answer text: the best valid span per window, the best window per example.

A valid span starts and ends on context tokens, ends at or after its start and is at most
`max_answer_length` tokens long; its score is start_logit + end_logit. All windows are scored at
once with NumPy (a [windows, start, length] band of scores), with no Python loop over windows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclasses.dataclass
class Spans:
    """Best span per window: token positions and score (-inf where the window has no valid span)."""

    start: np.ndarray  # int [n]
    end: np.ndarray  # int [n]
    score: np.ndarray  # float [n]


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
               max_answer_length: int, chunk: int = 512) -> Spans:
    """Exact best valid span of every window. `offsets` [n, seq, 2] is -1 outside the context."""
    n, seq = start_logits.shape
    is_context = offsets[..., 0] >= 0
    width = min(max_answer_length, seq)
    starts, ends, scores = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float64))
    for lo in range(0, n, chunk):  # bounded memory: chunk x seq x width scores at a time
        hi = min(lo + chunk, n)
        s = np.where(is_context[lo:hi], start_logits[lo:hi], -np.inf)
        e = np.where(is_context[lo:hi], end_logits[lo:hi], -np.inf)
        e = np.concatenate([e, np.full((hi - lo, width - 1), -np.inf)], axis=1)
        band = s[:, :, None] + sliding_window_view(e, width, axis=1)  # [rows, start, length-1]
        flat = band.reshape(hi - lo, -1).argmax(axis=1)
        starts[lo:hi], lengths = np.divmod(flat, width)
        ends[lo:hi] = starts[lo:hi] + lengths
        scores[lo:hi] = band.reshape(hi - lo, -1)[np.arange(hi - lo), flat]
    return Spans(starts, ends, scores)


def best_per_example(spans: Spans, example_index: np.ndarray, num_examples: int) -> np.ndarray:
    """Row of the highest-scoring window of each example (-1 for an example with no window)."""
    order = np.lexsort((-spans.score, example_index))
    first = np.ones(len(order), dtype=bool)
    first[1:] = example_index[order][1:] != example_index[order][:-1]
    best = np.full(num_examples, -1, dtype=np.int64)
    best[example_index[order][first]] = order[first]
    return best


def answer_texts(contexts: list[str], spans: Spans, offsets: np.ndarray, best_rows: np.ndarray) -> list[str]:
    """The character span of each example's best window, "" where there is no valid span."""
    texts = []
    for example, row in enumerate(best_rows):
        if row < 0 or not np.isfinite(spans.score[row]):
            texts.append("")
            continue
        char_start = offsets[row, spans.start[row], 0]
        char_end = offsets[row, spans.end[row], 1]
        texts.append(contexts[example][char_start:char_end])
    return texts


def decode(contexts: list[str], start_logits, end_logits, offsets, example_index, *,
           max_answer_length: int = 30) -> list[str]:
    """Answer text of each example (in the order of `contexts`)."""
    spans = best_spans(start_logits, end_logits, offsets, max_answer_length)
    best_rows = best_per_example(spans, example_index, len(contexts))
    return answer_texts(contexts, spans, offsets, best_rows)

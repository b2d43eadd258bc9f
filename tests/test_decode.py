"""Span decoding equals a brute-force search over all (start, end) pairs."""

from __future__ import annotations

import numpy as np

from jaxqa.decode import best_per_example, best_spans, decode


def _brute_force(start, end, offsets, max_len):
    best = (-np.inf, -1, -1)
    ctx = offsets[:, 0] >= 0
    for s in range(len(start)):
        for e in range(s, min(s + max_len, len(end))):
            if ctx[s] and ctx[e] and start[s] + end[e] > best[0]:
                best = (start[s] + end[e], s, e)
    return best


def test_best_spans_match_brute_force():
    rng = np.random.default_rng(0)
    n, seq = 60, 48
    start, end = rng.normal(size=(n, seq)), rng.normal(size=(n, seq))
    offsets = np.full((n, seq, 2), -1)
    for i in range(n):  # a random contiguous context per window; some windows have none
        lo, hi = sorted(rng.integers(1, seq, size=2))
        if i % 10 == 0:
            hi = lo
        offsets[i, lo:hi, 0] = np.arange(hi - lo) * 3
        offsets[i, lo:hi, 1] = np.arange(hi - lo) * 3 + 2
    for max_len in (1, 5, 30, 100):
        spans = best_spans(start, end, offsets, max_len, chunk=7)
        for i in range(n):
            score, s, e = _brute_force(start[i], end[i], offsets[i], max_len)
            if s < 0:
                assert spans.score[i] == -np.inf
            else:
                assert (spans.start[i], spans.end[i]) == (s, e) and np.isclose(spans.score[i], score)


def test_best_window_per_example_and_text():
    contexts = ["alpha beta gamma", "delta"]
    seq = 4
    offsets = np.full((3, seq, 2), -1)
    offsets[0, 1:4] = [[0, 5], [6, 10], [11, 16]]
    offsets[1, 1:3] = [[6, 10], [11, 16]]
    offsets[2, 1:2] = [[0, 5]]
    start = np.array([[9, 5, 0, 0], [9, 0, 7, 0], [0, 1, 0, 0]], float)
    end = np.array([[9, 0, 0, 1], [9, 0, 0, 8], [0, 1, 0, 0]], float)
    example_index = np.array([0, 0, 1])
    texts = decode(contexts, start, end, offsets, example_index, max_answer_length=30)
    assert texts == ["gamma", "delta"]  # window 1 (7+8) beats window 0 (5+1); CLS (9+9) never counts
    spans = best_spans(start, end, offsets, 30)
    np.testing.assert_array_equal(best_per_example(spans, example_index, 3), [1, 2, -1])

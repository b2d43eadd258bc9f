"""Span decoding equals a brute-force search over all (start, end) pairs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxqa.decode import best_per_example, best_spans, decode, top_spans


def _all_valid_spans(start, end, offsets, max_len):
    ctx = offsets[:, 0] >= 0
    return sorted(((start[s] + end[e], s, e) for s in range(len(start))
                   for e in range(s, min(s + max_len, len(end))) if ctx[s] and ctx[e]), reverse=True)


@st.composite
def windows(draw):
    """Random logits (with ties) over random context ranges, some windows without any context."""
    n, seq = draw(st.integers(1, 6)), draw(st.integers(2, 40))
    values = st.integers(-6, 6).map(lambda v: v / 2)  # small grid: ties happen
    start = np.array(draw(st.lists(values, min_size=n * seq, max_size=n * seq)), np.float32).reshape(n, seq)
    end = np.array(draw(st.lists(values, min_size=n * seq, max_size=n * seq)), np.float32).reshape(n, seq)
    offsets = np.full((n, seq, 2), -1)
    for i in range(n):
        lo = draw(st.integers(1, seq))
        hi = draw(st.integers(lo, seq))
        offsets[i, lo:hi, 0] = np.arange(hi - lo) * 2
        offsets[i, lo:hi, 1] = np.arange(hi - lo) * 2 + 1
    return start, end, offsets, draw(st.integers(1, 45))


@settings(max_examples=300, deadline=None)
@given(windows())
def test_best_span_equals_brute_force(case):
    start, end, offsets, max_len = case
    spans = best_spans(start, end, offsets, max_len)
    for i in range(len(start)):
        valid = _all_valid_spans(start[i], end[i], offsets[i], max_len)
        if not valid:
            assert spans.score[i] == -np.inf
            continue
        best = valid[0][0]
        # On ties any of the tied spans is right; it must be valid and reach the best score.
        s, e = spans.start[i], spans.end[i]
        assert spans.score[i] == best == start[i, s] + end[i, e]
        assert (start[i, s] + end[i, e], s, e) in valid


@settings(max_examples=100, deadline=None)
@given(windows(), st.integers(1, 8))
def test_top_k_scores_equal_brute_force(case, k):
    start, end, offsets, max_len = case
    spans = top_spans(start, end, offsets, max_len, k=k, candidates=2)  # small: the exhaustive fallback runs too
    for i in range(len(start)):
        expected = [v[0] for v in _all_valid_spans(start[i], end[i], offsets[i], max_len)][:k]
        got = [float(x) for x in spans.score[i] if np.isfinite(x)]
        assert got == expected


def test_best_window_per_example_text_and_null():
    contexts = ["alpha beta gamma", "delta"]
    offsets = np.full((3, 4, 2), -1)
    offsets[0, 1:4] = [[0, 5], [6, 10], [11, 16]]
    offsets[1, 1:3] = [[6, 10], [11, 16]]
    offsets[2, 1:2] = [[0, 5]]
    start = np.array([[9, 5, 0, 0], [9, 0, 7, 0], [0, 1, 0, 0]], np.float32)
    end = np.array([[9, 0, 0, 1], [9, 0, 0, 8], [0, 1, 0, 0]], np.float32)
    example_index = np.array([0, 0, 1])
    answers = decode(contexts, start, end, offsets, example_index, max_answer_length=30)
    # Window 1's best is 7+0 (its end logit 8 sits outside the context), beating window 0's 5+1;
    # the CLS logits (9+9) are never a span.
    assert answers.texts == ["gamma", "delta"]
    np.testing.assert_array_equal(best_per_example(best_spans(start, end, offsets, 30), example_index, 3), [1, 2, -1])
    # v2: null score = min CLS score over windows: example 0 -> 18 vs best span 7: odds 11.
    v2 = decode(contexts, start, end, offsets, example_index, cls_index=np.zeros(3, int),
                null_score_diff_threshold=0.0, n_best_size=3)
    np.testing.assert_allclose(v2.null_odds, [11.0, -2.0])
    assert v2.texts == ["", "delta"]
    nbest = v2.nbest[0]
    assert [d["text"] for d in nbest][:2] == ["", "gamma"] and abs(sum(d["probability"] for d in nbest) - 1) < 1e-9
    assert nbest[1]["char_start"] == 11 and nbest[1]["start_logit"] == 7.0 and nbest[1]["end_logit"] == 0.0

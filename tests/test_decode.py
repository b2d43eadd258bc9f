"""Span decoding equals a brute-force search over all (start, end) pairs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxqa.scoring import decode as decode_module
from jaxqa.scoring.decode import best_per_example, best_spans, candidate_spans, decode


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


@st.composite
def distinct_windows(draw):
    """Windows whose logits are all different (the n best starts and ends are then well defined)."""
    start, end, offsets, max_len = draw(windows())
    order = draw(st.permutations(range(2 * start.size)))
    values = np.array(order, np.float32).reshape(2, *start.shape) / 4
    return values[0], values[1], offsets, max_len


@settings(max_examples=150, deadline=None)
@given(distinct_windows(), st.integers(1, 8))
def test_nbest_lists_equal_brute_force(case, n):
    """Each window's list: the exact best span, then the best valid pairs of its n best starts and
    n best ends, best first, -inf padding (the usual n-best post-processing, but never missing
    the best span)."""
    start, end, offsets, max_len = case
    spans = candidate_spans(start, end, offsets, max_len, n)
    for i in range(len(start)):
        ctx = offsets[i, :, 0] >= 0
        masked_s, masked_e = np.where(ctx, start[i], -np.inf), np.where(ctx, end[i], -np.inf)
        top_s, top_e = set(np.argsort(-masked_s)[:n]), set(np.argsort(-masked_e)[:n])
        valid = _all_valid_spans(start[i], end[i], offsets[i], max_len)
        pairs = [v for v in valid if v[1] in top_s and v[2] in top_e]
        allowed = set(pairs)
        if valid and (not pairs or pairs[0][0] < valid[0][0]):  # the best span (or one tied with it) first
            pairs = [valid[0]] + pairs
            allowed |= {v for v in valid if v[0] == valid[0][0]}
        expected = pairs[:n]
        got = [(float(sc), int(s), int(e)) for sc, s, e in zip(spans.score[i], spans.start[i], spans.end[i])
               if np.isfinite(sc)]
        # Scores equal, best first; spans that tie may come in any order.
        assert [g[0] for g in got] == [float(v[0]) for v in expected]
        assert {(float(sc), s, e) for sc, s, e in allowed} >= set(got)
        assert np.all(np.isneginf(spans.score[i, len(expected):]))


def test_chunks_in_parallel_equal_one_pass(monkeypatch):
    """Row chunks decoded on several threads give the same spans as one chunk."""
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=(2, 50, 64)).astype(np.float32)
    offsets = np.full((50, 64, 2), -1)
    offsets[:, 10:60, 0] = np.arange(50)
    whole = best_spans(start, end, offsets, 30), candidate_spans(start, end, offsets, 30, 5)
    monkeypatch.setattr(decode_module, "ROWS_PER_TASK", 7)
    chunked = best_spans(start, end, offsets, 30), candidate_spans(start, end, offsets, 30, 5)
    for a, b in zip(whole, chunked):
        for field in ("start", "end", "score"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


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
    nbest = v2.nbest.lists(contexts)[0]
    assert [d["text"] for d in nbest][:2] == ["", "gamma"] and abs(sum(d["probability"] for d in nbest) - 1) < 1e-9
    assert nbest[1]["char_start"] == 11 and nbest[1]["start_logit"] == 7.0 and nbest[1]["end_logit"] == 0.0


def test_nbest_merged_over_windows_in_any_window_order():
    """An example's n-best list is the best of all its windows' lists, whatever order the windows come in."""
    rng = np.random.default_rng(1)
    n_windows, seq, n = 40, 32, 4
    start, end = rng.normal(size=(2, n_windows, seq)).astype(np.float32)
    offsets = np.full((n_windows, seq, 2), -1)
    offsets[:, 5:30, 0], offsets[:, 5:30, 1] = np.arange(25), np.arange(25) + 1
    example_index = np.sort(rng.integers(0, 15, n_windows))
    contexts = ["x" * 40] * 15
    spans = candidate_spans(start, end, offsets, 10, n)
    expected = [sorted((float(v) for w in np.flatnonzero(example_index == ex) for v in spans.score[w] if v > -np.inf),
                       reverse=True)[:n] for ex in range(15)]
    for order in (np.arange(n_windows), rng.permutation(n_windows)):
        lists = decode(contexts, start[order], end[order], offsets[order], example_index[order], max_answer_length=10,
                       n_best_size=n).nbest.lists(contexts)
        assert [[d["score"] for d in entries] for entries in lists] == expected

"""Decoding + scoring speed: jaxqa's vectorised decoder against a straightforward per-feature loop.

The loop is the usual Hugging Face-style post-processing: for every feature, the n_best start and
end indices, every pair checked (inside the context, end >= start, length cap), the best kept per
example, with the n-best list built per example. Both get the same random logits (10,000
examples, ~1.16 windows each, 384 positions, n_best 20). The loop's answers are scored question by
question as the official script does (loop_score); jaxqa's with metrics.squad_v1, which
scores all questions at once (the two are equal, tests/test_metrics.py).

    python benchmarks/decode_speed.py [--examples 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxqa.scoring import decode, metrics  # noqa: E402

WORDS = "the of and to in a is was for on as with by he at from his an were are which this be".split()


def synthetic(n_examples: int, seq: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    contexts, offsets_rows, example_index = [], [], []
    for ex in range(n_examples):
        n_words = int(rng.integers(80, 420))
        words = rng.choice(WORDS, n_words)
        contexts.append(" ".join(words))
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
        ends = starts + np.array([len(w) for w in words])
        room, stride = seq - 20, 128
        first = 0
        while True:  # windows of `room` context tokens after a 19-token question
            row = np.full((seq, 2), -1, np.int32)
            take = min(room, n_words - first)
            row[19:19 + take, 0], row[19:19 + take, 1] = starts[first:first + take], ends[first:first + take]
            offsets_rows.append(row)
            example_index.append(ex)
            if first + take >= n_words:
                break
            first += room - stride
    offsets = np.stack(offsets_rows)
    n = len(offsets)
    start_logits = rng.normal(size=(n, seq)).astype(np.float32)
    end_logits = rng.normal(size=(n, seq)).astype(np.float32)
    gold = {str(i): [" ".join(c.split()[3:6])] for i, c in enumerate(contexts)}
    return contexts, start_logits, end_logits, offsets, np.array(example_index), gold


def loop_decode(contexts, start_logits, end_logits, offsets, example_index, n_best, max_len):
    """Per-feature Python loop over the n_best x n_best candidate pairs."""
    by_example: dict[int, list] = {}
    for row in range(len(start_logits)):
        by_example.setdefault(int(example_index[row]), []).append(row)
    predictions, nbest_all = {}, {}
    for ex, rows in by_example.items():
        candidates = []
        for row in rows:
            s_idx = np.argsort(start_logits[row])[-1:-n_best - 1:-1].tolist()
            e_idx = np.argsort(end_logits[row])[-1:-n_best - 1:-1].tolist()
            for s in s_idx:
                for e in e_idx:
                    if offsets[row, s, 0] < 0 or offsets[row, e, 0] < 0 or e < s or e - s + 1 > max_len:
                        continue
                    candidates.append({"score": float(start_logits[row, s] + end_logits[row, e]),
                                       "text": contexts[ex][offsets[row, s, 0]:offsets[row, e, 1]]})
        candidates = sorted(candidates, key=lambda c: c["score"], reverse=True)[:n_best]
        scores = np.array([c["score"] for c in candidates])
        probs = np.exp(scores - scores.max()) if len(scores) else scores
        for c, p in zip(candidates, probs / probs.sum() if len(scores) else probs):
            c["probability"] = float(p)
        nbest_all[str(ex)] = candidates
        predictions[str(ex)] = candidates[0]["text"] if candidates else ""
    return predictions


def loop_score(predictions: dict[str, str], gold: dict[str, list[str]]) -> dict[str, float]:
    """SQuAD v1.1 scored question by question, as the official script does."""
    em = sum(max(metrics.exact_match(predictions.get(q, ""), g) for g in golds) for q, golds in gold.items())
    f1 = sum(max(metrics.token_f1(predictions.get(q, ""), g) for g in golds) for q, golds in gold.items())
    return {"exact_match": 100.0 * em / len(gold), "f1": 100.0 * f1 / len(gold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    contexts, start, end, offsets, example_index, gold = synthetic(args.examples, 384)
    ids = list(map(str, range(len(contexts))))
    print(f"{len(contexts)} examples, {len(start)} windows of 384 positions, n_best 20, "
          f"{os.cpu_count()} CPU cores (jaxqa's decoder uses them all; the loop is one Python thread)")
    times: dict[str, list[float]] = {"ours": [], "ours_nbest": [], "ours_nbest_json": [], "loop": []}
    for _ in range(args.repeats):  # interleaved, medians reported
        t0 = time.perf_counter()
        answers = decode.decode(contexts, start, end, offsets, example_index, max_answer_length=30)
        ours = metrics.squad_v1(dict(zip(ids, answers.texts)), gold)
        times["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with_nbest = decode.decode(contexts, start, end, offsets, example_index, max_answer_length=30,
                                   n_best_size=20)
        metrics.squad_v1(dict(zip(ids, with_nbest.texts)), gold)
        times["ours_nbest"].append(time.perf_counter() - t0)
        with_nbest.nbest.lists(contexts)  # the dicts nbest_predictions.json is written from
        times["ours_nbest_json"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop_preds = loop_decode(contexts, start, end, offsets, example_index, 20, 30)
        ref = loop_score(loop_preds, gold)
        times["loop"].append(time.perf_counter() - t0)
    median = {k: float(np.median(v)) for k, v in times.items()}
    agree = np.mean([a == loop_preds[i] for i, a in zip(ids, answers.texts)])
    print(f"per-feature loop (decode + per-question scoring): {median['loop']:.3f}s (F1 {ref['f1']:.2f})")
    for key, what in (("ours", "decode + score"), ("ours_nbest", "decode with n-best arrays + score"),
                      ("ours_nbest_json", "... + n-best lists as dicts")):
        print(f"jaxqa {what}: {median[key]:.3f}s, {median['loop'] / median[key]:.1f}x")
    print(f"jaxqa F1 {ours['f1']:.2f}; same answer for {100 * agree:.1f}% of examples (the loop only sees the "
          f"top-20 starts/ends; jaxqa's best span is exact)")


if __name__ == "__main__":
    main()

"""Is run B really better than run A, or is it seed noise? The statistics behind `compare` and the page.

Both runs are scored question by question with the run's own metric (`question_scores`: the
per-question exact match and F1 that jaxqa.scoring.metrics averages into EM/F1). The difference B - A is
then judged by a **paired bootstrap over questions**: the questions are resampled with replacement
(2,000 times, fixed seed), the same resample for both runs, and the 2.5th and 97.5th percentiles of
the mean difference give a 95% confidence interval, in points of EM/F1. An interval that contains 0
means the data cannot tell the two runs apart; one that excludes 0 means B differs from A beyond
what drawing another set of questions of this size would explain. (It does not cover the
variance of training itself: two seeds of one setting are the yardstick for that.)

A question is **right** when its exact match is 1 (the prediction equals a gold answer after the
metric's normalisation; for SQuAD v2.0 abstaining on an unanswerable question is right). Every
question is then exactly one of: fixed (A wrong, B right), broken (A right, B wrong), both right,
both wrong. `jaxqa.report` draws these numbers; `python -m jaxqa compare` prints them.
"""

from __future__ import annotations

import numpy as np

from jaxqa.scoring import metrics

NUM_RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
_CHUNK = 100  # resamples drawn at a time: memory stays ~ CHUNK x questions


def question_scores(metric: str, predictions: dict[str, str], gold_answers: dict[str, list[str]]):
    """Exact match and F1 (0..1) of every question of `gold_answers`, in its order, as `metric`
    ("squad", "squad_v2", "cmrc") defines them: their means x 100 are metrics.score()'s EM/F1. A
    question without a prediction scores 0."""
    qids = list(gold_answers)
    texts = [predictions.get(q, "") for q in qids]
    present = np.fromiter((q in predictions for q in qids), bool, len(qids))
    if metric in ("squad", "squad_v2"):
        exact, f1 = metrics.best_over_golds(texts, [golds or [""] for golds in gold_answers.values()],
                                            no_answer_rule=metric == "squad_v2")
    elif metric == "cmrc":
        exact = np.array([max(metrics.cjk_exact(p, g) for g in golds or [""])
                          for p, golds in zip(texts, gold_answers.values())], dtype=np.float64)
        f1 = np.array([max(metrics.cjk_f1(p, g) for g in golds or [""])
                       for p, golds in zip(texts, gold_answers.values())], dtype=np.float64)
    else:
        raise ValueError(f"unknown metric {metric!r}; use squad, squad_v2 or cmrc")
    exact, f1 = np.asarray(exact, np.float64), np.asarray(f1, np.float64)
    return np.where(present, exact, 0.0), np.where(present, f1, 0.0)


def paired_bootstrap(a, b, *, num_resamples: int = NUM_RESAMPLES, seed: int = SEED,
                     confidence: float = CONFIDENCE) -> dict:
    """Mean of b - a (per question, paired) and its bootstrap confidence interval: questions are
    resampled with replacement `num_resamples` times (NumPy, fixed `seed`) and the interval is the
    central `confidence` share of the resampled means. Values are in a's and b's units. Returns
    {"delta", "low", "high", "num_resamples", "confidence", "n"}."""
    diff = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    n = len(diff)
    if n == 0:
        return {"delta": 0.0, "low": 0.0, "high": 0.0, "num_resamples": num_resamples, "confidence": confidence,
                "n": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(num_resamples)
    for start in range(0, num_resamples, _CHUNK):
        rows = min(_CHUNK, num_resamples - start)
        means[start:start + rows] = diff[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    delta = float(diff.mean())  # identical runs: every difference is 0.0, so is every mean: [0, 0] exactly
    return {"delta": delta, "low": float(low), "high": float(high), "num_resamples": num_resamples,
            "confidence": confidence, "n": n}


def outcomes(right_a, right_b) -> dict:
    """{"fixed", "broken", "both_right", "both_wrong"} counts: they add up to the number of questions."""
    a, b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    return {"fixed": int((~a & b).sum()), "broken": int((a & ~b).sum()), "both_right": int((a & b).sum()),
            "both_wrong": int((~a & ~b).sum())}


def compare_scores(em_a, f1_a, em_b, f1_b, **bootstrap) -> dict:
    """Everything `compare` says about two runs' per-question scores (0..1): per metric the two
    means, the difference and its interval, in points (x 100), and the outcome counts."""
    out = {"n": len(em_a)}
    for name, a, b in (("exact_match", em_a, em_b), ("f1", f1_a, f1_b)):
        interval = paired_bootstrap(a, b, **bootstrap)
        out[name] = {"a": 100 * float(np.mean(a)) if len(a) else 0.0, "b": 100 * float(np.mean(b)) if len(b) else 0.0,
                     "delta": 100 * interval["delta"], "low": 100 * interval["low"],
                     "high": 100 * interval["high"]}
    out["num_resamples"] = interval["num_resamples"]
    out["confidence"] = interval["confidence"]
    out["outcomes"] = outcomes(np.asarray(em_a) == 1, np.asarray(em_b) == 1)
    return out


def verdict(entry: dict, name: str = "F1", settings: dict | None = None) -> str:
    """One sentence on one metric's difference: real or noise, and by how much. With `settings`
    ({setting: (A's value, B's value)} of the settings in which the two runs differ) a difference of
    seed alone is called what it is."""
    d, lo, hi = entry["delta"], entry["low"], entry["high"]
    interval = f"{name} {d:+.2f} points, 95% CI [{lo:+.2f}, {hi:+.2f}]"
    if settings is not None and set(settings) == {"seed"}:
        a, b = settings["seed"]
        return (f"{interval}. A and B differ only in --seed ({a} vs {b}): this gap is training noise of one setting, "
                f"the yardstick for others (a change of setting that moves {name} less than this, on one seed each, "
                "cannot be told from seed noise). The interval is question-sampling noise: "
                + ("it contains 0, the two models score alike" if lo <= 0 <= hi else
                   "it excludes 0, so the two seeds gave models that really differ on these questions"))
    if lo <= 0 <= hi:
        return (f"{interval}: the interval contains 0, so this difference is within noise (these questions cannot tell "
                "the runs apart)")
    direction = "better" if d > 0 else "worse"
    return (f"{interval}: the interval excludes 0, so B is {direction} than A beyond question-sampling noise (by "
            f"{min(abs(lo), abs(hi)):.2f} to {max(abs(lo), abs(hi)):.2f} points; one run each: whether another seed "
            "would agree, compare two seeds of one setting)")


"""Is run B really better than run A, or is it seed noise? `python -m jaxqa compare RUN_A RUN_B`.

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
both wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


# run_config.json keys that say where and how a run was kept, not what was trained
_NOT_SETTINGS = {"output_dir", "overwrite_output_dir", "resume_from_checkpoint", "compilation_cache_dir",
                 "feature_cache_dir", "overwrite_cache", "export_hf_dir", "cache_dir", "logging_steps", "save_steps",
                 "save_total_limit", "push_to_hub", "hub_model_id", "hub_token", "token", "use_auth_token",
                 "dry_run", "profile_steps", "coordinator_address", "num_processes", "process_id",
                 "preprocessing_num_workers", "trust_remote_code", "do_predict", "test_file", "max_predict_samples"}


def differing_settings(config_a: dict, config_b: dict) -> dict:
    """{setting: (A's value, B's value)} for the run_config.json settings that differ."""
    if not config_a or not config_b:
        return {}
    return {k: (config_a.get(k), config_b.get(k)) for k in sorted(set(config_a) | set(config_b))
            if k not in _NOT_SETTINGS and config_a.get(k) != config_b.get(k)}


def verdict(entry: dict, name: str = "F1", settings: dict | None = None) -> str:
    """One sentence on one metric's difference: real or noise, and by how much. With `settings`
    (differing_settings of the two runs) a difference of seed alone is called what it is."""
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


def format_table(result: dict, name_a: str, name_b: str, settings: dict | None = None) -> str:
    o = result["outcomes"]
    lines = [f"A: {name_a}", f"B: {name_b}",
             f"{result['n']} questions; 95% intervals from a paired bootstrap over questions "
             f"({result['num_resamples']} resamples)", "",
             f"{'metric':<12} {'A':>7} {'B':>7} {'B - A':>7}  95% CI"]
    for key in ("exact_match", "f1"):
        e = result[key]
        lines.append(f"{key:<12} {e['a']:7.2f} {e['b']:7.2f} {e['delta']:+7.2f}  [{e['low']:+.2f}, {e['high']:+.2f}]")
    lines += ["", f"questions (right = exact match): fixed {o['fixed']}, broken {o['broken']}, "
              f"both right {o['both_right']}, both wrong {o['both_wrong']}"]
    if settings:
        lines.append("settings that differ: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in settings.items()))
    lines.append(verdict(result["f1"], "F1", settings) + ".")
    return "\n".join(lines)


def _names_its_data(source: str) -> bool:
    """Does this output directory (or the directory of this predictions file) name its data?"""
    path = Path(source)
    config = (path if path.is_dir() else path.parent) / "run_config.json"
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("validation_file"))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m jaxqa compare RUN_A RUN_B [--data FILE] [--out FILE]`."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxqa compare",
        description="Compare two runs on the same questions: EM/F1 deltas with a paired bootstrap 95% confidence "
                    "interval, questions fixed/broken, and a report page with both predictions per question.")
    parser.add_argument("run_a", help="an output directory, or a predictions file (e.g. OUT/predictions.json, "
                        "OUT/before_training_predictions.json)")
    parser.add_argument("run_b", help="the same for the other run")
    parser.add_argument("--data", help="the SQuAD-format file both were evaluated on (default: the runs' "
                        "run_config.json validation_file)")
    parser.add_argument("--out", help="where to write the compare page (default: RUN_B's directory/compare_report.html)")
    parser.add_argument("--metric", choices=["auto", "squad", "squad_v2", "cmrc"], default=None,
                        help="scoring (default: the run's --metric, else auto)")
    parser.add_argument("--resamples", type=int, default=NUM_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=SEED, help="bootstrap seed")
    parser.add_argument("--no_page", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    from jaxqa.errors import JaxqaError
    from jaxqa.report.page import load_run, missing_notes, write_compare

    try:
        run_a = load_run(args.run_a, data=args.data, metric=args.metric)
        # B on its own data (its run_config.json) unless --data, so that runs on other data are refused
        # below; a bare predictions file without a run_config.json is taken to be on A's data.
        run_b = load_run(args.run_b, data=args.data or (None if _names_its_data(args.run_b) else run_a.data_path),
                         metric=args.metric or run_a.metric)
        if run_a.examples.ids != run_b.examples.ids:
            raise JaxqaError(f"{args.run_a} and {args.run_b} were not evaluated on the same questions "
                             f"({run_a.data_path}: {len(run_a.examples)}, {run_b.data_path}: {len(run_b.examples)}); "
                             "pass --data FILE")
        for note in missing_notes([run_a, run_b]):  # scored as wrong: say so before any number
            hint = ("; were the predictions made on part of that file? Without --data each run is scored on the "
                    "validation_file and max_eval_samples of its run_config.json" if args.data else "")
            print(f"jaxqa: warning: {note}{hint}", file=sys.stderr)
        result = compare_scores(run_a.em, run_a.f1, run_b.em, run_b.f1, num_resamples=args.resamples, seed=args.seed)
        print(format_table(result, run_a.name, run_b.name, differing_settings(run_a.config, run_b.config)))
        if not args.no_page:
            out = Path(args.out) if args.out else run_b.directory / "compare_report.html"
            path = write_compare(run_a, run_b, out, result=result)
            print(f"page: {path}")
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    return 0

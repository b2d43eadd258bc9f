"""`python -m jaxqa compare RUN_A RUN_B`: is run B really better than run A, or is it seed noise?

Prints both runs' EM/F1, the difference B - A with its paired-bootstrap 95% interval over questions,
the questions fixed and broken, and the verdict (`jaxqa.scoring.statistics` has the method), then
writes the compare page (`jaxqa.report.page.write_compare`): both predictions of every question.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxqa.errors import JaxqaError
from jaxqa.report.page import COMPARE_NAME, write_compare
from jaxqa.report.runs import differing_settings, load_pair, missing_notes
from jaxqa.scoring.statistics import NUM_RESAMPLES, SEED, compare_scores, verdict


def format_table(result: dict, name_a: str, name_b: str, settings: dict | None = None) -> str:
    """The printed comparison: both runs' EM/F1, B - A and its interval, the outcome counts, the
    settings that differ and the verdict."""
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
    try:
        run_a, run_b = load_pair(args.run_a, args.run_b, data=args.data, metric=args.metric)
        for note in missing_notes([run_a, run_b]):  # scored as wrong: say so before any number
            hint = ("; were the predictions made on part of that file? Without --data each run is scored on the "
                    "validation_file and max_eval_samples of its run_config.json" if args.data else "")
            print(f"jaxqa: warning: {note}{hint}", file=sys.stderr)
        result = compare_scores(run_a.em, run_a.f1, run_b.em, run_b.f1, num_resamples=args.resamples, seed=args.seed)
        print(format_table(result, run_a.name, run_b.name, differing_settings(run_a.config, run_b.config)))
        if not args.no_page:
            out = Path(args.out) if args.out else run_b.directory / COMPARE_NAME
            path = write_compare(run_a, run_b, out, result=result)
            print(f"page: {path}")
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    return 0

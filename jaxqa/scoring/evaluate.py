"""Score any predictions file, with the official scripts' interface:

    python -m jaxqa.evaluate DATA.json PREDICTIONS.json [--na-prob-file NULL_ODDS.json] [--metric auto]

prints the metrics as one JSON object. DATA is SQuAD-format (nested or flat); PREDICTIONS maps
question id -> answer text; the optional no-answer file maps id -> no-answer score (v2.0). A
question of DATA without a prediction scores 0 (one warning on stderr); other ids are ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxqa.data.examples import load_examples
from jaxqa.errors import DataError, JaxqaError
from jaxqa.scoring import metrics


def read_mapping(path: str | Path, what: str, value_type) -> dict:
    """A {question id: value} JSON file (a predictions file: value_type str; a no-answer file: numbers),
    checked value by value: the scorers, `report` and `compare` read predictions through this, so a
    bad file is one error line naming the first bad record, never a crash inside the scoring."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable {what} file ({err})") from None
    wanted = value_type.__name__ if isinstance(value_type, type) else "number"
    shape = f"a {what} file must be one JSON object mapping question id -> {wanted}"
    if not isinstance(raw, dict):
        raise DataError(f"{path}: {shape}, not a JSON {type(raw).__name__}")
    bad = next((q for q, v in raw.items() if not isinstance(v, value_type) or isinstance(v, bool)), None)
    if bad is not None:
        raise DataError(f"{path}: question {bad!r} has {json.dumps(raw[bad])[:60]}, not a {wanted}; {shape}")
    return raw


def evaluate_files(data_file: str, predictions_file: str, na_prob_file: str | None = None,
                   metric: str = "auto", na_prob_thresh: float = 1.0) -> dict:
    examples = load_examples(data_file)
    predictions = read_mapping(predictions_file, "predictions", str)
    gold = dict(zip(examples.ids, examples.answer_texts))
    chosen = metrics.pick_metric(metric, bool(examples.is_impossible.any()) or na_prob_file is not None,
                                 examples.contexts)
    if chosen == "squad_v2":
        na_probs = read_mapping(na_prob_file, "no-answer", (int, float)) if na_prob_file else None
        return {"metric": chosen, **metrics.squad_v2(predictions, gold, na_probs, na_prob_thresh)}
    return metrics.score(chosen, predictions, gold)


DESCRIPTION = ("Score a predictions file against SQuAD-format data (nested or flat JSON, or JSON lines) with the "
               "official SQuAD v1.1/v2.0 scripts' arguments and numbers; prints the metrics as one JSON object. A "
               "question without a prediction scores 0 (one warning on stderr); other ids are ignored.")


def main(argv: list[str] | None = None, prog: str = "python -m jaxqa.evaluate") -> int:
    """`python -m jaxqa.evaluate` (also `python -m jaxqa evaluate`, whose `prog` names it so)."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("data_file", help="the questions and their gold answers (SQuAD format)")
    parser.add_argument("pred_file", help="predictions: one JSON object mapping question id -> answer text")
    parser.add_argument("--na-prob-file", "-n", default=None, help="no-answer scores (v2.0), e.g. null_odds.json")
    parser.add_argument("--na-prob-thresh", "-t", type=float, default=1.0,
                        help="predict no-answer when the no-answer score exceeds this (default 1.0)")
    parser.add_argument("--metric", choices=["auto", "squad", "squad_v2", "cmrc"], default="auto")
    args = parser.parse_args(argv)
    try:
        result = evaluate_files(args.data_file, args.pred_file, args.na_prob_file, args.metric, args.na_prob_thresh)
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

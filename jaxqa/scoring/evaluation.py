"""An evaluation's scores and files: answers of a split scored with its metric, and what is written.

For SQuAD v2.0 the score is taken, as the official script intends, on the best span of every
question plus its no-answer odds: abstaining above the threshold gives exactly predictions.json's
scores, and the threshold search sees what answering would have scored. Both inputs are written
(span_predictions.json, null_odds.json), so the official script reproduces eval_results.json (all but
jaxqa's best_f1_reached and its threshold, the one saved with a model: `metrics.reachable_best`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxqa.data.examples import Examples
from jaxqa.data.features import Features
from jaxqa.errors import ModelError
from jaxqa.scoring import metrics
from jaxqa.scoring.decode import Answers
from jaxqa.sharding import write_json

RESULTS_FILE = {"eval": "eval_results.json"}  # other splits: "<split>_results.json"
THRESHOLD_FILE = "null_threshold.json"  # beside config.json of an exported model: its best no-answer threshold


@dataclasses.dataclass(frozen=True)
class NullThreshold:
    """The no-answer threshold in use (None: never abstain) and where it comes from, as the log says it."""

    value: float | None
    origin: str
    abstains: bool = False  # the model has a threshold saved by its evaluation on unanswerable questions

    def __str__(self) -> str:
        return f"null threshold: {'none' if self.value is None else f'{self.value:g}'} ({self.origin})"


def null_threshold(flag: float | None, model_dir: str | Path | None, *, default: float | None = 0.0) -> NullThreshold:
    """The one rule: --null_score_diff_threshold when given, else the threshold saved with the model in
    `model_dir` (THRESHOLD_FILE, written by its evaluation), else `default`. A model with a saved threshold
    abstains on any data, whatever the threshold."""
    path = Path(model_dir) / THRESHOLD_FILE if model_dir is not None else None
    has_saved = path is not None and path.is_file()
    if flag is not None:
        return NullThreshold(float(flag), "--null_score_diff_threshold", abstains=has_saved)
    if not has_saved:
        return NullThreshold(default, f"default {default}")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        value = float(saved["null_score_diff_threshold"])
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ModelError(f"{path}: unreadable saved no-answer threshold ({type(err).__name__}: {err}); delete the "
                         "file or pass --null_score_diff_threshold") from None
    return NullThreshold(value, f"saved with the model by its evaluation on {Path(str(saved.get('validation_file'))).name}"
                                f" at step {saved.get('step')}", abstains=True)


def save_null_threshold(model_dir: Path, result: dict, validation_file: str | None) -> NullThreshold:
    """Write the best-F1 threshold of a SQuAD v2.0 evaluation (`result`) beside the model's config.json
    (process 0); the threshold as later runs will read it. It is the one that gives the F1 saved with it
    (best_f1_reached_thresh), not the official script's best_f1_thresh, which need not (`metrics.reachable_best`)."""
    write_json(Path(model_dir) / THRESHOLD_FILE, {"null_score_diff_threshold": result["best_f1_reached_thresh"],
                                                  "best_f1": result["best_f1_reached"],
                                                  "validation_file": validation_file, "step": result.get("step")})
    return NullThreshold(float(result["best_f1_reached_thresh"]),
                         f"found by this evaluation on {Path(str(validation_file)).name}"
                         f" at step {result.get('step')}, saved with the model in {Path(model_dir) / THRESHOLD_FILE}",
                         abstains=True)


def score(examples: Examples, answers: Answers, *, metric: str = "auto", null_score_diff_threshold: float = 0.0) -> dict:
    """The metric's figures (named in "metric") for `answers` against the gold answers of `examples`."""
    gold = dict(zip(examples.ids, examples.answer_texts))
    name = metrics.pick_metric(metric, bool(examples.is_impossible.any()), examples.contexts)
    null_odds = None if answers.null_odds is None else dict(zip(examples.ids, answers.null_odds.tolist()))
    texts = answers.span_texts if name == "squad_v2" and null_odds is not None else answers.texts
    return metrics.score(name, dict(zip(examples.ids, texts)), gold, null_odds,
                         na_prob_thresh=null_score_diff_threshold)


def write_outputs(out_dir: Path, split: str, examples: Examples, answers: Answers, result: dict) -> None:
    """predictions.json, nbest_predictions.json (when decoded), null_odds.json and span_predictions.json
    (v2), and the results file; prefixed by the split but for "eval". Process 0 writes."""
    prefix = "" if split == "eval" else f"{split}_"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"{prefix}predictions.json", dict(zip(examples.ids, answers.texts)))
    if answers.nbest is not None:
        write_json(out_dir / f"{prefix}nbest_predictions.json", dict(zip(examples.ids, answers.nbest.lists(examples.contexts))))
    if answers.null_odds is not None:
        write_json(out_dir / f"{prefix}null_odds.json", dict(zip(examples.ids, answers.null_odds.tolist())))
        write_json(out_dir / f"{prefix}span_predictions.json", dict(zip(examples.ids, answers.span_texts)))
    write_json(out_dir / RESULTS_FILE.get(split, f"{split}_results.json"), result)


def write_windows(out_dir: Path, examples: Examples, features: Features) -> None:
    """windows.json ({question id: windows}) beside eval_results.json, so the report page
    (`python -m jaxqa report`, or the one a run draws after its evaluation) need not tokenise again."""
    counts = np.bincount(features.example_index, minlength=len(examples)).tolist()
    write_json(out_dir / "windows.json", dict(zip(examples.ids, counts)))

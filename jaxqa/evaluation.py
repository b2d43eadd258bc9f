"""An evaluation's scores and files: answers of a split scored with its metric, and what is written.

For SQuAD v2.0 the score is taken, as the official script intends, on the best span of every
question plus its no-answer odds: abstaining above the threshold gives exactly predictions.json's
scores, and the threshold search sees what answering would have scored. Both inputs are written
(span_predictions.json, null_odds.json), so the official script reproduces eval_results.json.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from jaxqa import metrics, sharding
from jaxqa.data import Examples
from jaxqa.decode import Answers
from jaxqa.features import Features
from jaxqa.run_log import write_json

log = logging.getLogger("jaxqa")

RESULTS_FILE = {"eval": "eval_results.json"}  # other splits: "<split>_results.json"


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


def write_report_page(out_dir: Path, examples: Examples, features: Features, result: dict, config) -> None:
    """eval_report.html (`jaxqa.report`) beside eval_results.json, and windows.json (windows per question,
    so `python -m jaxqa report` need not tokenise again). Process 0 writes; a failure to draw the page
    is a warning, never the run's end: its results are written already."""
    if not sharding.is_main_process():
        return
    counts = np.bincount(features.example_index, minlength=len(examples)).tolist()
    windows = dict(zip(examples.ids, counts))
    write_json(out_dir / "windows.json", windows)
    try:
        from jaxqa.report import write_report

        write_report(out_dir, windows=windows, examples=examples, metric=result.get("metric"),
                     config=dataclasses.asdict(config))
    except Exception as err:  # noqa: BLE001 - the page must never cost the run its results
        log.warning("eval_report.html not written (%s); `python -m jaxqa report %s` tries again", err, out_dir)

"""A run as its files describe it: the predictions of one evaluation, scored question by question.

`load_run` reads what a jaxqa run wrote in its output directory (predictions, n-best lists, null
odds, results, run_config.json, goodput.json, windows.json) or a bare predictions file, and the
data it was scored on; the page and `compare` draw and print what it holds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from jaxqa.data.examples import Examples, load_examples
from jaxqa.errors import DataError
from jaxqa.scoring import metrics
from jaxqa.scoring.evaluate import read_mapping
from jaxqa.scoring.statistics import question_scores

log = logging.getLogger("jaxqa")

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # a checkout's root: jaxqa/report/runs.py -> ../..


@dataclasses.dataclass
class Run:
    """One scored set of predictions with everything the page shows about it."""

    name: str
    directory: Path
    prefix: str | None  # "" (eval), "before_training_", ...; None: a bare predictions file
    data_path: str
    examples: Examples
    metric: str
    predictions: dict
    em: np.ndarray  # per question, 0..1, in examples order
    f1: np.ndarray
    nbest: dict | None = None
    null_odds: dict | None = None
    spans: dict | None = None  # v2: best span whatever the null score
    results: dict | None = None  # the run's results file for this split
    before: dict | None = None  # before_training_results.json (for the eval split)
    config: dict = dataclasses.field(default_factory=dict)
    goodput: dict | None = None
    windows: dict | None = None  # {id: windows}

    @property
    def threshold(self) -> float:
        """What the predictions abstain at: as the results file records it, else the run's flag (unset: 0.0)."""
        value = (self.results or {}).get("null_score_diff_threshold", self.config.get("null_score_diff_threshold"))
        return float(value or 0.0)

    @property
    def gold(self) -> dict[str, list[str]]:
        return dict(zip(self.examples.ids, self.examples.answer_texts))

    @property
    def missing(self) -> list[str]:
        """The questions (in data order) this run has no prediction for: each scores 0."""
        return [q for q in self.examples.ids if q not in self.predictions]


def missing_notes(runs: list[Run]) -> list[str]:
    """One sentence per distinct set of questions without a prediction (runs that miss the same
    ones share it): how many and the first ids. They score 0, as wrong answers would: said, since
    silently it reads as a worse model (e.g. `compare --data` with a larger file than was evaluated)."""
    by_set: dict[tuple, list[str]] = {}
    for run in runs:
        if run.missing:
            by_set.setdefault(tuple(run.missing), []).append(run.name)
    notes = []
    for missing, names in by_set.items():
        n, data = len(runs[0].examples), runs[0].data_path
        first = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        notes.append(f"{len(missing):,} of {n:,} questions of {data} have no prediction in {' and '.join(names)} "
                     f"and score 0 (first: {first})")
    return notes


def read_json(path: Path):
    """A run's JSON file; None when it is absent (a run writes some files only in some settings)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None


def _resolve_data(value: str, directory: Path) -> Path:
    """A run_config path was given relative to the run's working directory, which is unknown: try it
    as given, beside the output directory and from the project root."""
    path = Path(value)
    candidates = [path] if path.is_absolute() else [path, directory.parent / path, directory / path,
                                                     PROJECT_ROOT / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"{value}: the data file named in {directory / 'run_config.json'} is not found from here; "
                    "pass --data FILE")


def _predictions_file(source: Path, split: str | None) -> tuple[Path, Path, str | None]:
    """(predictions file, run directory, prefix of the run's file names; None for a file not named as a run names it)."""
    if source.is_dir():
        prefix = "" if split in (None, "eval") else f"{split}_"
        pred_path = source / f"{prefix}predictions.json"
        if not pred_path.is_file():
            raise DataError(f"{source}: no {pred_path.name}; is it a jaxqa output directory with an evaluation "
                            "(--do_eval)?")
        return pred_path, source, prefix
    if source.is_file():
        prefix = source.name[: -len("predictions.json")] if source.name.endswith("predictions.json") else None
        return source, source.parent, prefix
    raise DataError(f"{source}: no such output directory or predictions file")


def _scored_examples(pred_path: Path, directory: Path, config: dict, data) -> tuple[Examples, Path]:
    """The examples the predictions are scored against: `data`, else run_config.json's validation_file
    (with its max_eval_samples)."""
    if data is None:
        if not config.get("validation_file"):
            raise DataError(f"{pred_path}: which data were these predictions made on? pass --data FILE")
        data_path = _resolve_data(config["validation_file"], directory)
    else:
        data_path = Path(data)
    examples = load_examples(data_path, on_bad_record=config.get("on_bad_record") or "error")
    if config.get("max_eval_samples"):
        examples = examples.select(range(min(int(config["max_eval_samples"]), len(examples))))
    return examples, data_path


def _read_side_files(run: Run) -> None:
    """What the run wrote beside its predictions: n-best, null odds, best spans, results, goodput."""
    prefix, directory = run.prefix, run.directory
    run.nbest = read_json(directory / f"{prefix}nbest_predictions.json")
    run.null_odds = read_json(directory / f"{prefix}null_odds.json")
    run.spans = read_json(directory / f"{prefix}span_predictions.json")
    run.results = read_json(directory / ("eval_results.json" if prefix == "" else f"{prefix}results.json"))
    if prefix == "":
        run.before = read_json(directory / "before_training_results.json")
    goodput, started = directory / "goodput.json", directory / "run_config.json"
    # A goodput.json older than this run's run_config.json is a previous run's.
    if goodput.is_file() and (not started.is_file() or goodput.stat().st_mtime >= started.stat().st_mtime):
        run.goodput = read_json(goodput)


def load_run(source: str | Path, *, split: str | None = None, data: str | Path | None = None,
             metric: str | None = None, windows: dict | None = None, examples: Examples | None = None,
             config: dict | None = None) -> Run:
    """A run from an output directory (`split` "eval" or "before_training") or from a predictions
    file (OUT/predictions.json, OUT/before_training_predictions.json, or any {id: text} file with
    `data`), scored against `data` (default: run_config.json's validation_file, with its
    max_eval_samples), or against `examples` as loaded already (the trainer's); `config` (the run's
    settings as a dict) stands in for run_config.json."""
    pred_path, directory, prefix = _predictions_file(Path(source), split)
    if config is None:
        config = (read_json(directory / "run_config.json") or {}) if prefix is not None else {}
    if prefix == "predict_":
        raise DataError(f"{pred_path}: predictions for --test_file have no gold answers to analyse")
    if examples is not None:
        data_path = examples.source or data or "(examples given)"
    else:
        examples, data_path = _scored_examples(pred_path, directory, config, data)
    predictions = read_mapping(pred_path, "predictions", str)
    metric = metrics.pick_metric(metric or config.get("metric") or "auto", bool(examples.is_impossible.any()),
                                 examples.contexts)
    em, f1 = question_scores(metric, predictions, dict(zip(examples.ids, examples.answer_texts)))
    run = Run(name=str(directory) if prefix == "" else str(pred_path), directory=directory, prefix=prefix,
              data_path=str(data_path), examples=examples, metric=metric, predictions=predictions, em=em, f1=f1,
              config=config)
    if prefix is not None:
        _read_side_files(run)
    run.windows = windows if windows is not None else _windows(run)
    return run


def _names_its_data(source: str | Path) -> bool:
    """Does this output directory (or the directory of this predictions file) name its data?"""
    path = Path(source)
    config = (path if path.is_dir() else path.parent) / "run_config.json"
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("validation_file"))
    except (OSError, ValueError, AttributeError):
        return False


def load_pair(run_a: Run | str | Path, run_b: Run | str | Path, *, data: str | Path | None = None,
              metric: str | None = None) -> tuple[Run, Run]:
    """Two runs to compare (Run objects, output directories or predictions files), on the same
    questions: B on its own data (its run_config.json) unless `data`, so that runs on other data are
    refused; a bare predictions file without a run_config.json is taken to be on A's data."""
    if not isinstance(run_a, Run):
        run_a = load_run(run_a, data=data, metric=metric)
    if not isinstance(run_b, Run):
        run_b = load_run(run_b, data=data or (None if _names_its_data(run_b) else run_a.data_path),
                         metric=metric or run_a.metric)
    if run_a.examples.ids != run_b.examples.ids:
        raise DataError(f"{run_a.name} and {run_b.name} were not evaluated on the same questions "
                        f"({run_a.data_path}: {len(run_a.examples)}, {run_b.data_path}: {len(run_b.examples)}); "
                        "pass --data FILE")
    return run_a, run_b


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


def _windows(run: Run) -> dict | None:
    """Windows per question: `windows.json` ({id: count}) when the run wrote it, else counted by
    tokenising with the run's tokenizer and window settings; None (that breakdown left out) when
    neither works."""
    if run.prefix is None:
        return None
    stored = read_json(run.directory / "windows.json")
    if isinstance(stored, dict):
        return stored
    c = run.config
    sources = [c.get("tokenizer_name"), run.directory / "model" if (run.directory / "model").is_dir() else None,
               c.get("model_name_or_path")]
    try:
        from jaxqa.data.features import load_tokenizer, tokenize

        name = next((s for s in sources if s), None)
        if name is None:  # the packaged MiniLM (jaxqa.models.weights imports JAX: only when needed)
            from jaxqa.models.weights import resolve_model_dir

            name = resolve_model_dir(None)
        t0 = time.perf_counter()
        features = tokenize(run.examples, load_tokenizer(name), max_seq_length=int(c.get("max_seq_length", 384)),
                            doc_stride=int(c.get("doc_stride", 128)), max_query_length=int(c.get("max_query_length", 64)))
        counts = np.bincount(features.example_index, minlength=len(run.examples))
        log.info("report: windows per question counted with the tokenizer of %s (%.1fs)", name,
                 time.perf_counter() - t0)
        return dict(zip(run.examples.ids, counts.tolist()))
    except Exception as err:  # noqa: BLE001 - the page is still useful without that breakdown
        log.info("report: no windows per question (%s: %s); that breakdown is left out", type(err).__name__, err)
        return None

"""`eval_report.html`: error analysis of an evaluation, one self-contained page.

`write_report(OUTPUT_DIR)` reads what a run wrote (predictions, n-best lists, null odds, results,
metrics.jsonl, run_config.json) and the data it was scored on, and writes one HTML file that needs
nothing else (no network: inline CSS, inline vanilla JS, SVG charts). It shows the headline metrics
before and after training, the data and model, run time, training curves, EM/F1 broken down by
question type, answer length, context length, windows and answer position, for SQuAD v2.0 the
F1-vs-threshold curve and the HasAns/NoAns confusion, and every question in one table that sorts,
filters and opens each question onto its context with the gold answers and the prediction marked.
`write_compare(A, B, OUT)` writes the same page for two runs (`jaxqa.report.compare` gives the statistics).

The per-question scores are `jaxqa.report.compare.question_scores`: the run's own metric, question by
question; the page checks that their means reproduce the run's results file and says so.
Character offsets are converted to UTF-16 units for the browser, so spans stay right in text with
characters beyond the Basic Multilingual Plane (rare CJK ideographs).

    python -m jaxqa report OUTPUT_DIR [--split eval|before_training] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import logging
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from jaxqa import atomic
from jaxqa.data.examples import Examples, load_examples
from jaxqa.errors import DataError, JaxqaError
from jaxqa.report import plots
from jaxqa.report.compare import compare_scores, paired_bootstrap, question_scores
from jaxqa.scoring import metrics
from jaxqa.scoring.evaluate import read_mapping
from jaxqa.training.run_log import kept_note

log = logging.getLogger("jaxqa")

REPORT_NAME = "eval_report.html"
COMPARE_NAME = "compare_report.html"
NBEST_SHOWN = 5  # n-best alternatives embedded per question and run
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# --- a run, as its files describe it ---------------------------------------------------------

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


def _read_json(path: Path):
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
                                                     PACKAGE_ROOT / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"{value}: the data file named in {directory / 'run_config.json'} is not found from here; "
                    "pass --data FILE")


def load_run(source: str | Path, *, split: str | None = None, data: str | Path | None = None,
             metric: str | None = None, windows: dict | None = None, examples: Examples | None = None,
             config: dict | None = None) -> Run:
    """A run from an output directory (`split` "eval" or "before_training") or from a predictions
    file (OUT/predictions.json, OUT/before_training_predictions.json, or any {id: text} file with
    `data`), scored against `data` (default: run_config.json's validation_file, with its
    max_eval_samples), or against `examples` as loaded already (the trainer's); `config` (the run's
    settings as a dict) stands in for run_config.json."""
    source = Path(source)
    if source.is_dir():
        directory = source
        prefix = "" if split in (None, "eval") else f"{split}_"
        pred_path = directory / f"{prefix}predictions.json"
        if not pred_path.is_file():
            raise DataError(f"{directory}: no {pred_path.name}; is it a jaxqa output directory with an evaluation "
                            "(--do_eval)?")
    elif source.is_file():
        pred_path, directory = source, source.parent
        prefix = source.name[: -len("predictions.json")] if source.name.endswith("predictions.json") else None
    else:
        raise DataError(f"{source}: no such output directory or predictions file")
    if config is None:
        config = (_read_json(directory / "run_config.json") or {}) if prefix is not None else {}
    if prefix == "predict_":
        raise DataError(f"{pred_path}: predictions for --test_file have no gold answers to analyse")
    if examples is not None:
        data_path = examples.source or data or "(examples given)"
    else:
        if data is None:
            if not config.get("validation_file"):
                raise DataError(f"{pred_path}: which data were these predictions made on? pass --data FILE")
            data_path = _resolve_data(config["validation_file"], directory)
        else:
            data_path = Path(data)
        examples = load_examples(data_path, on_bad_record=config.get("on_bad_record") or "error")
        if config.get("max_eval_samples"):
            examples = examples.select(range(min(int(config["max_eval_samples"]), len(examples))))
    predictions = read_mapping(pred_path, "predictions", str)
    metric = metrics.pick_metric(metric or config.get("metric") or "auto", bool(examples.is_impossible.any()),
                                 examples.contexts)
    gold = dict(zip(examples.ids, examples.answer_texts))
    em, f1 = question_scores(metric, predictions, gold)
    side = (lambda name: _read_json(directory / f"{prefix}{name}")) if prefix is not None else (lambda name: None)
    results_name = "eval_results.json" if prefix == "" else f"{(prefix or '')}results.json"
    run = Run(name=str(directory) if prefix == "" else str(pred_path), directory=directory, prefix=prefix,
              data_path=str(data_path), examples=examples, metric=metric, predictions=predictions, em=em, f1=f1,
              nbest=side("nbest_predictions.json"), null_odds=side("null_odds.json"),
              spans=side("span_predictions.json"), config=config,
              results=_read_json(directory / results_name) if prefix is not None else None)
    if prefix == "":
        run.before = _read_json(directory / "before_training_results.json")
    if prefix is not None:
        goodput, started = directory / "goodput.json", directory / "run_config.json"
        # A goodput.json older than this run's run_config.json is a previous run's.
        if goodput.is_file() and (not started.is_file() or goodput.stat().st_mtime >= started.stat().st_mtime):
            run.goodput = _read_json(goodput)
    run.windows = windows if windows is not None else _windows(run)
    return run


def _windows(run: Run) -> dict | None:
    """Windows per question: `windows.json` ({id: count}) when the run wrote it, else counted by
    tokenising with the run's tokenizer and window settings; None (that breakdown left out) when
    neither works."""
    if run.prefix is None:
        return None
    stored = _read_json(run.directory / "windows.json")
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


# --- what each question is --------------------------------------------------------------------

_WH = re.compile(r"\b(what|which|who|whom|whose|when|where|why|how)\b", re.I)
_HOW_MANY = re.compile(r"\bhow\s+(many|much)\b", re.I)
QUESTION_TYPES = ["what", "which", "who", "when", "where", "why", "how", "how many/much", "other"]
# Chinese question words onto the same types; at one position the longest keyword wins
# (什么时候 "when" over 什么 "what"); 几乎 ("almost") is no question word.
_ZH_WORDS = {
    "who": ["谁", "何人", "哪位", "什么人", "哪些人"],
    "when": ["什么时候", "何时", "哪一年", "哪年", "哪天", "哪一天", "几月", "几号", "几时", "哪个朝代", "何年",
             "哪一时期", "什么时间", "多少年", "哪个时期", "哪个年代", "哪一年代", "什么年代"],
    "where": ["哪里", "哪儿", "何处", "什么地方", "哪个地方", "哪个国家", "哪些国家", "哪座城市", "哪个城市", "哪个地区",
              "哪些地区", "何地", "哪国"],
    "why": ["为什么", "为何", "什么原因", "原因是"],
    "how many/much": ["多少", "几", "多大", "多长", "多高", "多重", "多久", "多远", "多深", "多宽"],
    "how": ["怎么", "怎样", "如何", "怎么样"],
    "which": ["哪个", "哪些", "哪一", "哪种", "哪部", "哪家", "哪所", "哪", "何种"],
    "what": ["什么", "啥", "何", "甚么"],
}
_ZH_KEYWORDS = sorted(((w, t) for t, words in _ZH_WORDS.items() for w in words), key=lambda wt: -len(wt[0]))
_ZH_NOT = ("几乎",)


def question_type(question: str) -> str:
    """The first wh-word of an English question ("how many/much" apart from "how"); for a Chinese
    question its first question word, mapped onto the same types; "other" when there is none."""
    if metrics._CJK.search(question):
        text = question
        for word in _ZH_NOT:
            text = text.replace(word, "\0" * len(word))
        best = None  # (position, -length, type)
        for word, kind in _ZH_KEYWORDS:
            at = text.find(word)
            if at >= 0 and (best is None or (at, -len(word)) < best[:2]):
                best = (at, -len(word), kind)
        if best:
            return best[2]
    match = _WH.search(question)
    if not match:
        return "other"
    if _HOW_MANY.match(question, match.start()):
        return "how many/much"
    word = match.group(1).lower()
    return "who" if word in ("whom", "whose") else word


def _nice(value: float) -> float:
    """Rounded to two significant digits (bin edges people can read)."""
    if value <= 0:
        return 0
    mag = 10 ** (math.floor(math.log10(value)) - 1)
    return round(value / mag) * mag


def _quantile_bins(values: np.ndarray, unit: str, k: int = 5) -> tuple[list[str], np.ndarray]:
    """Labels of up to `k` bins with about equal counts, and each value's bin."""
    if not len(values):
        return [], np.zeros(0, int)
    edges = np.unique([_nice(q) for q in np.quantile(values, np.arange(1, k) / k)])
    edges = edges[edges < values.max()]
    index = np.searchsorted(edges, values, side="left")
    # Rounded edges can leave a bin empty (a small run: every context longer than the first edge);
    # dropping an empty bin's upper edge merges it into the next, so every label has questions.
    edges = edges[np.bincount(index, minlength=len(edges) + 1)[:-1] > 0]
    index = np.searchsorted(edges, values, side="left")
    labels, low = [], None
    for i, edge in enumerate(edges):
        labels.append(f"≤ {edge:g} {unit}" if i == 0 else f"{low:g}–{edge:g} {unit}")
        low = edge + 1 if float(edge).is_integer() else edge
    labels.append(f"> {edges[-1]:g} {unit}" if len(edges) else f"all ({unit})")
    return labels, index


ANSWER_LENGTH_EN = [(1, "1 word"), (2, "2 words"), (3, "3 words"), (5, "4–5 words"), (10, "6–10 words"),
                    (math.inf, "> 10 words")]
ANSWER_LENGTH_ZH = [(2, "1–2 chars"), (4, "3–4 chars"), (8, "5–8 chars"), (16, "9–16 chars"),
                    (math.inf, "> 16 chars")]
POSITIONS = ["first 20%", "20–40%", "40–60%", "60–80%", "last 20%"]
NO_ANSWER = "no answer"
SHORT_NAMES = {"type": "type", "alen": "answer", "clen": "context", "win": "windows", "pos": "answer in"}


def _bucket(value: float, table) -> str:
    return next(label for limit, label in table if value <= limit)


def _groups(run: Run) -> list[dict]:
    """The breakdowns: [{key, title, labels (ordered), of (label per question)}]."""
    ex = run.examples
    chinese = run.metric == "cmrc"
    n = len(ex)
    types = [question_type(q) for q in ex.questions]
    has_answer = [bool(golds) for golds in ex.answer_texts]
    if chinese:
        lengths = [len(metrics.cjk_segments(golds[0])) if golds else 0 for golds in ex.answer_texts]
        ctx_len, unit = np.array([len(c) for c in ex.contexts]), "chars"
        table = ANSWER_LENGTH_ZH
    else:
        lengths = [len(golds[0].split()) if golds else 0 for golds in ex.answer_texts]
        ctx_len, unit = np.array([len(c.split()) for c in ex.contexts]), "words"
        table = ANSWER_LENGTH_EN
    answer_len = [_bucket(max(length, 1), table) if ok else NO_ANSWER for length, ok in zip(lengths, has_answer)]
    ctx_labels, ctx_index = _quantile_bins(ctx_len, unit)
    position = []
    for starts, context, ok in zip(ex.answer_starts, ex.contexts, has_answer):
        if not ok or not starts:
            position.append(NO_ANSWER)
        else:
            position.append(POSITIONS[min(int(5 * starts[0] / max(len(context), 1)), 4)])
    groups = [
        {"key": "type", "title": "Question type" + (" (question word, mapped onto English types)" if chinese else
                                                   " (first wh-word)"),
         "labels": [t for t in QUESTION_TYPES if t in set(types)], "of": types},
        {"key": "alen", "title": f"Gold answer length (first gold, {'characters' if chinese else 'words'})",
         "labels": [label for _, label in table if label in set(answer_len)] + ([NO_ANSWER] if NO_ANSWER in answer_len
                                                                                 else []), "of": answer_len},
        {"key": "clen", "title": f"Context length ({unit}, quintiles)", "labels": ctx_labels,
         "of": [ctx_labels[i] for i in ctx_index]},
    ]
    if run.windows is not None:
        counts = [int(run.windows.get(q, 0)) for q in ex.ids]
        of = ["?" if c <= 0 else (str(c) if c < 4 else "4+") for c in counts]
        labels = [w for w in ("1", "2", "3", "4+", "?") if w in set(of)]
        seq = run.config.get("max_seq_length")
        groups.append({"key": "win", "title": "Windows per question" + (f" (max_seq_length {seq}, doc_stride "
                                                                           f"{run.config.get('doc_stride')})" if seq else ""),
                       "labels": labels, "of": of})
    groups.append({"key": "pos", "title": "Where the answer starts in its context", "labels":
                   [p for p in POSITIONS + [NO_ANSWER] if p in set(position)], "of": position})
    assert all(len(g["of"]) == n for g in groups)
    for g in groups:  # a category without questions is no row, no filter option (its means would be NaN)
        present = set(g["of"])
        g["labels"] = [label for label in g["labels"] if label in present]
    return groups


# --- the page's data --------------------------------------------------------------------------

def _utf16(context: str):
    """Python character offset -> UTF-16 offset (what JavaScript strings index) in `context`."""
    if context.isascii() or len(context.encode("utf-16-le", "surrogatepass")) == 2 * len(context):
        return lambda i: i
    table = np.concatenate([[0], np.cumsum([2 if ord(ch) > 0xFFFF else 1 for ch in context])]).tolist()
    return lambda i: table[max(0, min(i, len(context)))]


def _span_of(text: str, context: str, near: int | None) -> tuple[int, int] | None:
    """Where `text` occurs in `context` (the occurrence nearest `near`)."""
    if not text:
        return None
    found, at = [], context.find(text)
    while at >= 0 and len(found) < 50:
        found.append(at)
        at = context.find(text, at + 1)
    if not found:
        return None
    start = min(found, key=lambda s: abs(s - (near or 0)))
    return start, start + len(text)


def _rounded(x: float, digits: int = 4) -> float:
    return float(round(float(x), digits))


def _run_records(run: Run) -> list[dict]:
    """Per question of `run`: its prediction, where it is, scores, n-best alternatives."""
    ex = run.examples
    nbest = run.nbest or {}
    alts, owner = [], []
    shown = {qid: [e for e in (nbest.get(qid) or []) if isinstance(e, dict)][:NBEST_SHOWN] for qid in ex.ids}
    for i, qid in enumerate(ex.ids):
        for entry in shown[qid]:
            alts.append(entry.get("text") or "")
            owner.append(i)
    alt_f1 = (question_scores(run.metric, {str(k): t for k, t in enumerate(alts)},
                              {str(k): ex.answer_texts[i] for k, i in enumerate(owner)})[1] if alts else [])
    alt_iter = iter(np.asarray(alt_f1).tolist())
    records = []
    for i, qid in enumerate(ex.ids):
        context = ex.contexts[i]
        to16 = _utf16(context)
        prediction = run.predictions.get(qid)
        entries = [e for e in (nbest.get(qid) or []) if isinstance(e, dict)]
        span = None
        if prediction:
            for e in entries:
                if e.get("text") == prediction and isinstance(e.get("char_start"), int) and e["char_start"] >= 0:
                    span = (e["char_start"], e.get("char_end", e["char_start"] + len(prediction)))
                    break
            if span is None:
                span = _span_of(prediction, context, ex.answer_starts[i][0] if ex.answer_starts[i] else None)
        rec = {"p": prediction if prediction is not None else None, "em": int(run.em[i]), "f1": _rounded(run.f1[i])}
        if span:
            rec["s"] = [to16(span[0]), to16(span[1])]
        nb = []
        for e in shown[qid]:  # [probability, F1, start, end] (the text is the context's) or [p, F1, text]
            c0, c1, text = e.get("char_start"), e.get("char_end"), e.get("text") or ""
            item = [_rounded(e.get("probability") or 0.0, 4), _rounded(next(alt_iter), 3)]
            located = isinstance(c0, int) and isinstance(c1, int) and 0 <= c0 < c1 and context[c0:c1] == text
            nb.append(item + ([to16(c0), to16(c1)] if located else [text]))
        if nb:
            rec["nb"] = nb
        if run.null_odds and qid in run.null_odds:
            rec["o"] = _rounded(run.null_odds[qid], 3)
        if run.spans and not prediction and run.spans.get(qid):
            rec["sp"] = run.spans[qid]
        records.append(rec)
    return records


def _page_data(runs: list[Run], groups: list[dict]) -> dict:
    ex = runs[0].examples
    contexts, index = [], {}
    ctx_index = []
    for context in ex.contexts:
        if context not in index:
            index[context] = len(contexts)
            contexts.append(context)
        ctx_index.append(index[context])
    per_run = [_run_records(run) for run in runs]
    label_index = [{label: j for j, label in enumerate(g["labels"])} for g in groups]
    questions = []
    for i, qid in enumerate(ex.ids):
        context = ex.contexts[i]
        to16 = _utf16(context)
        golds, seen = [], set()
        for text, start in zip(ex.answer_texts[i], ex.answer_starts[i]):
            span = (start, start + len(text)) if context[start:start + len(text)] == text else _span_of(text, context,
                                                                                                          start)
            key = (text, span)
            if key in seen:
                continue
            seen.add(key)
            golds.append([text] + ([to16(span[0]), to16(span[1])] if span else []))
        questions.append({"id": qid, "q": ex.questions[i], "c": ctx_index[i], "g": golds,
                          "k": [label_index[j][g["of"][i]] for j, g in enumerate(groups)],
                          "r": [records[i] for records in per_run]})
    return {"mode": "compare" if len(runs) > 1 else "single", "metric": runs[0].metric,
            "lang": "zh" if runs[0].metric == "cmrc" else "en", "runs": [r.name for r in runs],
            "groups": [{"key": g["key"], "title": g["title"], "short": SHORT_NAMES[g["key"]], "labels": g["labels"]}
                       for g in groups],
            "contexts": contexts, "questions": questions}


# --- charts (SVG, drawn here) -----------------------------------------------------------------

COLORS = ["#1f6fd1", "#e67e00", "#2e9e4f", "#8e44ad", "#c0392b"]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo if hi > lo else 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    start = math.ceil(lo / step - 1e-9) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) < 1e-2 or abs(value) >= 1e5:
        return f"{value:.1e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:.4g}"


def _beside(x: float, text: str, width: float, size: float = 10.0, gap: float = 3.0) -> tuple[float, str]:
    """Where a label of `text` (`size` px font) beside position x goes: (x, text-anchor). Right of x
    where it fits in the chart's `width`, else left of it, else pushed inside: an SVG clips at its
    edges, so a label of a mark at the edge would show its first letters only. The width is an upper
    estimate: 0.62 em a character (headless Chromium's sans-serif: 0.52 em for a mark's label, 0.57
    for a bold title)."""
    w = 0.62 * size * len(text)
    if x + gap + w <= width - 1:
        return x + gap, "start"
    if x - gap - w >= 1:
        return x - gap, "end"
    return max(1.0, min(x - w / 2, width - 1 - w)), "start"


def svg_chart(series: list[dict], *, title: str, y_label: str, x_label: str = "step",
              y_range: tuple[float, float] | None = None, marks: list[dict] = (), width: int = 380,
              height: int = 230) -> str:
    """A line chart. `series`: [{name, points [(x, y)], color, dash, step_from (x where the first
    step-level starts, for windowed means), markers}]; `marks`: vertical lines [{x, label, color}].
    Points that are not finite are not drawn (a coordinate "nan" would break the whole line)."""
    left, right, top, bottom = 54, 14, 40, 38
    series = [{**s, "points": [p for p in s["points"] if math.isfinite(p[0]) and math.isfinite(p[1])]} for s in series]
    xs = [x for s in series for x, _ in s["points"]] + [m["x"] for m in marks]
    ys = [y for s in series for _, y in s["points"]]
    if not xs or not ys:
        return ""
    x0, x1 = min(min(xs), 0) if x_label == "step" else min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = y_range or (min(0.0, min(ys)), max(ys) * 1.08 if max(ys) > 0 else 1.0)
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / (x1 - x0) * pw

    def py(y):
        return top + ph - (min(max(y, y0), y1) - y0) / (y1 - y0) * ph

    esc = html.escape
    title_x = max(4.0, min(left, width - 4 - 0.62 * 13 * len(title)))  # a long title starts further left
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{esc(title)}"><text x="{title_x:.1f}" y="16" class="ct">{esc(title)}</text>']
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>'
                   f'<text x="{left - 5}" y="{py(t) + 3.5:.1f}" class="tk" text-anchor="end">{_num(t)}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
                   f'<text x="{px(t):.1f}" y="{top + ph + 15}" class="tk" text-anchor="middle">{_num(t)}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
               f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>'
               f'<text x="{left + pw / 2}" y="{height - 4}" class="al" text-anchor="middle">{esc(x_label)}</text>'
               f'<text transform="translate(12 {top + ph / 2}) rotate(-90)" class="al" text-anchor="middle">'
               f'{esc(y_label)}</text>')
    for m in marks:
        color = m.get("color", "#555")
        at, anchor = _beside(px(m["x"]), m["label"], width)
        out.append(f'<line x1="{px(m["x"]):.1f}" x2="{px(m["x"]):.1f}" y1="{top}" y2="{top + ph}" stroke="{color}" '
                   f'stroke-dasharray="4 3" stroke-width="1.3"/><text x="{at:.1f}" text-anchor="{anchor}" '
                   f'y="{top + 10 + 11 * m.get("row", 0)}" class="tk" fill="{color}">{esc(m["label"])}</text>')
    legend_x = left
    for s in series:
        pts = sorted(s["points"])
        dash = s.get("dash")
        color, dash = s.get("color", COLORS[0]), f' stroke-dasharray="{dash if isinstance(dash, str) else "5 3"}"' if dash else ""
        if s.get("step_from") is not None and pts:
            d, prev = [], s["step_from"]
            for k, (x, y) in enumerate(pts):
                d.append(f'{"M" if k == 0 else "L"}{px(max(prev, x0)):.1f},{py(y):.1f}H{px(x):.1f}')
                prev = x
            path = "".join(d)
        else:
            path = "".join(f'{"M" if k == 0 else "L"}{px(x):.1f},{py(y):.1f}' for k, (x, y) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.7"{dash}/>')
        if s.get("markers", True):
            for x, y in pts:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{color}"><title>'
                           f'{esc(s["name"])}: step {_num(x)}: {_num(y)}</title></circle>')
        for x, y, text in s.get("labels", []):
            at, anchor = _beside(px(x), text, width, gap=4)
            out.append(f'<text x="{at:.1f}" y="{py(y) - 5:.1f}" class="tk" text-anchor="{anchor}" '
                       f'fill="{color}">{esc(text)}</text>')
        out.append(f'<rect x="{legend_x}" y="24" width="10" height="3" fill="{color}"/>'
                   f'<text x="{legend_x + 13}" y="28" class="lg">{esc(s["name"])}</text>')
        legend_x += 18 + 6.2 * len(s["name"])
    out.append("</svg>")
    return "".join(out)


def _curve_charts(runs: list[Run]) -> str:
    """Loss (mean per logging window), learning rate, eval metrics over steps; one series per run
    directory (before vs after training of one run share them)."""
    seen, curves = set(), []
    for k, run in enumerate(runs):
        if run.prefix is None or run.directory.resolve() in seen:
            continue
        seen.add(run.directory.resolve())
        data = plots.curve_data(run.directory)
        if data["train"] or data["evals"]:
            curves.append((k, run, data))
    if not curves:
        return '<p class="note">No metrics.jsonl or results files: no training curves.</p>'
    tag = len(curves) > 1
    loss, lr, evals, windows, notes = [], [], [], set(), []
    for k, _run, data in curves:
        name = "AB"[k] + ": " if tag else ""
        train = data["train"]
        window = data["logging_steps"] or 1
        finite = [r for r in train if math.isfinite(r["loss"])]
        if len(finite) < len(train):
            first = next(r["step"] for r in train if not math.isfinite(r["loss"]))
            notes.append(f"{name}the training loss diverged (not finite) at {len(train) - len(finite)} of "
                         f"{len(train)} logged steps, the first at step {first}: those are not drawn")
        if finite:
            windows.add(window)
            loss.append({"name": f"{name}loss", "color": COLORS[k],
                         "points": [(r["step"], r["loss"]) for r in finite],
                         "step_from": max(0, finite[0]["step"] - window), "markers": len(finite) <= 60})
            if any(r["learning_rate"] is not None for r in train):
                lr.append({"name": f"{name}learning rate", "color": COLORS[k], "markers": False,
                           "points": [(r["step"], r["learning_rate"]) for r in train if r["learning_rate"] is not None]})
        for key, label, dash in (("f1", "F1", "2 3"), ("em", "EM", "6 3")):  # broken lines: measured at the dots only
            pts = [(e["step"], e[key]) for e in data["evals"] if e[key] is not None]
            if pts:
                labels = [(x, y, f"{y:.1f}") for x, y in (pts[-1:] if tag else pts)]
                evals.append({"name": f"{name}{label}", "color": COLORS[k] if tag else COLORS[1 if key == "f1" else 2],
                              "dash": dash, "points": pts, "labels": labels if key == "f1" else []})
    charts = []
    if loss:
        mean = f" (mean of each {windows.pop()}-step window)" if len(windows) == 1 else " (mean per logging window)"
        charts.append(svg_chart(loss, title="Training loss" + mean, y_label="loss"))
    if lr:
        charts.append(svg_chart(lr, title="Learning rate", y_label="learning rate"))
    if evals:
        charts.append(svg_chart(evals, title="Evaluation (step 0: before training)", y_label="%", y_range=(0, 100)))
    warnings = "".join(f'<p class="warn">{html.escape(n[0].upper() + n[1:])}.</p>' for n in notes)
    return warnings + '<div class="charts">' + "".join(charts) + "</div>"


def threshold_curve(run: Run) -> dict | None:
    """SQuAD v2.0: F1 (%) if "no answer" were given for every question whose null odds exceed the
    threshold, at every threshold: {"thresholds", "f1", "best", "best_f1", "chosen", "chosen_f1"}.
    Each question's F1 when answered is its best span's (span_predictions.json), scored with the
    run's metric; abstaining scores 1 on unanswerable questions, 0 elsewhere. "f1"[k] is the F1 when
    the k questions of lowest odds ("thresholds", ascending) answer; "best" is a threshold giving the
    best F1 a threshold reaches (`metrics.reachable_best`), "chosen" the run's own."""
    if run.metric != "squad_v2" or not run.null_odds or not run.spans:
        return None
    ex = run.examples
    present = [q for q in ex.ids if q in run.spans and q in run.null_odds]
    if not present:
        return None
    _, f1_answer = question_scores("squad_v2", run.spans, {q: g for q, g in zip(ex.ids, ex.answer_texts)})
    position = {q: i for i, q in enumerate(ex.ids)}
    rows = np.array([position[q] for q in present])
    odds = np.array([run.null_odds[q] for q in present], dtype=np.float64)
    abstain = np.array([0.0 if ex.answer_texts[i] else 1.0 for i in range(len(ex))])
    order = np.argsort(odds, kind="stable")
    gain = (f1_answer - abstain)[rows][order]
    # a question without a prediction scores 0 at every threshold (as jaxqa.scoring.metrics counts it)
    totals = (abstain[rows].sum() + np.concatenate([[0.0], np.cumsum(gain)])) / len(ex) * 100
    thresholds = odds[order]
    best, best_threshold = metrics.reachable_best(totals, thresholds)  # never inside a run of equal odds
    chosen = run.threshold
    chosen_f1 = float(totals[np.searchsorted(thresholds, chosen, side="right")])
    return {"thresholds": thresholds.tolist(), "f1": totals.tolist(), "best": best_threshold,
            "best_f1": float(totals[best]), "chosen": chosen, "chosen_f1": chosen_f1}


def _v2_section(run: Run, tag: str = "") -> str:
    ex = run.examples
    has_answer = np.array([bool(g) for g in ex.answer_texts])
    answered = np.array([bool(metrics.normalize_answer(run.predictions.get(q, "") or "")) for q in ex.ids])
    right = run.em == 1
    cells = {(h, a): int((has_answer == h)[answered == a].sum()) for h in (True, False) for a in (True, False)}
    right_answered = int((has_answer & answered & right).sum())
    parts = [f'<div class="v2"><table class="conf"><caption>HasAns / NoAns{tag}: what the model did '
             f'(threshold {run.threshold:g})</caption><tr><th></th><th>answered</th><th>abstained ("")</th>'
             '<th>total</th></tr>']
    for h, label in ((True, "has an answer (HasAns)"), (False, "no answer (NoAns)")):
        total = cells[(h, True)] + cells[(h, False)]
        a_note = f' <span class="sub">({right_answered} exact)</span>' if h else ' <span class="sub">(all wrong)</span>'
        b_note = ' <span class="sub">(all wrong)</span>' if h else ' <span class="sub">(all right)</span>'
        parts.append(f'<tr><th>{label}</th><td class="{"ok" if h else "bad"}">{cells[(h, True)]}{a_note}</td>'
                     f'<td class="{"bad" if h else "ok"}">{cells[(h, False)]}{b_note}</td><td>{total}</td></tr>')
    parts.append(f"<tr><th>total</th><td>{int(answered.sum())}</td><td>{int((~answered).sum())}</td>"
                 f"<td>{len(ex)}</td></tr></table>")
    curve = threshold_curve(run)
    if curve:
        xs, ys = np.array(curve["thresholds"]), np.array(curve["f1"][1:])
        keep = np.abs(xs) < 1e5  # odds are clipped to +-1e6 where a question has no span at all
        lo, hi = np.quantile(xs[keep], [0.01, 0.99]) if keep.any() else (-1, 1)
        lo, hi = min(lo, curve["chosen"], curve["best"]) - 0.5, max(hi, curve["chosen"], curve["best"]) + 0.5
        sel = keep & (xs >= lo) & (xs <= hi)
        stride = max(1, int(sel.sum() // 400))
        pts = list(zip(xs[sel][::stride].tolist(), ys[sel][::stride].tolist()))
        marks = [{"x": curve["chosen"], "label": f"chosen {curve['chosen']:.2f}: F1 {curve['chosen_f1']:.1f}",
                  "color": "#555"},
                 {"x": curve["best"], "label": f"best {curve['best']:.2f}: F1 {curve['best_f1']:.1f}",
                  "color": "#2e9e4f", "row": 1}]
        parts.append(svg_chart([{"name": "F1 if abstaining above the threshold", "points": pts, "color": COLORS[0],
                                 "markers": False}], title=f"F1 vs no-answer threshold{tag}", y_label="F1 (%)",
                               x_label="threshold on null odds (null score − best span score)", y_range=(0, 100),
                               marks=marks, width=520, height=250))
    else:
        parts.append('<p class="note">No null_odds.json / span_predictions.json: no threshold curve.</p>')
    parts.append("</div>")
    return "".join(parts)


# --- the page's static parts ------------------------------------------------------------------

def _fmt(value, digits=2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else html.escape(
        str(value))


def _headline(run: Run) -> str:
    """Metric cards: before training -> after, from the results files."""
    after = run.results or {}
    before = run.before if run.prefix == "" else None
    keys = [k for k, v in after.items() if isinstance(v, float) and k != "eval_seconds" and not k.endswith("_thresh")]
    if not keys:  # a bare predictions file: the page's own means
        after = {"exact_match": 100 * float(run.em.mean()), "f1": 100 * float(run.f1.mean())}
        keys = list(after)
    main = [k for k in ("f1", "exact_match", "exact") if k in keys]
    cards = []
    for k in main + [k for k in keys if k not in main]:
        b = before.get(k) if before else None
        delta = (f'<span class="delta{" neg" if after[k] < b else ""}">{after[k] - b:+.2f}</span>'
                 if isinstance(b, (int, float)) else "")
        was = f'<span class="was">before training {b:.2f}</span>' if isinstance(b, (int, float)) else ""
        cards.append(f'<div class="card{" big" if k in main else ""}"><div class="k">{html.escape(k)}</div>'
                     f'<div class="v">{after[k]:.2f}{delta}</div>{was}</div>')
    kept = kept_note(after)
    note = (f'<p class="note">{html.escape(kept[0].upper() + kept[1:])}: --load_best_model_at_end took the model back '
            "to that step, and these are its metrics.</p>" if kept else "")
    return note + '<div class="cards">' + "".join(cards) + "</div>"


def _check_line(run: Run) -> str:
    """Do the page's per-question scores average to the run's results? Say so either way."""
    results = run.results or {}
    em_key = "exact" if run.metric == "squad_v2" else "exact_match"
    if not {"f1", em_key} <= set(results):
        return ""
    page_f1, page_em = 100 * float(run.f1.mean()), 100 * float(run.em.mean())
    ok = abs(page_f1 - results["f1"]) < 1e-6 and abs(page_em - results[em_key]) < 1e-6
    if ok:
        return (f'<p class="note">Per-question scores below average to the results file exactly (F1 {page_f1:.2f}, '
                f'EM {page_em:.2f}; metric <code>{run.metric}</code>).</p>')
    return (f'<p class="warn">The per-question scores average to F1 {page_f1:.2f} / EM {page_em:.2f}, the results '
            f'file says F1 {results["f1"]:.2f} / EM {results[em_key]:.2f}: the predictions or the data differ from '
            'the evaluation that wrote it.</p>')


def _identity_rows(run: Run) -> dict[str, str]:
    c, ex = run.config, run.examples
    results = run.results or {}
    model = c.get("model_name_or_path") or (f"random init ({c['config_name']})" if c.get("config_name") else
                                            "packaged MiniLM-L6-H384 (default)" if c else "?")
    rows = {"data": f"{run.data_path} — {len(ex)} questions, {len(set(ex.contexts))} contexts"
                    + (f", {int(ex.is_impossible.sum())} unanswerable" if ex.is_impossible.any() else ""),
            "metric": run.metric, "model": model, "predictions": run.name}
    if c:
        rows["settings"] = ", ".join(f"{k} {c[k]}" for k in (
            "seed", "max_seq_length", "doc_stride", "learning_rate", "num_train_epochs", "per_device_train_batch_size",
            "dtype", "attention_dropout") if k in c)
    steps = results.get("step")
    if isinstance(steps, int):
        rows["step"] = f"{steps}" + (f" (windows: {results.get('num_features')})" if "num_features" in results else "")
        kept = kept_note(results)
        rows["step"] += f"; {kept}" if kept else ""
    times = []
    if run.goodput:
        g = run.goodput
        times.append(f"run {g.get('wall_seconds', 0):.1f}s wall (train steps {g.get('train_steps', 0):.1f}s, "
                     f"compile {g.get('compile', 0):.1f}s, eval {g.get('eval', 0):.1f}s)")
    if "eval_seconds" in results:
        times.append(f"this evaluation {results['eval_seconds']:.1f}s")
    if run.before and "eval_seconds" in run.before and run.prefix == "":
        times.append(f"before training {run.before['eval_seconds']:.1f}s")
    if times:
        rows["time"] = "; ".join(times)
    results_file = run.directory / ("eval_results.json" if run.prefix == "" else f"{run.prefix}results.json")
    if run.prefix is not None and results_file.is_file():
        rows["written"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(results_file.stat().st_mtime))
    return rows


def _identity(runs: list[Run]) -> str:
    """Data, model, settings, time: one column per run (compare: what differs is bold)."""
    tables = [_identity_rows(r) for r in runs]
    keys = list(dict.fromkeys(k for t in tables for k in t))
    esc = html.escape
    if len(runs) == 1:
        return '<table class="ident">' + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                                                 for k, v in tables[0].items()) + "</table>"
    rows = []
    for k in keys:
        values = [t.get(k, "") for t in tables]
        differ = ' class="differs"' if k not in ("predictions", "written", "time") and len(set(values)) > 1 else ""
        rows.append(f"<tr{differ}><th>{esc(k)}</th>" + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr>")
    return ('<table class="ident two"><tr><th></th><th>A</th><th>B</th></tr>' + "".join(rows) + "</table>")


MIN_CATEGORY_CI = 10  # fewer questions in a category: no interval (a bootstrap of 1-9 values says little)


def _breakdowns(runs: list[Run], groups: list[dict]) -> str:
    """One table per breakdown: count, EM, F1 per category (compare: both runs, the difference and
    its paired-bootstrap interval). A row filters the question table to its category."""
    out = ['<div class="breakdowns">']
    compare = len(runs) > 1
    for g_i, g in enumerate(groups):
        of = np.array(g["of"])
        head = ("<th>n</th><th>F1 A</th><th>F1 B</th><th>Δ F1 (95% CI)</th><th>EM A</th><th>EM B</th>" if compare
                else "<th>n</th><th>EM</th><th>F1</th><th></th>")
        rows = []
        for label in g["labels"]:
            sel = of == label
            n = int(sel.sum())
            if compare:
                a, b = runs[0], runs[1]
                ci = paired_bootstrap(a.f1[sel], b.f1[sel])
                if n >= MIN_CATEGORY_CI:
                    sig = "" if ci["low"] <= 0 <= ci["high"] else (" up" if ci["delta"] > 0 else " down")
                    interval = f' [{100 * ci["low"]:+.1f}, {100 * ci["high"]:+.1f}]'
                else:
                    sig, interval = "", ' <span class="sub">(n &lt; 10)</span>'
                rows.append(f'<tr data-g="{g_i}" data-l="{html.escape(label)}"><th>{html.escape(label)}</th>'
                            f"<td>{n}</td><td>{100 * a.f1[sel].mean():.1f}</td><td>{100 * b.f1[sel].mean():.1f}</td>"
                            f'<td class="d{sig}">{100 * ci["delta"]:+.1f}{interval}'
                            f"</td><td>{100 * a.em[sel].mean():.1f}</td><td>{100 * b.em[sel].mean():.1f}</td></tr>")
            else:
                run = runs[0]
                f1 = 100 * run.f1[sel].mean()
                rows.append(f'<tr data-g="{g_i}" data-l="{html.escape(label)}"><th>{html.escape(label)}</th>'
                            f"<td>{n}</td><td>{100 * run.em[sel].mean():.1f}</td><td>{f1:.1f}</td>"
                            f'<td class="bar"><span style="width:{f1:.1f}%"></span></td></tr>')
        out.append(f'<table class="bd"><caption>{html.escape(g["title"])}</caption><tr><th></th>{head}</tr>'
                   + "".join(rows) + "</table>")
    out.append("</div>")
    if compare:
        out.append(f'<p class="note">Intervals: paired bootstrap within each category (none under {MIN_CATEGORY_CI} '
                   "questions). With many categories, one interval in twenty excludes 0 by chance alone.</p>")
    return "".join(out)


def _compare_head(runs: list[Run], result: dict) -> str:
    from jaxqa.report.compare import differing_settings, verdict

    o = result["outcomes"]
    rows = "".join(
        f"<tr><th>{name}</th><td>{e['a']:.2f}</td><td>{e['b']:.2f}</td>"
        f'<td class="d{"" if e["low"] <= 0 <= e["high"] else (" up" if e["delta"] > 0 else " down")}">{e["delta"]:+.2f}'
        f"</td><td>[{e['low']:+.2f}, {e['high']:+.2f}]</td></tr>"
        for name, e in (("EM", result["exact_match"]), ("F1", result["f1"])))
    n = max(result["n"], 1)
    bar = "".join(f'<span class="o-{k}" style="width:{100 * o[k] / n:.2f}%" title="{label}: {o[k]}"></span>'
                  for k, label in (("both_right", "both right"), ("fixed", "fixed"), ("broken", "broken"),
                                   ("both_wrong", "both wrong")))
    return (f'<table class="ident"><tr><th>A</th><td>{html.escape(runs[0].name)}</td></tr><tr><th>B</th><td>'
            f"{html.escape(runs[1].name)}</td></tr></table>"
            f'<table class="cmp"><tr><th></th><th>A</th><th>B</th><th>B − A</th><th>95% CI (paired bootstrap, '
            f"{result['num_resamples']} resamples over {result['n']} questions)</th></tr>{rows}</table>"
            f'<p class="verdict">{html.escape(verdict(result["f1"], "F1", differing_settings(runs[0].config, runs[1].config)))}.</p>'
            f'<div class="obar">{bar}</div><p class="olegend"><span class="o-both_right"></span>both right '
            f'{o["both_right"]} <span class="o-fixed"></span>fixed (A wrong, B right) {o["fixed"]} '
            f'<span class="o-broken"></span>broken (A right, B wrong) {o["broken"]} <span class="o-both_wrong"></span>'
            f'both wrong {o["both_wrong"]} — right = exact match</p>')


def _before_after_line(run: Run) -> str:
    """Single page: was fine-tuning's change real? (before_training_predictions.json beside it)"""
    if run.prefix != "" or not (run.directory / "before_training_predictions.json").is_file():
        return ""
    before = _read_json(run.directory / "before_training_predictions.json")
    em_b, f1_b = question_scores(run.metric, before, run.gold)
    result = compare_scores(em_b, f1_b, run.em, run.f1)
    e, o = result["f1"], result["outcomes"]
    return (f'<p class="note">Fine-tuning changed F1 by {e["delta"]:+.2f} points (95% CI [{e["low"]:+.2f}, '
            f'{e["high"]:+.2f}], paired bootstrap over questions); {o["fixed"]} questions fixed, {o["broken"]} broken. '
            f"Compare any two runs: <code>python -m jaxqa compare RUN_A RUN_B</code>.</p>")


def render(runs: list[Run], *, result: dict | None = None, title: str | None = None) -> str:
    """The whole page as one HTML string (one run, or two in compare mode)."""
    groups = _groups(runs[0])
    data = _page_data(runs, groups)
    compare = len(runs) > 1
    first = runs[0]
    title = title or ("jaxqa compare: " + " vs ".join(Path(r.name).name or r.name for r in runs) if compare
                      else f"jaxqa report: {first.directory.resolve().name}")
    body = [f"<header><h1>{html.escape(title)}</h1><nav><a href='#metrics'>metrics</a> <a href='#curves'>curves</a>"
            f" <a href='#breakdowns'>breakdowns</a>" + (" <a href='#v2'>no-answer</a>" if first.metric == "squad_v2"
                                                         else "") + " <a href='#questions'>questions</a></nav></header>"]
    body.append('<section id="metrics"><h2>Metrics</h2>')
    body += [f'<p class="warn">{html.escape(note[0].upper() + note[1:])}.</p>' for note in missing_notes(runs)]
    if compare:
        body.append(_compare_head(runs, result or compare_scores(runs[0].em, runs[0].f1, runs[1].em, runs[1].f1)))
    else:
        body.append(_headline(first) + _check_line(first) + _before_after_line(first))
    body.append(_identity(runs) + "</section>")
    body.append('<section id="curves"><h2>Training curves</h2>' + _curve_charts(runs) + "</section>")
    body.append('<section id="breakdowns"><h2>Where it fails</h2><p class="note">EM and F1 (%) per category, with '
                "the number of questions; click a row to list its questions.</p>" + _breakdowns(runs, groups)
                + "</section>")
    if first.metric == "squad_v2":
        body.append('<section id="v2"><h2>Answer or abstain (SQuAD v2.0)</h2>'
                    + "".join(_v2_section(r, f" ({'AB'[k]})" if compare else "") for k, r in enumerate(runs))
                    + "</section>")
    body.append('<section id="questions"><h2>Questions</h2><div id="controls"></div><div id="table"></div>'
                "</section>")
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return (f'<!DOCTYPE html><html lang="{data["lang"]}"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<style>{_CSS}</style></head><body>{''.join(body)}"
            f'<script type="application/json" id="data">{payload}</script><script>{_JS}</script></body></html>')


def write_report(output_dir: str | Path, split: str = "eval", *, windows: dict | None = None,
                 examples: Examples | None = None, metric: str | None = None, config: dict | None = None,
                 out: str | Path | None = None) -> Path:
    """Write OUTPUT_DIR/eval_report.html (split "eval"; `{split}_report.html` otherwise) from the
    run's files and return its path. `windows` ({id: number of windows}) spares re-tokenising;
    `examples` (the evaluated ones), `metric` and `config` (the settings, as run_config.json holds
    them) spare reading the data again and guessing."""
    t0 = time.perf_counter()
    run = load_run(output_dir, split=split, windows=windows, examples=examples, metric=metric, config=config)
    path = Path(out) if out else Path(output_dir) / (REPORT_NAME if split == "eval" else f"{split}_report.html")
    for note in missing_notes([run]):
        log.warning("report: %s", note)
    atomic.write_text(path, render([run]))
    size = path.stat().st_size
    log.info("report: %s (%d questions, %s, %.1fs)", path, len(run.examples),
             f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB", time.perf_counter() - t0)
    return path


def write_compare(run_a: Run | str | Path, run_b: Run | str | Path, out_path: str | Path, *,
                  data: str | Path | None = None, result: dict | None = None) -> Path:
    """Write the compare page of two runs (Run objects, output directories or predictions files on
    the same questions) to `out_path` and return it."""
    if not isinstance(run_a, Run):
        run_a = load_run(run_a, data=data)
    if not isinstance(run_b, Run):
        from jaxqa.report.compare import _names_its_data

        run_b = load_run(run_b, data=data or (None if _names_its_data(str(run_b)) else run_a.data_path),
                         metric=run_a.metric)
    if run_a.examples.ids != run_b.examples.ids:
        raise DataError(f"{run_a.name} and {run_b.name} were not evaluated on the same questions")
    atomic.write_text(out_path, render([run_a, run_b], result=result))
    return Path(out_path)


def main(argv: list[str] | None = None) -> int:
    """`python -m jaxqa report OUTPUT_DIR [--split eval] [--out FILE]`."""
    parser = argparse.ArgumentParser(prog="python -m jaxqa report", description="Write eval_report.html: error "
                                     "analysis of a run's evaluation, one self-contained page.")
    parser.add_argument("output_dir", help="a jaxqa output directory (with predictions.json)")
    parser.add_argument("--split", default="eval", choices=["eval", "before_training"],
                        help="which evaluation (default: eval, the final one)")
    parser.add_argument("--out", help="where to write the page (default: OUTPUT_DIR/eval_report.html)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        write_report(args.output_dir, args.split, out=args.out)  # its log line names the page: said once
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    return 0


_CSS = r"""
:root{--ok:#2e9e4f;--bad:#c0392b;--a:#e67e00;--b:#1f6fd1;--gold:#bfe8c6;--line:#ddd;--mute:#666}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",
"PingFang SC","Microsoft YaHei",sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#20303f;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0;font-weight:600}header nav a{color:#cfe3ff;margin-right:12px;text-decoration:none}
section{max-width:1320px;margin:0 auto;padding:6px 24px 10px}h2{font-size:16px;margin:18px 0 8px;border-bottom:1px solid
var(--line);padding-bottom:4px}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{background:#fff;border:1px solid var(--line);border-radius:6px;
padding:6px 12px;min-width:120px}.card .k{color:var(--mute);font-size:12px}.card .v{font-size:17px;font-weight:600}
.card.big .v{font-size:26px}.card .delta{font-size:13px;color:var(--ok);margin-left:6px}.card .delta.neg{color:var(--bad)}.card .was{font-size:12px;
color:var(--mute)}
.note{color:var(--mute);margin:6px 0}.warn{color:#fff;background:var(--bad);padding:6px 10px;border-radius:4px}
table{border-collapse:collapse}.ident{margin-top:8px}.ident th{text-align:left;color:var(--mute);font-weight:500;
padding:2px 12px 2px 0;vertical-align:top}.ident td{padding:2px 14px 2px 0;overflow-wrap:anywhere;vertical-align:top}.ident.two td{max-width:560px}
.ident tr.differs td{font-weight:600;background:#fff6d8}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid var(--line);border-radius:6px}
.chart .grid{stroke:#eee}.chart .axis{stroke:#999}.chart .tk{font-size:10px;fill:#555}.chart .al{font-size:11px;
fill:#444}.chart .ct{font-size:13px;font-weight:600;fill:#222}.chart .lg{font-size:10.5px;fill:#333}
.breakdowns{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}.bd{background:#fff;border:1px solid var(--line)}
.bd caption{text-align:left;font-weight:600;padding:2px 0 4px;font-size:13px}.bd th,.bd td{padding:2px 8px;
text-align:right;font-variant-numeric:tabular-nums}.bd tr[data-g]{cursor:pointer}.bd tr[data-g]:hover{background:#eef5ff}
.bd th:first-child{text-align:left;font-weight:500}.bd .bar{width:90px}.bd .bar span{display:block;height:9px;
background:#f0a64a;border-radius:2px}
.d.up{color:var(--ok);font-weight:600}.d.down{color:var(--bad);font-weight:600}
.cmp th,.cmp td{padding:3px 12px;text-align:right;font-variant-numeric:tabular-nums}.cmp{background:#fff;
border:1px solid var(--line);margin:8px 0}.verdict{font-weight:600}
.obar{display:flex;height:16px;width:100%;max-width:700px;border-radius:3px;overflow:hidden;border:1px solid #ccc}
.o-both_right{background:#9bd3a8}.o-fixed{background:var(--ok)}.o-broken{background:var(--bad)}
.o-both_wrong{background:#ddd}.olegend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
.v2{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start;margin-bottom:8px}.conf{background:#fff;
border:1px solid var(--line)}.conf caption{text-align:left;font-weight:600;font-size:13px}.conf th,.conf td{
padding:4px 10px;border:1px solid #eee;text-align:right}.conf td.ok{background:#e7f6ea}.conf td.bad{background:#fbeaea}
.sub{color:var(--mute);font-size:11px}
#controls{display:flex;gap:10px;flex-wrap:wrap;align-items:center;margin-bottom:6px}#controls input[type=search]{
width:260px;padding:4px 6px}#controls select{padding:3px}#count{color:var(--mute)}
#table{background:#fff;border:1px solid var(--line)}#vp{max-height:76vh;overflow:auto;position:relative;
overscroll-behavior:contain}#rows{position:relative}
.qh,.qrow{display:grid;grid-template-columns:var(--cols);gap:0 8px;padding:0 8px;align-items:center}
.qh{position:sticky;top:0;background:#f0f2f5;font-weight:600;border-bottom:1px solid #ccc;z-index:2;height:30px}
.qh span{cursor:pointer;user-select:none;white-space:nowrap}.qh span.sorted::after{content:" \25B2"}
.qh span.sorted.desc::after{content:" \25BC"}
.qrow{height:28px;border-bottom:1px solid #f0f0f0;cursor:pointer;border-left:3px solid transparent}.qrow:hover{background:#f6f9ff}
.qrow span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.qrow.right{border-left-color:var(--ok)}
.qrow.part{border-left-color:#e0b000}.qrow.wrong{border-left-color:var(--bad)}.qrow.open{background:#eef5ff}
.num{text-align:right;font-variant-numeric:tabular-nums}.mute{color:var(--mute)}
.qrow .out-fixed{color:var(--ok);font-weight:600}.qrow .out-broken{color:var(--bad);font-weight:600}
.detail{padding:10px 14px 14px 20px;background:#fbfcfe;border-bottom:2px solid #cdd9ea}
.detail .meta{margin-bottom:6px}.detail .meta b{font-weight:600}.ctx{line-height:1.9;font-size:15px;background:#fff;
border:1px solid #e4e4e4;padding:8px 10px;border-radius:4px;white-space:pre-wrap;max-height:340px;overflow:auto}
.ctx .g{background:var(--gold);border-radius:2px}.ctx .pa{box-shadow:inset 0 -3px 0 var(--a);background:#ffe9cc}
.ctx .g.pa{background:#d9e98a}.ctx .pb{box-shadow:inset 0 3px 0 var(--b)}.ctx .pa.pb{box-shadow:inset 0 -3px 0
var(--a),inset 0 3px 0 var(--b)}.ctx .pb:not(.pa):not(.g){background:#dceaff}.ctx .alt{outline:2px dashed #8e44ad}
.legend{font-size:12px;color:var(--mute);margin:4px 0}.legend i{font-style:normal;padding:0 4px;margin:0 4px}
.nbest{font-size:12.5px;margin-top:6px;display:inline-table;margin-right:18px;vertical-align:top}.nbest caption{
text-align:left;font-weight:600}.nbest td,.nbest th{padding:1px 8px;text-align:left}.nbest tr:hover{background:#f3ecfa;
cursor:default}.nbest .num{text-align:right}
"""

_JS = r"""
(function(){
'use strict';
var D=JSON.parse(document.getElementById('data').textContent);
var Q=D.questions,C=D.contexts,CMP=D.mode==='compare',NR=D.runs.length,G=D.groups,N=Q.length,ROW=28;
var esc=function(s){return String(s).replace(/[&<>"]/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});};
var label=function(q,gi){return G[gi].labels[q.k[gi]];};
function outcome(q){var a=q.r[0].em===1,b=q.r[1].em===1;return a&&b?'both right':(!a&&b?'fixed':(a&&!b?'broken':'both wrong'));}
function ptext(r){return r.p===null||r.p===undefined?'(missing)':(r.p===''?'(no answer)':r.p);}
function conf(r){return r.nb&&r.nb.length?r.nb[0][0]:-1;}
function alt(q,a){return a.length>3?C[q.c].slice(a[2],a[3]):a[2];}
// columns: [label, sort key, cell html, css class]
var cols=[['#','idx',function(q,i){return i+1;},'num mute'],['id','id',function(q){return esc(q.id);},'mute'],
 ['question','q',function(q){return esc(q.q);},''],['type','type',function(q){return esc(label(q,0));},''],
 ['gold','gold',function(q){return esc(q.g.length?q.g[0][0]:'(no answer)');},'']];
if(!CMP){
 cols.push(['prediction','p',function(q){return esc(ptext(q.r[0]));},''],['EM','em',function(q){return q.r[0].em;},'num'],
  ['F1','f1',function(q){return q.r[0].f1.toFixed(2);},'num'],['p','conf',function(q){var c=conf(q.r[0]);return c<0?'':c.toFixed(2);},'num']);
}else{
 cols.push(['prediction A','p',function(q){return esc(ptext(q.r[0]));},''],['prediction B','p2',function(q){return esc(ptext(q.r[1]));},''],
  ['F1 A','f1',function(q){return q.r[0].f1.toFixed(2);},'num'],['F1 B','f1b',function(q){return q.r[1].f1.toFixed(2);},'num'],
  ['Δ F1','d',function(q){var d=q.r[1].f1-q.r[0].f1;return (d>0?'+':'')+d.toFixed(2);},'num'],
  ['outcome','out',function(q){var o=outcome(q);return '<b class="out-'+o.replace(' ','_')+'">'+o+'</b>';},'']);
}
var widths=CMP?'3.2em 6em minmax(10em,3fr) 5.5em minmax(6em,1.4fr) minmax(6em,1.4fr) minmax(6em,1.4fr) 3.4em 3.4em 3.6em 6.5em'
 :'3.6em 7em minmax(12em,3fr) 6em minmax(7em,1.5fr) minmax(7em,1.5fr) 2.4em 3.4em 3em';
var keyf={idx:function(i){return i;},id:function(i){return Q[i].id;},q:function(i){return Q[i].q.toLowerCase();},
 type:function(i){return Q[i].k[0];},gold:function(i){return Q[i].g.length?Q[i].g[0][0].toLowerCase():'';},
 p:function(i){return (Q[i].r[0].p||'').toLowerCase();},p2:function(i){return (Q[i].r[1].p||'').toLowerCase();},
 em:function(i){return Q[i].r[0].em;},f1:function(i){return Q[i].r[0].f1;},f1b:function(i){return Q[i].r[1].f1;},
 d:function(i){return Q[i].r[1].f1-Q[i].r[0].f1;},conf:function(i){return conf(Q[i].r[0]);},out:function(i){return outcome(Q[i]);}};
var filters=CMP?[['all','all questions'],['changed','F1 changed'],['fixed','fixed (A wrong, B right)'],['broken','broken (A right, B wrong)'],
 ['both wrong','both wrong'],['both right','both right']]
 :[['all','all questions'],['wrong','wrong only (EM 0)'],['zero','F1 0'],['partial','partly right (0 < F1 < 1)'],['right','right (EM 1)']];
function passes(q,f){
 if(f==='all')return true;var r=q.r[0];
 if(CMP){if(f==='changed')return q.r[0].f1!==q.r[1].f1;return outcome(q)===f;}
 if(f==='wrong')return r.em===0;if(f==='zero')return r.f1===0;if(f==='partial')return r.f1>0&&r.f1<1;return r.em===1;}
// controls
var ctl=document.getElementById('controls');
var opts=function(list){return list.map(function(o){return '<option value="'+esc(o[0])+'">'+esc(o[1])+'</option>';}).join('');};
var gsel='<option value="">any category</option>'+G.map(function(g,gi){return '<optgroup label="'+esc(g.title)+'">'+
 g.labels.map(function(l,li){return '<option value="'+gi+'|'+li+'">'+esc(l)+'</option>';}).join('')+'</optgroup>';}).join('');
ctl.innerHTML='<input type="search" id="search" placeholder="search question, id, answer, prediction…">'+
 '<select id="filter">'+opts(filters)+'</select><select id="type"><option value="">any type</option>'+
 opts(G[0].labels.map(function(l,li){return [String(li),l];}))+'</select><select id="group">'+gsel+'</select><span id="count"></span>';
// the table: a header and a scroll box that holds only the rows in view (virtualised), between two spacers
var tbl=document.getElementById('table');tbl.style.setProperty('--cols',widths);
tbl.innerHTML='<div id="vp"><div class="qh" id="qh">'+cols.map(function(c){return '<span data-k="'+c[1]+'" class="'+c[3]+'">'+c[0]+'</span>';}).join('')+
 '</div><div id="rows"></div></div>';
var vp=document.getElementById('vp'),rowsEl=document.getElementById('rows');
function cls(q){var r=q.r[NR-1];return r.em===1?'right':(r.f1>0?'part':'wrong');}
var rowHtml=new Array(N);
function row(i){
 if(rowHtml[i]===undefined){var q=Q[i],cells='';
  for(var c=0;c<cols.length;c++){cells+='<span class="'+cols[c][3]+'">'+cols[c][2](q,i)+'</span>';}
  rowHtml[i]='" data-i="'+i+'" data-id="'+esc(q.id)+'" tabindex="0">'+cells+'</div>';}
 return '<div class="qrow '+cls(Q[i])+(open[i]?' open':'')+rowHtml[i];
}
var order=[],view=[],open={},dh={},offs=new Float64Array(1),sortKey='idx',desc=false;
for(var i0=0;i0<N;i0++)order.push(i0);
var hay=null;  // search text per question, built on first search
function haystack(){if(!hay)hay=Q.map(function(q){return (q.id+'\u0001'+q.q+'\u0001'+q.g.map(function(g){return g[0];}).join('\u0001')+'\u0001'+
 q.r.map(function(r){return r.p||'';}).join('\u0001')).toLowerCase();});return hay;}
function layout(){
 offs=new Float64Array(view.length+1);
 for(var k=0;k<view.length;k++){var i=view[k];offs[k+1]=offs[k]+ROW+(open[i]?(dh[i]||320):0);}
 rowsEl.style.height=offs[view.length]+'px';
}
function at(y){var lo=0,hi=view.length;while(lo<hi){var m=(lo+hi)>>1;if(offs[m+1]<=y)lo=m+1;else hi=m;}return lo;}
var shown=[0,-1];
function render(){
 var y=vp.scrollTop-rowsEl.offsetTop,h=vp.clientHeight||600;
 var k0=Math.max(0,at(y-400)),k1=Math.min(view.length-1,at(y+h+400));
 var html='<div class="spacer" style="height:'+offs[k0]+'px"></div>';
 for(var k=k0;k<=k1;k++)html+=row(view[k]);
 rowsEl.innerHTML=html;shown=[k0,k1];
 var changed=false;
 for(var k2=k0;k2<=k1;k2++){var i=view[k2];if(!open[i])continue;
  rowsEl.querySelector('.qrow[data-i="'+i+'"]').after(open[i]);
  var hh=open[i].offsetHeight;if(hh!==dh[i]){dh[i]=hh;changed=true;}}
 if(changed){layout();rowsEl.firstChild.style.height=offs[k0]+'px';}
}
var pending=false;
vp.addEventListener('scroll',function(){if(pending)return;pending=true;requestAnimationFrame(function(){pending=false;render();});});
function apply(){
 var s=document.getElementById('search').value.trim().toLowerCase(),f=document.getElementById('filter').value,
  t=document.getElementById('type').value,gv=document.getElementById('group').value,gi=-1,gl=-1,hs=s?haystack():null;
 if(gv){var cut=gv.indexOf('|');gi=+gv.slice(0,cut);gl=+gv.slice(cut+1);}
 var tt=t===''?-1:+t;
 view=order.filter(function(i){var q=Q[i];return passes(q,f)&&(tt<0||q.k[0]===tt)&&(gi<0||q.k[gi]===gl)&&(!s||hs[i].indexOf(s)>=0);});
 document.getElementById('count').textContent='showing '+view.length+' of '+N+' questions';
 rowsEl.setAttribute('data-shown',view.length);
 layout();vp.scrollTop=0;render();
}
function sortBy(k){
 if(k===sortKey){desc=!desc;}else{sortKey=k;desc=false;}
 var f=keyf[k],vals=Q.map(function(_,i){return f(i);});
 order.sort(function(a,b){var x=vals[a],y=vals[b];var c=x<y?-1:(x>y?1:a-b);return desc&&x!==y?-c:c;});
 Array.prototype.forEach.call(document.querySelectorAll('#qh span'),function(el){
  el.classList.toggle('sorted',el.getAttribute('data-k')===sortKey);el.classList.toggle('desc',el.getAttribute('data-k')===sortKey&&desc);});
 apply();
}
// the context with gold answers and predictions marked, as segments between every span boundary
function marked(q,altSpan){
 var ctx=C[q.c],spans=[];
 q.g.forEach(function(g){if(g.length>2)spans.push([g[1],g[2],'g']);});
 q.r.forEach(function(r,k){if(r.s)spans.push([r.s[0],r.s[1],k?'pb':'pa']);});
 if(altSpan)spans.push([altSpan[0],altSpan[1],'alt']);
 var cuts=[0,ctx.length];spans.forEach(function(s){cuts.push(s[0],s[1]);});
 cuts=cuts.filter(function(v,i,a){return v>=0&&v<=ctx.length&&a.indexOf(v)===i;}).sort(function(a,b){return a-b;});
 var out='';
 for(var i=0;i+1<cuts.length;i++){var a=cuts[i],b=cuts[i+1],cl=[];
  spans.forEach(function(s){if(s[0]<=a&&b<=s[1]&&cl.indexOf(s[2])<0)cl.push(s[2]);});
  var t=esc(ctx.slice(a,b));out+=cl.length?'<span class="'+cl.join(' ')+'">'+t+'</span>':t;}
 return out;
}
function nbestTable(q,k){
 var r=q.r[k];if(!r.nb)return '';
 return '<table class="nbest" data-run="'+k+'"><caption>n-best'+(CMP?' '+'AB'[k]:'')+'</caption><tr><th>#</th><th>text</th><th class="num">prob</th><th class="num">F1</th></tr>'+
  r.nb.map(function(a,j){var t=alt(q,a);return '<tr data-j="'+j+'"><td>'+(j+1)+'</td><td>'+esc(t===''?'(no answer)':t)+'</td><td class="num">'+
  a[0].toFixed(3)+'</td><td class="num">'+a[1].toFixed(2)+'</td></tr>';}).join('')+'</table>';
}
function detail(i){
 var q=Q[i],el=document.createElement('div');el.className='detail';el.setAttribute('data-for',i);
 var gold=q.g.length?q.g.map(function(g){return '<q>'+esc(g[0])+'</q>';}).join(' · '):'(no answer: unanswerable)';
 var preds=q.r.map(function(r,k){return '<div><b>'+(CMP?'prediction '+'AB'[k]:'prediction')+':</b> <q class="ptext">'+esc(ptext(r))+
  '</q> — EM '+r.em+', F1 '+r.f1.toFixed(2)+(r.o!==undefined?', null odds '+r.o:'')+(r.sp?' (best span, not given: <q>'+esc(r.sp)+'</q>)':'')+
  (r.p&&!r.s?' <span class="mute">(not located in the context)</span>':'')+'</div>';}).join('');
 el.innerHTML='<div class="meta"><div><b>'+esc(q.q)+'</b> <span class="mute">'+esc(q.id)+' · '+G.map(function(g,gi){return esc(g.short)+' '+esc(label(q,gi));}).join(' · ')+
  '</span></div><div><b>gold:</b> '+gold+'</div>'+preds+'</div><div class="legend"><i style="background:var(--gold)">gold</i><i style="background:#ffe9cc;box-shadow:inset 0 -3px 0 var(--a)">prediction'+
  (CMP?' A':'')+'</i>'+(CMP?'<i style="box-shadow:inset 0 3px 0 var(--b)">prediction B</i>':'')+'<i style="background:#d9e98a">gold ∩ prediction</i> hover an n-best row to mark it</div>'+
  '<div class="ctx" lang="'+D.lang+'">'+marked(q)+'</div>'+q.r.map(function(_,k){return nbestTable(q,k);}).join('');
 el.addEventListener('mouseover',function(ev){var tr=ev.target.closest('.nbest tr[data-j]');if(!tr)return;
  var a=q.r[+tr.closest('.nbest').getAttribute('data-run')].nb[+tr.getAttribute('data-j')];
  el.querySelector('.ctx').innerHTML=marked(q,a.length>3?[a[2],a[3]]:null);});
 el.addEventListener('mouseleave',function(){el.querySelector('.ctx').innerHTML=marked(q);});
 el.addEventListener('click',function(ev){ev.stopPropagation();});
 return el;
}
function toggle(i){
 if(open[i]){delete open[i];}else{open[i]=detail(i);}
 layout();render();
 var el=open[i];if(!el)return;
 var p=el.querySelector('.ctx .pa, .ctx .g');if(p){var box=el.querySelector('.ctx');box.scrollTop=Math.max(0,p.offsetTop-box.offsetTop-60);}
}
// scroll question i into the box (clearing filters that hide it); returns its row
function reveal(i){
 if(view.indexOf(i)<0){['search','filter','type','group'].forEach(function(id){var e=document.getElementById(id);e.value=id==='filter'?'all':'';});apply();}
 var k=view.indexOf(i);vp.scrollTop=offs[k]+rowsEl.offsetTop-ROW*2;render();
 return rowsEl.querySelector('.qrow[data-i="'+i+'"]');
}
rowsEl.addEventListener('click',function(ev){var r=ev.target.closest('.qrow');if(r)toggle(+r.getAttribute('data-i'));});
rowsEl.addEventListener('keydown',function(ev){var r=ev.target.closest('.qrow');if(r&&ev.key==='Enter')toggle(+r.getAttribute('data-i'));});
document.getElementById('qh').addEventListener('click',function(ev){var s=ev.target.closest('span[data-k]');if(s)sortBy(s.getAttribute('data-k'));});
['search','filter','type','group'].forEach(function(id){document.getElementById(id).addEventListener(id==='search'?'input':'change',apply);});
Array.prototype.forEach.call(document.querySelectorAll('.bd tr[data-g]'),function(tr){tr.addEventListener('click',function(){
 var gi=+tr.getAttribute('data-g');document.getElementById('group').value=gi+'|'+G[gi].labels.indexOf(tr.getAttribute('data-l'));apply();
 document.getElementById('questions').scrollIntoView();});});
document.querySelector('#qh span[data-k="idx"]').classList.add('sorted');
apply();
window.jaxqaReport={rows:N,toggle:toggle,reveal:reveal,sortBy:sortBy,apply:apply,render:render,
 view:function(){return view.slice();},rendered:function(){return shown.slice();}};
requestAnimationFrame(function(){setTimeout(function(){performance.mark('report-ready');window.jaxqaReport.ready=true;},0);});
})();
"""

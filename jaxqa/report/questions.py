"""The question table's data: what the page's script reads to list, filter, sort and open every question.

One JSON object embedded in the page: each context once, and per question its text, gold answers
(with their spans), its category in each breakdown, and per run the prediction, where it is in
the context, EM/F1 and the n-best alternatives. Character offsets are converted to UTF-16 units
for the browser, so spans stay right in text with characters beyond the Basic Multilingual Plane
(rare CJK ideographs).
"""

from __future__ import annotations

import numpy as np

from jaxqa.report.breakdowns import SHORT_NAMES
from jaxqa.report.runs import Run
from jaxqa.scoring.statistics import question_scores

NBEST_SHOWN = 5  # n-best alternatives embedded per question and run


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


def page_data(runs: list[Run], groups: list[dict]) -> dict:
    """The page's data for `runs` (one, or two on the same questions) and the breakdowns `groups`."""
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

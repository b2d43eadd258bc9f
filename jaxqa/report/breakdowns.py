"""Where a run fails: its questions grouped by kind, and EM/F1 per group.

Each question falls in one category of each breakdown: question type (first wh-word, or the Chinese
question word mapped onto the same types), gold answer length, context length (quintiles), windows
per question and where the answer starts in its context. `question_groups` sorts the questions;
`breakdown_tables` draws one table per breakdown (two runs: both, and the paired-bootstrap interval
of their difference in each category).
"""

from __future__ import annotations

import html
import math
import re

import numpy as np

from jaxqa.report.runs import Run
from jaxqa.scoring import metrics
from jaxqa.scoring.statistics import paired_bootstrap

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


def question_groups(run: Run) -> list[dict]:
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


MIN_CATEGORY_CI = 10  # fewer questions in a category: no interval (a bootstrap of 1-9 values says little)


def breakdown_tables(runs: list[Run], groups: list[dict]) -> str:
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


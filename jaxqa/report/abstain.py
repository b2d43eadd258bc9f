"""SQuAD v2.0 on the page: answer or abstain.

What the model did with answerable and unanswerable questions (the HasAns/NoAns confusion at the
run's threshold), and the F1 it would reach at every other threshold on the null odds, with the
run's chosen threshold and the best one marked.
"""

from __future__ import annotations

import numpy as np

from jaxqa.report.charts import COLORS, svg_chart
from jaxqa.report.runs import Run
from jaxqa.scoring import metrics
from jaxqa.scoring.statistics import question_scores


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


def abstain_section(run: Run, tag: str = "") -> str:
    """The confusion table and the threshold chart of one run (`tag`: " (A)" / " (B)" on the compare page)."""
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

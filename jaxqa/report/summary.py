"""The page's first section: what was run and what it scored.

One run: metric cards (before training -> after), whether the page's per-question scores average to
the run's results file, fine-tuning's change with its interval, and the data, model, settings and
times. Two runs: both metrics with the difference and its interval, the verdict sentence, the
fixed/broken bar, and the two runs' settings side by side (what differs in bold).
"""

from __future__ import annotations

import html
import time

from jaxqa.report.runs import Run, differing_settings, read_json
from jaxqa.scoring.statistics import compare_scores, question_scores, verdict
from jaxqa.training.run_log import kept_note


def headline(run: Run) -> str:
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


def check_line(run: Run) -> str:
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


def identity(runs: list[Run]) -> str:
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



def compare_head(runs: list[Run], result: dict) -> str:
    """Two runs: EM/F1 of each, B - A with its interval, the verdict, and the outcome bar (right = exact match)."""
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


def before_after_line(run: Run) -> str:
    """Single page: was fine-tuning's change real? (before_training_predictions.json beside it)"""
    if run.prefix != "" or not (run.directory / "before_training_predictions.json").is_file():
        return ""
    before = read_json(run.directory / "before_training_predictions.json")
    em_b, f1_b = question_scores(run.metric, before, run.gold)
    result = compare_scores(em_b, f1_b, run.em, run.f1)
    e, o = result["f1"], result["outcomes"]
    return (f'<p class="note">Fine-tuning changed F1 by {e["delta"]:+.2f} points (95% CI [{e["low"]:+.2f}, '
            f'{e["high"]:+.2f}], paired bootstrap over questions); {o["fixed"]} questions fixed, {o["broken"]} broken. '
            f"Compare any two runs: <code>python -m jaxqa compare RUN_A RUN_B</code>.</p>")

"""`eval_report.html`: error analysis of an evaluation, one self-contained page.

`write_report(OUTPUT_DIR)` reads what a run wrote (predictions, n-best lists, null odds, results,
metrics.jsonl, run_config.json) and the data it was scored on, and writes one HTML file that needs
nothing else (no network: inline CSS, inline vanilla JS, SVG charts). It shows the headline metrics
before and after training, the data and model, run time, training curves, EM/F1 broken down by
question type, answer length, context length, windows and answer position, for SQuAD v2.0 the
F1-vs-threshold curve and the HasAns/NoAns confusion, and every question in one table that sorts,
filters and opens each question onto its context with the gold answers and the prediction marked.
`write_compare(A, B, OUT)` writes the same page for two runs.

This module assembles the page from its parts: a run's files (runs), the metrics section (summary),
the charts (charts), the breakdowns (breakdowns), SQuAD v2.0's answer-or-abstain section (abstain)
and the question table's data (questions). The skeleton, style and script are the package files
page.html, page.css and page.js, inlined when the page is written. The per-question scores and their
bootstrap intervals are `jaxqa.scoring.statistics`; the page checks that the scores' means reproduce
the run's results file and says so.

    python -m jaxqa report OUTPUT_DIR [--split eval|before_training] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import logging
import string
import sys
import time
from importlib import resources
from pathlib import Path

from jaxqa import atomic
from jaxqa.data.examples import Examples
from jaxqa.errors import JaxqaError
from jaxqa.report.abstain import abstain_section
from jaxqa.report.breakdowns import breakdown_tables, question_groups
from jaxqa.report.charts import curve_charts
from jaxqa.report.questions import page_data
from jaxqa.report.runs import Run, load_pair, load_run, missing_notes
from jaxqa.report.summary import before_after_line, check_line, compare_head, headline, identity
from jaxqa.scoring.statistics import compare_scores

log = logging.getLogger("jaxqa")

REPORT_NAME = "eval_report.html"
COMPARE_NAME = "compare_report.html"


@functools.cache
def _package_file(name: str) -> str:
    """page.html, page.css or page.js, as installed beside this module (package data of the wheel)."""
    return resources.files("jaxqa.report").joinpath(name).read_text(encoding="utf-8")


def render(runs: list[Run], *, result: dict | None = None, title: str | None = None) -> str:
    """The whole page as one HTML string (one run, or two in compare mode)."""
    groups = question_groups(runs[0])
    data = page_data(runs, groups)
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
        body.append(compare_head(runs, result or compare_scores(runs[0].em, runs[0].f1, runs[1].em, runs[1].f1)))
    else:
        body.append(headline(first) + check_line(first) + before_after_line(first))
    body.append(identity(runs) + "</section>")
    body.append('<section id="curves"><h2>Training curves</h2>' + curve_charts(runs) + "</section>")
    body.append('<section id="breakdowns"><h2>Where it fails</h2><p class="note">EM and F1 (%) per category, with '
                "the number of questions; click a row to list its questions.</p>" + breakdown_tables(runs, groups)
                + "</section>")
    if first.metric == "squad_v2":
        body.append('<section id="v2"><h2>Answer or abstain (SQuAD v2.0)</h2>'
                    + "".join(abstain_section(r, f" ({'AB'[k]})" if compare else "") for k, r in enumerate(runs))
                    + "</section>")
    body.append('<section id="questions"><h2>Questions</h2><div id="controls"></div><div id="table"></div>'
                "</section>")
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return string.Template(_package_file("page.html")).substitute(
        lang=data["lang"], title=html.escape(title), css=_package_file("page.css"), body="".join(body), payload=payload,
        js=_package_file("page.js"))


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
    run_a, run_b = load_pair(run_a, run_b, data=data)
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

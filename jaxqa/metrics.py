"""Scoring as the official scripts define it: SQuAD v1.1, SQuAD v2.0 and CMRC 2018 (Chinese).

SQuAD answers are normalised (lower-case, ASCII punctuation and the articles a/an/the removed,
whitespace collapsed); exact match and token F1 take the maximum over the gold answers. v1.1
counts a missing prediction as wrong; v2.0 leaves it out (both as their scripts do). All figures
are percentages.
"""

from __future__ import annotations

import collections
import re
import string
import unicodedata

import numpy as np

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # "no answer" matches only "no answer"
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_v1(predictions: dict[str, str], gold_answers: dict[str, list[str]]) -> dict[str, float]:
    """{'exact_match', 'f1'} over every question in `gold_answers`; a missing prediction scores 0."""
    em = f1 = 0.0
    for qid, golds in gold_answers.items():
        prediction, golds = predictions.get(qid, ""), golds or [""]
        em += max(exact_match(prediction, g) for g in golds)
        f1 += max(token_f1(prediction, g) for g in golds)
    n = max(len(gold_answers), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def _best_threshold(raw: np.ndarray, has_answer: np.ndarray, answered: np.ndarray, na_prob: np.ndarray,
                    order: np.ndarray, num_no_answer: int):
    """The v2.0 script's search: predict "no answer" for every question whose na_prob exceeds the
    threshold. Questions are taken in ascending na_prob order (`order`, stable over the na_prob
    file's order); the best prefix, first one on ties, gives the threshold."""
    # Answering question q instead of abstaining gains raw[q] if it has an answer, else -1 when
    # the model gave a (necessarily wrong) answer, 0 when it gave "".
    gain = np.where(has_answer, raw, np.where(answered, -1.0, 0.0))[order]
    totals = num_no_answer + np.cumsum(gain)
    best = int(np.argmax(totals)) if len(totals) else 0
    if len(totals) and totals[best] > num_no_answer:
        return 100.0 * totals[best] / len(raw), float(na_prob[order][best])
    return 100.0 * num_no_answer / len(raw), 0.0


def squad_v2(predictions: dict[str, str], gold_answers: dict[str, list[str]],
             na_probs: dict[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict[str, float]:
    """The SQuAD v2.0 evaluation: exact/f1 overall and split HasAns/NoAns, and with `na_probs`
    (no-answer scores, e.g. null_odds.json) the best threshold and the scores it reaches."""
    qids = [q for q in gold_answers if q in predictions]
    golds = [[g for g in gold_answers[q] if normalize_answer(g)] or [""] for q in qids]
    preds = [predictions[q] for q in qids]
    has_answer = np.array([bool(gold_answers[q]) for q in qids], dtype=bool)
    exact_raw = np.array([max(exact_match(p, g) for g in gs) for p, gs in zip(preds, golds)])
    f1_raw = np.array([max(token_f1(p, g) for g in gs) for p, gs in zip(preds, golds)])
    na = np.array([(na_probs or {}).get(q, 0.0) for q in qids], dtype=np.float64)
    abstain = na > na_prob_thresh
    exact = np.where(abstain, (~has_answer).astype(float), exact_raw)
    f1 = np.where(abstain, (~has_answer).astype(float), f1_raw)
    n = len(qids)
    out = {"exact": 100.0 * exact.mean() if n else 0.0, "f1": 100.0 * f1.mean() if n else 0.0, "total": n}
    for name, rows in (("HasAns", has_answer), ("NoAns", ~has_answer)):
        if rows.any():
            out.update({f"{name}_exact": 100.0 * exact[rows].mean(), f"{name}_f1": 100.0 * f1[rows].mean(),
                        f"{name}_total": int(rows.sum())})
    if na_probs is not None and n:
        position = {q: i for i, q in enumerate(qids)}
        in_file_order = np.array([position[q] for q in na_probs if q in position], dtype=np.int64)
        order = in_file_order[np.argsort(na[in_file_order], kind="stable")]
        answered = np.array([bool(p) for p in preds])
        num_no_answer = sum(1 for golds_q in gold_answers.values() if not golds_q)
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(exact_raw, has_answer, answered, na, order,
                                                                      num_no_answer)
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(f1_raw, has_answer, answered, na, order,
                                                                num_no_answer)
    return out


# --- CMRC 2018 (Chinese) -----------------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _is_punctuation(ch: str) -> bool:
    return ch in _PUNCTUATION or unicodedata.category(ch)[0] in "PS"


def cjk_segments(text: str) -> list[str]:
    """CJK characters one by one, runs of Latin letters/digits as words, punctuation dropped."""
    segments, run = [], []
    for ch in text.lower().strip():
        if _CJK.match(ch) or _is_punctuation(ch) or ch.isspace():
            if run:
                segments += _WORD.findall("".join(run))
                run = []
            if _CJK.match(ch):
                segments.append(ch)
        else:
            run.append(ch)
    if run:
        segments += _WORD.findall("".join(run))
    return segments


def _longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest common contiguous run of segments (CMRC 2018's F1 overlap)."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def cjk_f1(prediction: str, gold: str) -> float:
    pred, ref = cjk_segments(prediction), cjk_segments(gold)
    overlap = _longest_common_run(pred, ref)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def cjk_exact(prediction: str, gold: str) -> float:
    return float(cjk_segments(prediction) == cjk_segments(gold))


def cmrc(predictions: dict[str, str], gold_answers: dict[str, list[str]]) -> dict[str, float]:
    """CMRC 2018 style {'exact_match', 'f1'}: max over golds; a missing prediction scores 0."""
    em = f1 = 0.0
    for qid, golds in gold_answers.items():
        prediction = predictions.get(qid, "")
        em += max(cjk_exact(prediction, g) for g in golds or [""])
        f1 += max(cjk_f1(prediction, g) for g in golds or [""])
    n = max(len(gold_answers), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def pick_metric(name: str, has_unanswerable: bool, contexts: list[str]) -> str:
    """`auto`: squad_v2 when the data has unanswerable questions, cmrc when contexts are mostly CJK."""
    if name != "auto":
        return name
    if has_unanswerable:
        return "squad_v2"
    sample = "".join(contexts[:200])
    cjk_share = len(_CJK.findall(sample)) / max(len(sample), 1)
    return "cmrc" if cjk_share > 0.3 else "squad"


def score(metric: str, predictions: dict[str, str], gold_answers: dict[str, list[str]],
          null_odds: dict[str, float] | None = None) -> dict[str, float]:
    """Dispatch by metric name ("squad", "squad_v2", "cmrc"); the result names its metric."""
    if metric == "squad":
        out = squad_v1(predictions, gold_answers)
    elif metric == "squad_v2":
        out = squad_v2(predictions, gold_answers, null_odds)
    elif metric == "cmrc":
        out = cmrc(predictions, gold_answers)
    else:
        raise ValueError(f"unknown metric {metric!r}; use squad, squad_v2 or cmrc")
    return {"metric": metric, **out}


def summary(result: dict) -> str:
    """One line of the headline figures of a score() result."""
    keys = ["exact_match", "exact", "f1", "best_exact", "best_f1", "HasAns_f1", "NoAns_f1"]
    return " ".join(f"{k} {result[k]:.2f}" for k in keys if k in result) or "not scored"

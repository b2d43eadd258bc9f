"""SQuAD v1.1 scoring, as the official evaluation script defines it.

Answers are normalised (lower-case, punctuation and the articles a/an/the removed, whitespace
collapsed); exact match and token F1 take the maximum over the gold answers; both are reported
as percentages over all questions.
"""

from __future__ import annotations

import collections
import re
import string

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
    """{'exact_match', 'f1'} in percent over every question in `gold_answers` (a missing
    prediction scores 0, as in the official script)."""
    em = f1 = 0.0
    for qid, golds in gold_answers.items():
        prediction, golds = predictions.get(qid, ""), golds or [""]
        em += max(exact_match(prediction, g) for g in golds)
        f1 += max(token_f1(prediction, g) for g in golds)
    n = max(len(gold_answers), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}

"""SQuAD v1.1 answer normalisation, exact match and token F1 as the official script defines them."""

from __future__ import annotations

import pytest

from jaxqa.metrics import exact_match, normalize_answer, squad_v1, token_f1


@pytest.mark.parametrize("raw,normal", [
    ("The Theater", "theater"),           # article removed, "the" inside a word kept
    ("  an   apple, a pear!", "apple pear"),
    ("Denver Broncos.", "denver broncos"),
    ("A-B", "ab"),                         # ASCII punctuation is deleted, not spaced
    ("anthem", "anthem"),
    ("“quoted”", "“quoted”"),              # only ASCII punctuation is removed in v1.1
])
def test_normalize(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_and_f1():
    assert exact_match("the Denver Broncos", "Denver Broncos!") == 1.0
    # pred tokens {denver, broncos, team}, gold {denver, broncos}: P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    assert token_f1("Carolina", "Denver") == 0.0
    assert token_f1("", "Denver") == 0.0


def test_squad_v1_max_over_golds_and_missing_predictions():
    gold = {"q1": ["Denver Broncos", "Broncos"], "q2": ["1990"], "q3": ["Paris"]}
    preds = {"q1": "Broncos", "q2": "in 1990"}  # q3 missing: scores 0
    result = squad_v1(preds, gold)
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)

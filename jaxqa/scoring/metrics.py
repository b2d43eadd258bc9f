"""Scoring as the official scripts define it: SQuAD v1.1, SQuAD v2.0 and CMRC 2018 (Chinese).

SQuAD answers are normalised (lower-case, ASCII punctuation and the articles a/an/the removed,
whitespace collapsed); exact match and token F1 take the maximum over the gold answers. The two
scripts part where an answer normalises to nothing: v1.1's F1 counts shared tokens (none: 0), v2.0
reads it as "no answer", which matches only "no answer" (`no_answer_rule`). A missing prediction
scores 0 and counts in every total (v1.1 does so; the v2.0 script would stop with a KeyError); one
warning says how many. Ids not in the gold are ignored. All figures are percentages.
"""

from __future__ import annotations

import collections
import itertools
import logging
import re
import string
import unicodedata

import numpy as np

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
log = logging.getLogger("jaxqa")


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str, no_answer_rule: bool = False) -> float:
    """`no_answer_rule` (v2.0): an answer normalising to nothing is "no answer", F1 1 only against
    another; v1.1 (default) has no such rule, so no shared token gives 0 there too."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if no_answer_rule and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _with_prediction(predictions: dict, qids: list[str]) -> np.ndarray:
    """Which of `qids` have a prediction; one warning line for those that have none (they score 0)."""
    present = np.fromiter((q in predictions for q in qids), bool, len(qids))
    if not present.all():
        missing = [q for q, p in zip(qids, present) if not p]
        log.warning("%d of %d questions have no prediction and score 0 (e.g. %s)", len(missing), len(qids),
                    ", ".join(missing[:5]))
    return present


def _raw_scores(predictions: dict[str, str], gold_answers: dict[str, list[str]], no_answer_rule: bool):
    """Per question of `gold_answers` (in order): best exact match and F1 over its golds, 0 where the
    prediction is missing, and which have one."""
    qids = list(gold_answers)
    present = _with_prediction(predictions, qids)
    exact, f1 = best_over_golds([predictions.get(q, "") for q in qids],
                                [golds or [""] for golds in gold_answers.values()], no_answer_rule)
    return np.where(present, exact, 0.0), np.where(present, f1, 0.0), present


def squad_v1(predictions: dict[str, str], gold_answers: dict[str, list[str]]) -> dict[str, float]:
    """{'exact_match', 'f1'} over every question in `gold_answers`; a missing prediction scores 0."""
    exact, f1, _ = _raw_scores(predictions, gold_answers, no_answer_rule=False)
    n = max(len(gold_answers), 1)
    return {"exact_match": 100.0 * exact.sum() / n, "f1": 100.0 * f1.sum() / n}


# --- the same scores for a whole eval set at once ----------------------------------------------
# normalize_answer/exact_match/token_f1 define the metric one pair at a time; the official scripts
# loop over them, which costs more than decoding a whole eval set. Below, every answer is normalised
# in one pass over one joined string and token F1 is counted with integer token ids in NumPy; the
# tests hold it equal to the per-pair definitions.

_SEPARATOR = "\x00"  # joins the answers: neither a word character nor whitespace, like a string end
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SKIPPED_TOKENS = (_SEPARATOR, "a", "an", "the")  # ids 0-3
_ODD_CONTROL = str.maketrans("", "", "".join(map(chr, [*range(1, 9), *range(14, 28), 127])))


_ASCII_SPLITS = np.zeros(256, bool)  # where str.split() cuts ASCII text, and the separator
_ASCII_SPLITS[[0, 9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_PACKED = 8  # tokens of up to 8 ASCII bytes are their own id: the bytes read as one uint64


def _packed(tokens: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(t.encode("ascii").ljust(_PACKED, b"\0"), "little") for t in tokens], np.uint64)


_PACKED_ARTICLES = _packed(["a", "an", "the"])


def _normalized_tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of every normalised text, flat (articles dropped), and each text's token count."""
    joined = _SEPARATOR.join(texts).lower().translate(_DROP_PUNCTUATION)
    # In ASCII text without odd control characters a regex word boundary falls exactly where
    # str.split() cuts, so an article is a whole token, and tokens can be cut and compared as
    # bytes without making a Python string each. Elsewhere the regex and str.split() decide.
    if joined.isascii() and len(joined.translate(_ODD_CONTROL)) == len(joined):
        return _ascii_tokens(joined, len(texts))
    tokens = _ARTICLES.sub(" ", joined).replace(_SEPARATOR, f" {_SEPARATOR} ").split()
    vocab = {token: i for i, token in enumerate(dict.fromkeys(itertools.chain(_SKIPPED_TOKENS, tokens)))}
    ids = np.fromiter(map(vocab.__getitem__, tokens), np.int64, len(tokens))
    owner = np.cumsum(ids == 0)  # id 0 is the separator
    kept = ids >= len(_SKIPPED_TOKENS)
    return ids[kept], np.bincount(owner[kept], minlength=len(texts))


def _ascii_tokens(joined: str, num_texts: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(joined.encode("ascii"), np.uint8)
    inside = (~_ASCII_SPLITS[data]).view(np.int8)
    edge = np.diff(inside, prepend=np.int8(0), append=np.int8(0))
    start, end = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    length = end - start
    owner = np.cumsum(data == 0)[start]
    padded = np.concatenate([data, np.zeros(_PACKED, np.uint8)])
    chars = padded[start[:, None] + np.arange(_PACKED)]
    chars[np.arange(_PACKED) >= length[:, None]] = 0
    key = chars.view(np.uint64)[:, 0].copy()
    long = np.flatnonzero(length > _PACKED)
    if long.size:  # a few long words: numbered by a dict, marked by the top bit (ASCII never sets it)
        words = [joined[i:j] for i, j in zip(start[long].tolist(), end[long].tolist())]
        number = {w: i for i, w in enumerate(dict.fromkeys(words))}
        key[long] = np.fromiter(map(number.__getitem__, words), np.uint64, len(words)) | np.uint64(1 << 63)
    kept = ~np.isin(key, _PACKED_ARTICLES)
    ids = np.unique(key[kept], return_inverse=True)[1].reshape(-1)
    return ids.astype(np.int64), np.bincount(owner[kept], minlength=num_texts)


def pair_scores(predictions: list[str], golds: list[str], question_of_gold: np.ndarray,
                no_answer_rule: bool = False):
    """Exact match and token F1 of every gold answer against its question's prediction, as
    exact_match()/token_f1() define them, for all pairs at once (float64 arrays), and the
    normalised token count of each gold."""
    if any(_SEPARATOR in text for text in itertools.chain(predictions, golds)):  # one pair at a time
        pairs = [(predictions[q], g) for q, g in zip(question_of_gold, golds)]
        return (np.array([exact_match(p, g) for p, g in pairs]),
                np.array([token_f1(p, g, no_answer_rule) for p, g in pairs]),
                np.array([len(normalize_answer(g).split()) for g in golds], dtype=np.int64))
    ids, lengths = _normalized_tokens(predictions + golds)
    n_pred_tokens = lengths[:len(predictions)].sum()
    pred_ids, pred_len = ids[:n_pred_tokens], lengths[:len(predictions)]
    gold_ids, gold_len = ids[n_pred_tokens:], lengths[len(predictions):]
    v = int(ids.max(initial=0)) + 1
    # common[j] = sum over gold j's distinct tokens t of min(count of t in gold j, count in its prediction)
    pred_keys = np.sort(np.repeat(np.arange(len(predictions)), pred_len) * v + pred_ids)
    gold_of_token = np.repeat(np.arange(len(golds)), gold_len)
    gold_keys, gold_counts = np.unique(gold_of_token * v + gold_ids, return_counts=True)
    gold_j, token = np.divmod(gold_keys, v)
    lookup = question_of_gold[gold_j] * v + token
    in_pred = np.searchsorted(pred_keys, lookup, side="right") - np.searchsorted(pred_keys, lookup, side="left")
    common = np.bincount(gold_j, np.minimum(in_pred, gold_counts), minlength=len(golds))
    p_len = pred_len[question_of_gold].astype(np.float64)
    g_len = gold_len.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision, recall = common / p_len, common / g_len
        f1 = np.where(common > 0, (2 * precision * recall) / (precision + recall), 0.0)  # v1.1: empty -> 0
    if no_answer_rule:
        f1 = np.where((p_len == 0) | (g_len == 0), (p_len == g_len).astype(np.float64), f1)
    # Equal token lists: the same multiset (common = both lengths) and token by token the same.
    same_bag = np.flatnonzero((common == p_len) & (common == g_len))
    length = gold_len[same_bag]
    step = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    pred_at = np.repeat((np.cumsum(pred_len) - pred_len)[question_of_gold[same_bag]], length) + step
    gold_at = np.repeat((np.cumsum(gold_len) - gold_len)[same_bag], length) + step
    differs = np.bincount(np.repeat(np.arange(len(same_bag)), length), pred_ids[pred_at] != gold_ids[gold_at],
                          minlength=len(same_bag))
    exact = np.zeros(len(golds))
    exact[same_bag] = differs == 0
    return exact, f1, gold_len


def best_over_golds(predictions: list[str], golds: list[list[str]], no_answer_rule: bool = False):
    """Per question, the best exact match and F1 over its gold answers (each list non-empty).
    `no_answer_rule` (v2.0): token_f1's rule, and golds that normalise to nothing ("no answer")
    count only when all of them do."""
    sizes = np.fromiter(map(len, golds), np.int64, len(golds))
    if len(golds) == 0:
        return np.zeros(0), np.zeros(0)
    question_of_gold = np.repeat(np.arange(len(golds)), sizes)
    exact, f1, gold_len = pair_scores(predictions, list(itertools.chain.from_iterable(golds)), question_of_gold,
                                      no_answer_rule)
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    if no_answer_rule:
        empty = gold_len == 0
        question_has_answer = np.maximum.reduceat(~empty, first)
        ignore = empty & question_has_answer[question_of_gold]
        exact, f1 = np.where(ignore, -1.0, exact), np.where(ignore, -1.0, f1)
    return np.maximum.reduceat(exact, first), np.maximum.reduceat(f1, first)


def _answer_totals(gain: np.ndarray, order: np.ndarray, num_no_answer: int) -> np.ndarray:
    """totals[k] (k = 0..len(order)): the questions right (F1 counting fractionally) when the first k
    questions of `order` answer and all the others abstain, `gain` being what answering instead of
    abstaining adds. Questions without a prediction are not in `order`: they score 0 at any threshold."""
    return num_no_answer + np.r_[0.0, np.cumsum(gain[order])]


def _best_threshold(totals: np.ndarray, sorted_na: np.ndarray, total: int):
    """The v2.0 script's search: questions taken in ascending na_prob order (`sorted_na`, stable over
    the na_prob file's order), the best prefix (first one on ties) gives the threshold: the na_prob of
    its last question, or 0.0 when no prefix beats abstaining everywhere."""
    best = int(np.argmax(totals))
    return 100.0 * totals[best] / total, float(sorted_na[best - 1]) if best else 0.0


def reachable_best(totals: np.ndarray, sorted_odds: np.ndarray) -> tuple[int, float]:
    """(k, threshold): the best number k of questions answering (`totals` as `_answer_totals`, first
    best on ties) that a threshold can give, and that threshold, under the rule "abstain when the odds
    exceed it". The official search may stop inside a run of equal odds, or return 0.0 for "abstain
    everywhere", which answers every question with odds <= 0; a threshold answers all equal odds or
    none, so k is 0 or the end of such a run, and k = 0 gives a threshold below the lowest odds."""
    if len(sorted_odds) == 0:
        return 0, 0.0
    cuts = np.r_[True, sorted_odds[:-1] < sorted_odds[1:], True]
    k = int(np.argmax(np.where(cuts, totals, -np.inf)))
    return k, float(sorted_odds[k - 1]) if k else float(sorted_odds[0]) - 1.0


def squad_v2(predictions: dict[str, str], gold_answers: dict[str, list[str]],
             na_probs: dict[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict[str, float]:
    """The SQuAD v2.0 evaluation: exact/f1 overall and split HasAns/NoAns, and with `na_probs`
    (no-answer scores, e.g. null_odds.json) the best threshold and the scores it reaches. A question
    without a prediction scores 0 everywhere: it never abstains."""
    qids = list(gold_answers)
    exact_raw, f1_raw, present = _raw_scores(predictions, gold_answers, no_answer_rule=True)
    has_answer = np.array([bool(gold_answers[q]) for q in qids], dtype=bool)
    na = np.array([(na_probs or {}).get(q, 0.0) for q in qids], dtype=np.float64)
    abstain = (na > na_prob_thresh) & present
    exact = np.where(abstain, (~has_answer).astype(float), exact_raw)
    f1 = np.where(abstain, (~has_answer).astype(float), f1_raw)
    n = len(qids)
    out = {"exact": 100.0 * exact.mean() if n else 0.0, "f1": 100.0 * f1.mean() if n else 0.0, "total": n}
    for name, rows in (("HasAns", has_answer), ("NoAns", ~has_answer)):
        if rows.any():
            out.update({f"{name}_exact": 100.0 * exact[rows].mean(), f"{name}_f1": 100.0 * f1[rows].mean(),
                        f"{name}_total": int(rows.sum())})
    if na_probs is not None and n:
        position = {q: i for i, q in enumerate(qids) if present[i]}
        in_file_order = np.array([position[q] for q in na_probs if q in position], dtype=np.int64)
        order = in_file_order[np.argsort(na[in_file_order], kind="stable")]
        answered = np.array([bool(predictions.get(q)) for q in qids])
        num_no_answer = int((~has_answer & present).sum())
        # The script's gain of answering an unanswerable question: -1 if the prediction is not "", though
        # one that normalises to nothing scores as "no answer" (1) when answered.
        wrong = np.where(answered, -1.0, 0.0)
        for name, raw in (("best_exact", exact_raw), ("best_f1", f1_raw)):
            totals = _answer_totals(np.where(has_answer, raw, wrong), order, num_no_answer)
            out[name], out[f"{name}_thresh"] = _best_threshold(totals, na[order], n)
        # jaxqa's own: the threshold saved with a model and used, and exactly the F1 it gives (a question
        # with a prediction but no no-answer score has odds 0.0 here, as when scoring at a threshold)
        order = np.flatnonzero(present)[np.argsort(na[present], kind="stable")]
        totals = _answer_totals(f1_raw - ~has_answer, order, num_no_answer)
        k, out["best_f1_reached_thresh"] = reachable_best(totals, na[order])
        out["best_f1_reached"] = 100.0 * totals[k] / n
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
    present = _with_prediction(predictions, list(gold_answers))
    for (qid, golds), has_prediction in zip(gold_answers.items(), present):
        if not has_prediction:
            continue
        prediction = predictions[qid]
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
          null_odds: dict[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict[str, float]:
    """Dispatch by metric name ("squad", "squad_v2", "cmrc"); the result names its metric."""
    if metric == "squad":
        out = squad_v1(predictions, gold_answers)
    elif metric == "squad_v2":
        out = squad_v2(predictions, gold_answers, null_odds, na_prob_thresh)
    elif metric == "cmrc":
        out = cmrc(predictions, gold_answers)
    else:
        raise ValueError(f"unknown metric {metric!r}; use squad, squad_v2 or cmrc")
    return {"metric": metric, **out}


def summary(result: dict) -> str:
    """One line of the headline figures of a score() result."""
    keys = ["exact_match", "exact", "f1", "best_exact", "best_f1", "HasAns_f1", "NoAns_f1"]
    return " ".join(f"{k} {result[k]:.2f}" for k in keys if k in result) or "not scored"

"""--no_answer_window_share S: the share of "no answer" windows among the training windows, by down-sampling.

A training window is labelled "no answer" (start = end = its CLS token) when its question is unanswerable
and also when its question is answerable but the window does not hold the whole answer (the overflow
windows of a long context, `features._label_windows`). Their share among the training windows is whatever
the data and the window settings make it, and it sets how readily the model learns to abstain. With this
flag the kind in excess is down-sampled until the share is S:

- too many no-answer windows: those of answerable questions go first (each says only "not in this
  window", the least signal), then, if still too many, those of unanswerable questions;
- too few: answer-bearing windows go.

Within a kind the windows dropped are drawn at random from the run's seed, on a stream of their own (the
epoch shuffles draw from (seed, epoch), `run_setup.plan`). The count kept is the nearest whole number
to what gives S exactly: with m windows of the kind kept whole, round(m * S / (1 - S)) no-answer windows
stay, or round(m * (1 - S) / S) answer-bearing ones (halves up; at least one of each kind).

The selection is fixed once for the run, not drawn again each epoch: with length buckets the number of
batches of an epoch depends on which windows it holds, and the learning-rate schedule, the steps per
epoch, the checkpoints' data position and the compiled batch shapes are all fixed from the training
features at set-up. A fixed subset keeps all of those exact, and a resumed run (same seed, same flag:
both are part of the run's identity) selects the same windows. What it costs: a dropped window is never
seen, where a draw per epoch would show each in some epoch.
"""

from __future__ import annotations

import math

import numpy as np

from jaxqa.data.features import Features
from jaxqa.errors import DataError

STREAM = 0x6E6F6E65  # the selection's random stream beside the seed: far from any epoch number


def window_counts(features: Features, is_impossible: np.ndarray) -> dict[str, int]:
    """Training windows by kind: answer-bearing, and no-answer ones of answerable and of unanswerable
    questions (`is_impossible` per example)."""
    kinds = _kinds(features, is_impossible)
    return {name: int(mask.sum()) for name, mask in kinds.items()}


def select_windows(features: Features, is_impossible: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The rows of `features` to train on (ascending) so that no-answer windows are `share` of them."""
    kinds = {name: np.flatnonzero(mask) for name, mask in _kinds(features, is_impossible).items()}
    answer, overflow, unanswerable = kinds["answer"], kinds["no_answer_of_answerable"], kinds["no_answer_of_unanswerable"]
    no_answer = len(overflow) + len(unanswerable)
    if not (no_answer and len(answer)):
        missing = "answer-bearing" if no_answer else "'no answer'"
        raise DataError(f"--no_answer_window_share {share}: the training windows hold no {missing} window, so "
                        "their share cannot be set; leave the flag out for this data")
    rng = np.random.default_rng([seed, STREAM])
    if no_answer * (1 - share) > len(answer) * share:  # too many no-answer windows: those of answerable questions first
        drop = no_answer - _kept(len(answer), share / (1 - share))
        first = min(drop, len(overflow))
        dropped = [rng.choice(overflow, first, replace=False), rng.choice(unanswerable, drop - first, replace=False)]
    else:
        dropped = [rng.choice(answer, len(answer) - _kept(no_answer, (1 - share) / share), replace=False)]
    keep = np.ones(len(features), dtype=bool)
    keep[np.concatenate(dropped).astype(np.int64)] = False
    return np.flatnonzero(keep)


def describe(share: float, before: dict[str, int], after: dict[str, int]) -> str:
    """One log line: the windows of each kind before and after the selection."""
    def counts(c):
        no_answer = c["no_answer_of_answerable"] + c["no_answer_of_unanswerable"]
        return (f"{c['answer']:,} answer / {no_answer:,} no answer ({c['no_answer_of_answerable']:,} of answerable, "
                f"{c['no_answer_of_unanswerable']:,} of unanswerable questions; share {_no_answer_share(c):.3f})")

    return f"--no_answer_window_share {share}: training windows {counts(before)} -> {counts(after)}"


def _no_answer_share(counts: dict[str, int]) -> float:
    no_answer = counts["no_answer_of_answerable"] + counts["no_answer_of_unanswerable"]
    return no_answer / max(1, no_answer + counts["answer"])


def _kept(other: int, ratio: float) -> int:
    """Windows of the down-sampled kind kept beside `other` whole ones: the nearest to other x ratio."""
    return max(1, math.floor(other * ratio + 0.5))


def _kinds(features: Features, is_impossible: np.ndarray) -> dict[str, np.ndarray]:
    no_answer = features.start_positions == features.cls_index
    unanswerable = np.asarray(is_impossible, dtype=bool)[features.example_index]
    return {"answer": ~no_answer, "no_answer_of_answerable": no_answer & ~unanswerable,
            "no_answer_of_unanswerable": no_answer & unanswerable}

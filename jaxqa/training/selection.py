"""Which model a run ends with: the best evaluation during training, and when to stop waiting for a better one.

Every evaluation during training is recorded as (step, value of --metric_for_best_model). The history
travels in each checkpoint's meta, so a resumed run knows how long it has gone without improving and
stops where the uninterrupted run would have. Higher is better (every SQuAD metric is a score).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from jaxqa.errors import ConfigError
from jaxqa.scoring import metrics

log = logging.getLogger("jaxqa")


def metric_names(kind: str, examples, *, null_odds: bool) -> list[str]:
    """The scores an evaluation by metric `kind` of `examples` reports, by the scorer itself (no list here to
    fall behind it) on one answerable and one unanswerable question of them: which of the two the data has,
    and (SQuAD v2.0) whether there are no-answer odds, decide the names."""
    picks = [int(i) for flag in (False, True) for i in np.flatnonzero(examples.is_impossible == flag)[:1]]
    gold = {examples.ids[i]: examples.answer_texts[i] for i in picks}
    result = metrics.score(kind, dict.fromkeys(gold, ""), gold, dict.fromkeys(gold, 0.0) if null_odds else None)
    return [name for name, value in result.items() if isinstance(value, float) and not name.endswith("_thresh")]


def check_metric(config, eval_examples) -> None:
    """--metric_for_best_model against the scores the evaluations during training will report, known once
    the validation data is read (it picks the metric): a name they lack is refused before any training
    step, not at the first evaluation, an epoch in."""
    unanswerable = bool(eval_examples.is_impossible.any())
    kind = metrics.pick_metric(config.metric, unanswerable, eval_examples.contexts)
    names = metric_names(kind, eval_examples, null_odds=unanswerable or config.version_2_with_negative)
    if config.metric_for_best_model not in names:
        raise ConfigError(f"--metric_for_best_model {config.metric_for_best_model}: evaluations on "
                          f"{config.validation_file} (metric {kind}) report {', '.join(names)} (an eval_ prefix "
                          "may be added); pass one of them")


@dataclasses.dataclass
class ModelSelection:
    metric: str
    patience: int | None = None  # evaluations in a row without improvement before stopping; None: never stop
    history: list[tuple[int, float]] = dataclasses.field(default_factory=list)

    def record(self, step: int, result: dict) -> bool:
        """Add the evaluation of `step`; True when the run should stop now (patience spent)."""
        if self.metric not in result:
            available = ", ".join(k for k, v in result.items() if isinstance(v, float))
            raise ConfigError(f"--metric_for_best_model {self.metric}: the evaluation has no such metric "
                              f"(it has {available})")
        self.history.append((step, float(result[self.metric])))
        if self.stopped:
            best_step, best_value = self.best
            log.info("early stopping at step %d: %d evaluation(s) without a better %s than %.2f (step %d)", step,
                     self.since_best, self.metric, best_value, best_step)
        return self.stopped

    @property
    def best(self) -> tuple[int, float] | None:
        """(step, value) of the first evaluation with the highest value."""
        return max(self.history, key=lambda item: item[1]) if self.history else None

    @property
    def since_best(self) -> int:
        """Evaluations after the best one: how long the run has gone without a better model."""
        if not self.history:
            return 0
        return len(self.history) - 1 - self.history.index(self.best)

    @property
    def stopped(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def meta(self) -> list[list]:
        return [[step, value] for step, value in self.history]

    @classmethod
    def from_config(cls, config, saved: list | None = None) -> ModelSelection:
        """The selection of `config`, continued from a checkpoint's `saved` history."""
        return cls(config.metric_for_best_model, config.early_stopping_patience,
                   [(int(step), float(value)) for step, value in saved or []])

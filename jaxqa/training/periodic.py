"""When a periodic action is due: one predicate for logging and saving alike (evaluation follows
--eval_strategy: `RunConfig.evaluation_due`)."""

from __future__ import annotations


def itstime(step: int, every: int | None, total_steps: int, *, last: bool = True) -> bool:
    """True every `every` steps (never when `every` is None or 0) and, if `last`, at the final step."""
    return bool(every) and step % every == 0 or (last and step == total_steps)


"""When a periodic action is due: one predicate for logging, evaluating and saving alike."""

from __future__ import annotations


def itstime(step: int, every: int | None, total_steps: int, *, last: bool = True) -> bool:
    """True every `every` steps (never when `every` is None or 0) and, if `last`, at the final step."""
    return bool(every) and step % every == 0 or (last and step == total_steps)


def evaluation_due(step: int, eval_steps: int | None, steps_per_epoch: int, strategy: str = "auto") -> bool:
    """`strategy` auto: --eval_steps N as Hugging Face's Flax run_qa.py means it, every N steps and at the
    end of every epoch, never without N; steps / epoch / no as Hugging Face's Trainer --eval_strategy:
    every N steps only / at the end of every epoch only / never."""
    every = eval_steps if strategy in ("auto", "steps") else None
    at_epoch_end = strategy == "epoch" or (strategy == "auto" and bool(eval_steps))
    return bool(every) and step % every == 0 or at_epoch_end and step % steps_per_epoch == 0

"""jaxqa: extractive question answering (SQuAD-style) fine-tuning in JAX/Flax.

Wings by concern, each importing only those below it (the import-linter contract in pyproject.toml):
cli (the face) -> report -> training -> scoring -> models -> data -> config -> sharding -> atomic, errors.
A file's way through them: data (examples -> features -> batches) -> training.steps (jit, models' encoder)
-> scoring (logits -> decode -> metrics) -> report (the page); README's "How it works" draws both.

The public API by short names, imported on first use so that `import jaxqa` stays cheap: `jaxqa.Trainer`
(a whole run), `jaxqa.RunConfig` (its settings), `jaxqa.train_state` (state, optimizer, train and eval
steps), `jaxqa.QuestionAnswerer` (one-shot answers), `jaxqa.evaluate` (the scorer).
"""

from jaxqa.clock import LAUNCHED  # ~process start: the first jaxqa import; goodput counts from here

__version__ = "0.1.0"
__all__ = ["LAUNCHED", "QuestionAnswerer", "RunConfig", "Trainer", "evaluate", "train_state"]


def __getattr__(name: str):
    """PEP 562: a public name's module is imported when the name is first used (JAX and Flax load then)."""
    if name == "Trainer":
        from jaxqa.training.trainer import Trainer as value
    elif name == "RunConfig":
        from jaxqa.config import RunConfig as value
    elif name == "train_state":
        from jaxqa.training import train_state as value
    elif name == "QuestionAnswerer":
        from jaxqa.scoring.answer import QuestionAnswerer as value
    elif name == "evaluate":
        import jaxqa.evaluate as value
    else:
        raise AttributeError(f"module 'jaxqa' has no attribute {name!r}")
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

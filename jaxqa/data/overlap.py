"""Training examples whose passage is also in a file the run scores: found at load time, reported, and
left out of training on request (`--on_eval_overlap`).

SQuAD-format files are usually split by article, but files from different sources need not be: the
shared SQuAD v1.1 dev split holds every passage of the shared v2.0 dev split, with the same
questions. A model trained on one and scored on the other is scored on what it memorised. Matching is
by exact passage text: any question on a shared passage gives its answers away.
"""

from __future__ import annotations

import numpy as np

from jaxqa.data.examples import REPORT_IDS, Examples
from jaxqa.errors import DataError


def apply(train: Examples, held_out: dict[str, Examples], action: str) -> tuple[Examples, dict]:
    """(the training examples to keep, what data_report.json says of the overlap). `action`: "warn" keeps
    them, "drop" leaves them out, "error" raises DataError naming both files."""
    contexts = np.array(train.contexts, dtype=object)
    masks = {name: np.isin(contexts, np.array(list(set(other.contexts)), dtype=object))
             for name, other in held_out.items()}
    masks = {name: mask for name, mask in masks.items() if mask.any()}
    if not masks:
        return train, {}
    found = {name: {"examples": int(mask.sum()), "passages": len(set(contexts[mask])),
                    "ids": [train.ids[i] for i in np.flatnonzero(mask)[:REPORT_IDS]]} for name, mask in masks.items()}
    shared = np.logical_or.reduce(list(masks.values()))
    if action == "error":
        name, first = next(iter(found.items()))
        raise DataError(f"{train.source}: {first['examples']} training examples on {first['passages']} passages are "
                        f"also in {name} (e.g. {', '.join(first['ids'])}), so its scores would measure memory; pass "
                        "--on_eval_overlap drop to leave them out of training (or warn to train on them anyway)")
    report = {"shared_with": found, "left_out": int(shared.sum()) if action == "drop" else 0}
    if action != "drop":
        return train, report
    if shared.all():
        raise DataError(f"{train.source}: every training example's passage is also in {', '.join(found)}; "
                        "--on_eval_overlap drop would leave nothing to train on")
    return train.select(np.flatnonzero(~shared)), report


def describe(report: dict) -> str:
    """One line: `523 examples on 106 passages also in dev.json`."""
    return "; ".join(f"{v['examples']} examples on {v['passages']} passages also in {name}"
                     for name, v in report["shared_with"].items())

"""A question in several training files trains once; one id given to two different questions stops the run.

SQuAD v2.0's answerable questions are SQuAD v1.1 questions with the same ids (the shared v2.0 and v1.1
train files hold 3,950 of them), so `--train_file squad_v2.0/train.json squad_v1.1/train.json` would
otherwise train those twice, a weight no flag asked for. Two records are the same question when what
training reads from them is the same: the id, the question text, the context, and the answers (texts
and answer_starts, in order; none for an unanswerable question). Nothing else is compared: v2.0's
`is_impossible: false` on an answerable question says what v1.1's answers say, and `plausible_answers`
(on unanswerable questions only) never trains. The first file that holds a question trains it; the
later ones leave it out before `--max_train_samples` takes its first N and before the eval-overlap
check, so both see each question once. A conflict stops the run whatever `--on_bad_record` says: neither
record is bad on its own, and which one is right only the user knows.

Within one file a repeated id stays a bad record (`duplicate_id`, examples.py), copy or not: a file is
one dataset whose ids the official data and Hugging Face both keep unique, so a repeat there is a file
built wrong (a part pasted twice), which `--on_bad_record skip` leaves out, keeping the first.
"""

from __future__ import annotations

from jaxqa.data.examples import REPORT_IDS, Examples
from jaxqa.errors import DataError


class EarlierFiles:
    """The training files loaded so far, by question id: what each later file is checked against."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[str, Examples, int]] = {}  # id -> (file, its examples, index there)

    def drop_repeats(self, path: str, examples: Examples) -> tuple[Examples, dict]:
        """(the examples of `path` that no earlier file holds, {earlier file: {"count", "ids"}} of those left
        out); DataError when an earlier file gives one of its ids to a different question. The whole file
        is remembered (a later file's copy of a question past --max_train_samples is left out too)."""
        repeated: dict[str, list[str]] = {}
        keep = []
        for i, qid in enumerate(examples.ids):
            if qid not in self._first:
                keep.append(i)
                continue
            earlier, other, j = self._first[qid]
            differs = _difference(other, j, earlier, examples, i)
            if differs:
                raise DataError(f"{path}: question id {qid!r} is also in {earlier}, with a different {differs}; one id "
                                "must name one question (a question in several training files trains once): correct "
                                "the record that is wrong, or give one of them a new id")
            repeated.setdefault(earlier, []).append(qid)
        for i in keep:
            self._first[examples.ids[i]] = (path, examples, i)
        if not repeated:
            return examples, {}
        if not keep:
            raise DataError(f"{path}: every one of its {len(examples):,} questions is also in "
                            f"{', '.join(repeated)}, so it adds nothing to train on; leave it out of --train_file")
        found = {earlier: {"count": len(ids), "ids": ids[:REPORT_IDS]} for earlier, ids in repeated.items()}
        return examples.select(keep), found


def describe(path: str, found: dict) -> str:
    """One line: `3,950 questions appear in both a.json and b.json: trained once` (joined by "; " per earlier file)."""
    return "; ".join(f"{v['count']:,} questions appear in both {earlier} and {path}: trained once"
                     for earlier, v in found.items())


def _answers(examples: Examples, i: int) -> list[tuple[str, int]] | str:
    if examples.is_impossible[i]:
        return "none (unanswerable)"
    return list(zip(examples.answer_texts[i], examples.answer_starts[i]))


def _difference(a: Examples, i: int, a_path: str, b: Examples, j: int) -> str:
    """What differs between question i of `a` (from `a_path`) and question j of `b` (the file being loaded,
    "here" in the message): "" when nothing does."""
    def shown(value) -> str:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    parts = []
    if a.questions[i] != b.questions[j]:
        parts.append(f"question ({shown(a.questions[i])} in {a_path}, {shown(b.questions[j])} here)")
    if a.contexts[i] != b.contexts[j]:
        x, y = a.contexts[i], b.contexts[j]
        at = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        parts.append(f"context (they part at character {at})")
    if _answers(a, i) != _answers(b, j):
        parts.append(f"answer list ({shown(_answers(a, i))} in {a_path}, {shown(_answers(b, j))} here)")
    return " and ".join(parts)

"""Read SQuAD-format files into columns of examples, checking every record at load time.

Accepted layouts: the official nested SQuAD JSON (v1.1, v2.0 with `is_impossible`), the flat
Hugging Face style (a top-level `data` list of `{id, question, context, answers: {text,
answer_start}}`), and JSON lines of such records. A bad record stops the load with a message naming
the file and the record: training must never die late for something visible here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxqa.errors import DataError


@dataclasses.dataclass
class Examples:
    """Column-wise examples: one entry per question. Answers are lists (dev sets have several)."""

    ids: list[str]
    questions: list[str]
    contexts: list[str]
    answer_texts: list[list[str]]
    answer_starts: list[list[int]]
    is_impossible: np.ndarray  # bool [n]
    source: str = ""
    skipped: list[dict] = dataclasses.field(default_factory=list)  # bad records left out, with the reason

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, indices) -> Examples:
        indices = list(indices)
        return Examples(
            ids=[self.ids[i] for i in indices],
            questions=[self.questions[i] for i in indices],
            contexts=[self.contexts[i] for i in indices],
            answer_texts=[self.answer_texts[i] for i in indices],
            answer_starts=[self.answer_starts[i] for i in indices],
            is_impossible=self.is_impossible[indices],
            source=self.source,
        )


def _read_json(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass an existing SQuAD-format JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); re-encode the file as UTF-8") from None
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{path}: the file is empty; it must hold SQuAD-format JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if stripped.startswith("{") and "\n" in stripped.strip():
            records = _read_json_lines(path, text)
            if records is not None:
                return records
        raise DataError(f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg}); "
                        "fix the file or re-export it") from None


def _read_json_lines(path: Path, text: str):
    """JSON lines, or None when the first line is not a complete JSON object."""
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if lineno == 1:
                return None
            raise DataError(f"{path}: invalid JSON on line {lineno} ({err.msg}); "
                            "each line of a JSON-lines file must be one record") from None
    return records


def _flat_records(path: Path, raw):
    """Yield (where, record, nested) in one flat shape, whatever the layout: where names the record."""
    if isinstance(raw, dict) and isinstance(raw.get("data"), list):
        items = raw["data"]
    elif isinstance(raw, list):
        items = raw
    else:
        raise DataError(f"{path}: expected SQuAD JSON with a top-level 'data' list, a list of records "
                        "or JSON lines; found none of these")
    for a, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path}: data[{a}] is a {type(item).__name__}, expected an object")
        if "paragraphs" in item:  # nested official format
            for p, para in enumerate(item["paragraphs"]):
                where = f"data[{a}].paragraphs[{p}]"
                if not isinstance(para, dict) or "qas" not in para:
                    raise DataError(f"{path}: {where} has no 'qas' list; each paragraph needs 'context' and 'qas'")
                for q, qa in enumerate(para["qas"]):
                    if not isinstance(qa, dict):
                        raise DataError(f"{path}: {where}.qas[{q}] is not an object")
                    record = dict(qa, context=para.get("context"))
                    yield f"record {qa.get('id', '?')!r} ({where}.qas[{q}])", record, True
        else:
            yield f"record {item.get('id', '?')!r} (record #{a})", item, False


def _answers(record) -> tuple[list, list]:
    answers = record.get("answers", [])
    if isinstance(answers, dict):  # flat HF style: {text: [...], answer_start: [...]}
        return list(answers.get("text", [])), list(answers.get("answer_start", []))
    if isinstance(answers, list):
        return ([a.get("text") if isinstance(a, dict) else None for a in answers],
                [a.get("answer_start") if isinstance(a, dict) else None for a in answers])
    return [None], [None]


def _nearest_occurrence(context: str, text: str, start: int) -> str:
    hits, at = [], context.find(text)
    while at != -1:
        hits.append(at)
        at = context.find(text, at + 1)
    if not hits:
        return "the text does not occur in the context at all"
    return f"the text occurs at offset {min(hits, key=lambda h: abs(h - start))}"


def _check_record(path: Path, where: str, rec: dict, nested: bool, require_answers: bool, seen: dict):
    """(texts, starts, is_impossible) of a valid record; DataError naming the record otherwise."""
    for field in ("id", "question", "context"):
        value = rec.get(field)
        if not isinstance(value, str) or (field != "id" and not value.strip()):
            problem = "has no" if value is None else ("has an empty" if isinstance(value, str) else "has a non-string")
            raise DataError(f"{path}: {where} {problem} '{field}'; every record needs a non-empty "
                            f"string '{field}' (fix the record or remove it)")
    if rec["id"] in seen:
        raise DataError(f"{path}: {where} repeats id {rec['id']!r} (first seen in {seen[rec['id']]}); "
                        "ids must be unique")
    texts, starts = _answers(rec)
    # Flat (Hugging Face) records mark unanswerable questions by an empty answer list; in a file
    # to predict on, missing answers say nothing.
    is_imp = bool(rec.get("is_impossible", not texts and not nested and require_answers))
    if require_answers and not texts and not is_imp:
        raise DataError(f"{path}: {where} has no answers; give 'answers' or mark it 'is_impossible': true")
    if is_imp:
        return [], [], True
    if len(texts) != len(starts):
        raise DataError(f"{path}: {where} has {len(texts)} answer texts but {len(starts)} answer_start values")
    context = rec["context"]
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            raise DataError(f"{path}: {where} has an answer without a non-empty 'text' string and an "
                            f"integer 'answer_start' ({text!r}, {start!r})")
        if context[start:start + len(text)] != text:
            raise DataError(
                f"{path}: {where}: answer_start {start} does not match answer {text!r} (the context has "
                f"{context[start:start + len(text)]!r} there; {_nearest_occurrence(context, text, start)}); "
                "fix answer_start, or pass --on_bad_record skip to leave such records out"
            )
    return texts, starts, False


def load_examples(path: str | Path, *, require_answers: bool = True, on_bad_record: str = "error") -> Examples:
    """Load and validate one SQuAD-format file. `require_answers` is off for prediction files.

    A bad record raises DataError (`on_bad_record="error"`) or is left out and listed in
    `Examples.skipped` (`"skip"`); problems with the file itself always raise.
    """
    path = Path(path)
    ids, questions, contexts, texts_col, starts_col, impossible, skipped = [], [], [], [], [], [], []
    seen: dict[str, str] = {}
    for where, rec, nested in _flat_records(path, _read_json(path)):
        try:
            texts, starts, is_imp = _check_record(path, where, rec, nested, require_answers, seen)
        except DataError as err:
            if on_bad_record != "skip":
                raise
            skipped.append({"record": where, "problem": str(err).removeprefix(f"{path}: {where}").lstrip(": ")})
            continue
        seen[rec["id"]] = where
        ids.append(rec["id"])
        questions.append(rec["question"])
        contexts.append(rec["context"])
        texts_col.append(texts)
        starts_col.append(starts)
        impossible.append(is_imp)
    if not ids:
        reason = f" ({len(skipped)} bad records skipped, first: {skipped[0]['problem']})" if skipped else ""
        raise DataError(f"{path}: no examples found{reason}; the file holds no usable questions")
    examples = Examples(ids, questions, contexts, texts_col, starts_col, np.array(impossible, dtype=bool), str(path))
    examples.skipped = skipped
    return examples

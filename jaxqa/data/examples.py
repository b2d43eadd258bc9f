"""Read SQuAD-format files into columns of examples, checking every record at load time.

Accepted layouts: the official nested SQuAD JSON (v1.1, v2.0 with `is_impossible`), the flat
Hugging Face style (a top-level `data` list of `{id, question, context, answers: {text,
answer_start}}`), and JSON lines of such records. A bad record stops the load with a message naming
the file and the record: training must never die late for something visible here.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxqa.errors import BadRecord, DataError

REPORT_IDS = 5  # record ids listed per problem kind in a load report


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
    unlabelled: list[str] = dataclasses.field(default_factory=list)  # ids of answers no training window holds
    questions_cut: list[str] = dataclasses.field(default_factory=list)  # ids of questions cut to max_query_length
    # SQuAD v2.0's plausible answers of unanswerable questions ([] elsewhere), loaded when asked for
    # (--plausible_answer_loss_weight); None when not loaded
    plausible_texts: list[list[str]] | None = None
    plausible_starts: list[list[int]] | None = None

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
            skipped=self.skipped,
            plausible_texts=None if self.plausible_texts is None else [self.plausible_texts[i] for i in indices],
            plausible_starts=None if self.plausible_starts is None else [self.plausible_starts[i] for i in indices],
        )


def _read_json(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass an existing SQuAD-format JSON file")
    if path.suffix.lower() in (".csv", ".tsv"):  # answers there are text ("{'text': array([...]), ...}"), not lists
        raise DataError(f"{path}: {path.suffix[1:].upper()} is not read; jaxqa reads SQuAD JSON (nested), flat Hugging "
                        "Face JSON ({\"data\": [records]}) and JSON lines: write the dataset with "
                        f"Dataset.to_json(\"{path.stem}.jsonl\") instead of to_csv, or convert each row's answers to "
                        "{\"text\": [...], \"answer_start\": [...]}")
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); re-encode the file as "
                        "UTF-8, e.g. iconv -f utf-16 -t utf-8")
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0  # a UTF-8 BOM is harmless
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        at = bom + err.start
        line = raw.count(b"\n", 0, at) + 1
        raise DataError(f"{path}: not UTF-8 text: byte {at} (line {line}) is 0x{raw[at]:02x}; "
                        "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 (if it is Latin-1)") from None
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
            raise DataError(f"{path}: invalid JSON at line {lineno} column {err.colno} ({err.msg}); "
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
            raise DataError(f"{path}: data[{a}] is a {_json_type(item)}, expected an object")
        if "paragraphs" in item:  # nested official format
            if not isinstance(item["paragraphs"], list):
                raise DataError(f"{path}: data[{a}].paragraphs is a {_json_type(item['paragraphs'])}, expected "
                                "a list of {context, qas} objects")
            for p, para in enumerate(item["paragraphs"]):
                where = f"data[{a}].paragraphs[{p}]"
                if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                    raise DataError(f"{path}: {where} has no 'qas' list; each paragraph needs 'context' and 'qas'")
                for q, qa in enumerate(para["qas"]):
                    if not isinstance(qa, dict):
                        raise DataError(f"{path}: {where}.qas[{q}] is not an object")
                    record = dict(qa, context=para.get("context"))
                    yield f"record {qa.get('id', '?')!r} ({where}.qas[{q}])", record, True
        else:
            yield f"record {item.get('id', '?')!r} (record #{a})", item, False


def _answers(path: Path, where: str, record) -> tuple[list, list]:
    """(texts, answer_starts) in either answer layout, or BadRecord when the layout itself is wrong."""
    answers = record.get("answers", [])
    if isinstance(answers, dict):  # flat HF style: {text: [...], answer_start: [...]}
        texts, starts = answers.get("text", []), answers.get("answer_start", [])
        for key, value in (("text", texts), ("answer_start", starts)):
            if not isinstance(value, list):
                raise BadRecord(f"{path}: {where} has an 'answers.{key}' that is a {_json_type(value)}, not a "
                                f"list; write \"{key}\": [...] with one entry per answer", "wrong_type")
        return texts, starts
    if isinstance(answers, list):
        for i, answer in enumerate(answers):
            if not isinstance(answer, dict):
                raise BadRecord(f"{path}: {where} has an answers[{i}] that is a {_json_type(answer)}, not an "
                                "object; write {\"text\": ..., \"answer_start\": ...}", "wrong_type")
        return [a.get("text") for a in answers], [a.get("answer_start") for a in answers]
    raise BadRecord(f"{path}: {where} has 'answers' that are a {_json_type(answers)}; expected a list of "
                    "{text, answer_start} objects or {text: [...], answer_start: [...]}", "wrong_type")


def _nearest_occurrence(context: str, text: str, start: int) -> str:
    hits, at = [], context.find(text)
    while at != -1:
        hits.append(at)
        at = context.find(text, at + 1)
    if not hits:
        return "the text does not occur in the context at all"
    return f"the text occurs at offset {min(hits, key=lambda h: abs(h - start))}"


def _json_type(value) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _check_string(path: Path, where: str, rec: dict, field: str) -> None:
    value = rec.get(field)
    if isinstance(value, str) and (field == "id" or value.strip()):
        _check_text(path, where, field, value)
        return
    if value is None:
        problem, kind = "has no", "missing_field"
    elif isinstance(value, str):
        problem, kind = "has an empty", "empty_field"
    else:
        problem, kind = f"has a {_json_type(value)} ({str(value)[:30]}) as", "wrong_type"
    raise BadRecord(f"{path}: {where} {problem} '{field}'; every record needs a non-empty string '{field}' "
                    "(fix the record or remove it)", kind)


def _surrogate_at(value: str) -> int | None:
    """Where `value` holds a lone UTF-16 surrogate (JSON's "\\ud800" without its pair), if it does: no
    character, but JSON parsing lets it through; the tokenizer and every UTF-8 output fail on it, late."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def _check_text(path: Path, where: str, field: str, value: str) -> None:
    """No lone surrogate in `value` (a file's answers match its context: the context's check covers them)."""
    at = _surrogate_at(value)
    if at is not None:
        raise BadRecord(f"{path}: {where} has a lone surrogate ({value[at]!r}) at character {at} of its '{field}': "
                        "a \\u escape of half a UTF-16 pair, not text; write the character itself (or both escapes "
                        "of its pair), or pass --on_bad_record skip to leave such records out", "lone_surrogate")


def _check_answer(path: Path, where: str, context: str, i: int, text, start) -> None:
    if not isinstance(text, str):
        raise BadRecord(f"{path}: {where} has a {_json_type(text)} as the text of answer {i}; answer texts "
                        "must be strings", "missing_field" if text is None else "wrong_type")
    if not text.strip():
        raise BadRecord(f"{path}: {where} has an empty answer text (answer {i}); give the answer's text, or "
                        "mark the question 'is_impossible': true", "empty_field")
    if isinstance(start, bool) or not isinstance(start, int):
        raise BadRecord(f"{path}: {where} has a {_json_type(start)} ({start!r}) as the answer_start of answer "
                        f"{i}; it must be an integer character offset ({_nearest_occurrence(context, text, 0)})",
                        "missing_field" if start is None else "wrong_type")
    if start < 0 or start + len(text) > len(context):
        raise BadRecord(f"{path}: {where}: answer_start {start} of answer {text!r} is out of range for its "
                        f"{len(context)}-character context ({_nearest_occurrence(context, text, start)}); fix "
                        "answer_start, or pass --on_bad_record skip to leave such records out", "answer_out_of_range")
    if context[start:start + len(text)] != text:
        raise BadRecord(
            f"{path}: {where}: answer_start {start} does not match answer {text!r} (the context has "
            f"{context[start:start + len(text)]!r} there; {_nearest_occurrence(context, text, start)}); "
            "fix answer_start, or pass --on_bad_record skip to leave such records out", "answer_mismatch")


def _plausible_answers(path: Path, where: str, rec: dict) -> tuple[list, list]:
    """(texts, starts) of an unanswerable record's `plausible_answers` (SQuAD v2.0: the span a reader is
    tempted by), checked as answers are; none where the record has none."""
    if "plausible_answers" not in rec:
        return [], []
    texts, starts = _answers(path, f"{where} (its plausible_answers)", {"answers": rec["plausible_answers"]})
    for i, (text, start) in enumerate(zip(texts, starts)):
        _check_answer(path, f"{where} (its plausible_answers)", rec["context"], i, text, start)
    return texts, starts


def _check_record(path: Path, where: str, rec: dict, nested: bool, require_answers: bool, seen: dict):
    """(texts, starts, is_impossible) of a valid record; BadRecord naming the record and its problem otherwise."""
    for field in ("id", "question", "context"):
        _check_string(path, where, rec, field)
    if rec["id"] in seen:
        raise BadRecord(f"{path}: {where} repeats id {rec['id']!r} (first seen in {seen[rec['id']]}); "
                        "ids must be unique", "duplicate_id")
    texts, starts = _answers(path, where, rec)
    if not isinstance(rec.get("is_impossible", False), bool):
        raise BadRecord(f"{path}: {where} has 'is_impossible': {rec['is_impossible']!r}; it must be true or false",
                        "wrong_type")
    # Flat (Hugging Face) records mark unanswerable questions by an empty answer list; in a file
    # to predict on, missing answers say nothing.
    is_imp = rec.get("is_impossible", not texts and not nested and require_answers)
    if require_answers and not texts and not is_imp:
        raise BadRecord(f"{path}: {where} has no answers; give 'answers' or mark it 'is_impossible': true",
                        "no_answers")
    if is_imp:
        return [], [], True
    if len(texts) != len(starts):
        raise BadRecord(f"{path}: {where} has {len(texts)} answer texts but {len(starts)} answer_start values; "
                        "give one answer_start per answer text", "answer_count_mismatch")
    for i, (text, start) in enumerate(zip(texts, starts)):
        _check_answer(path, where, rec["context"], i, text, start)
    return texts, starts, False


def problem_report(skipped: list[dict], first: int = REPORT_IDS) -> dict:
    """{kind: {"count", "ids"}} of the bad records of a load: how many of each kind, and the first ids."""
    report: dict[str, dict] = {}
    for entry in skipped:
        kind = report.setdefault(entry["kind"], {"count": 0, "ids": []})
        kind["count"] += 1
        if len(kind["ids"]) < first:
            kind["ids"].append(entry["id"])
    return report


def describe(report: dict) -> str:
    """One line: `2 answer_mismatch (q1, q7), 1 duplicate_id (q3)`."""
    return ", ".join(f"{v['count']} {kind} ({', '.join(map(str, v['ids']))}{', ...' * (v['count'] > len(v['ids']))})"
                     for kind, v in report.items())


def file_report(examples: Examples) -> dict:
    """What `data_report.json` says of one loaded file."""
    report = {"examples": len(examples), "skipped": len(examples.skipped), "problems": problem_report(examples.skipped)}
    if examples.is_impossible.any():
        report["unanswerable"] = int(examples.is_impossible.sum())
    if examples.unlabelled:
        report["answers_in_no_window"] = {"count": len(examples.unlabelled), "ids": examples.unlabelled[:REPORT_IDS]}
    if examples.questions_cut:
        report["questions_cut"] = {"count": len(examples.questions_cut), "ids": examples.questions_cut[:REPORT_IDS]}
    return report


def load_examples(path: str | Path, *, require_answers: bool = True, on_bad_record: str = "error",
                  plausible: bool = False) -> Examples:
    """Load and validate one SQuAD-format file. `require_answers` is off for prediction files; `plausible`
    also loads (and checks) the plausible answers of unanswerable questions.

    Every record is checked. With `on_bad_record="error"` the first bad record raises DataError (its
    message also counts the others by kind); with `"skip"` bad records are left out and listed in
    `Examples.skipped` (see `problem_report`). Problems with the file itself always raise.
    """
    path = Path(path)
    ids, questions, contexts, texts_col, starts_col, impossible, skipped = [], [], [], [], [], [], []
    plausible_texts, plausible_starts = [], []
    first_error = None
    seen: dict[str, str] = {}
    for where, rec, nested in _flat_records(path, _read_json(path)):
        try:
            texts, starts, is_imp = _check_record(path, where, rec, nested, require_answers, seen)
            tempting = _plausible_answers(path, where, rec) if plausible and is_imp else ([], [])
        except BadRecord as err:
            first_error = first_error or err
            usable_id = isinstance(rec.get("id"), str) and _surrogate_at(rec["id"]) is None  # (skipped_records.jsonl)
            skipped.append({"record": where, "id": rec["id"] if usable_id else where,
                            "kind": err.kind, "problem": str(err).removeprefix(f"{path}: {where}").lstrip(": ")})
            continue
        seen[rec["id"]] = where
        ids.append(rec["id"])
        questions.append(rec["question"])
        contexts.append(rec["context"])
        texts_col.append(texts)
        starts_col.append(starts)
        impossible.append(is_imp)
        plausible_texts.append(tempting[0])
        plausible_starts.append(tempting[1])
    if first_error is not None and on_bad_record != "skip":
        others = f" [{len(skipped)} bad records in this file: {describe(problem_report(skipped))}]" if len(skipped) > 1 else ""
        raise DataError(f"{first_error}{others}")
    if not ids:
        reason = f" ({len(skipped)} bad records skipped: {describe(problem_report(skipped))})" if skipped else ""
        raise DataError(f"{path}: no examples found{reason}; the file holds no usable questions")
    examples = Examples(ids, questions, contexts, texts_col, starts_col, np.array(impossible, dtype=bool), str(path))
    examples.skipped = skipped
    if plausible:
        examples.plausible_texts, examples.plausible_starts = plausible_texts, plausible_starts
    return examples

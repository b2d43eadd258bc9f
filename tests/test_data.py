"""Reading SQuAD files in every layout, and one-line errors for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, write_json

from jaxqa.data import load_examples
from jaxqa.errors import DataError

RECORD = {"id": "q1", "question": "Who won?", "context": "The Broncos won the game.",
          "answers": {"text": ["The Broncos"], "answer_start": [0]}}


def test_nested_v1_and_v2(data_dir):
    v1 = load_examples(data_dir / "squad_v1.1/dev.json")
    assert len(v1) == 1086 and not v1.is_impossible.any()
    assert v1.ids[0] == "56ddde6b9a695914005b9628" and v1.answer_texts[0] == ["France"] * 4
    v2 = load_examples(data_dir / "squad_v2.0/dev.json")
    assert len(v2) == 1181 and int(v2.is_impossible.sum()) == 663
    assert all(texts == [] for texts, imp in zip(v2.answer_texts, v2.is_impossible) if imp)


def test_flat_and_json_lines(data_dir, tmp_path):
    flat = load_examples(data_dir / "fixtures/flat_sample.json")
    assert len(flat) == 14 and int(flat.is_impossible.sum()) == 6  # empty answer lists = unanswerable
    raw = json.loads((data_dir / "fixtures/flat_sample.json").read_text())["data"]
    lines = tmp_path / "sample.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in raw) + "\n")
    again = load_examples(lines)
    assert again.ids == flat.ids and again.answer_starts == flat.answer_starts


BAD_CASES = {
    "missing_file": (None, r"missing_file\.json: file not found; pass an existing SQuAD-format JSON file"),
    "invalid_json": ('{"data": [ {"id": 1,, } ]}', r"invalid_json\.json: invalid JSON at line 1 column 21 \(Expecting property name enclosed in double quotes\).*fix the file"),
    "no_context": ({"data": [{k: v for k, v in RECORD.items() if k != "context"}]},
                   r"record 'q1' \(record #0\) has no 'context'; every record needs a non-empty string 'context'"),
    "bad_answer_start": ({"data": [dict(RECORD, answers={"text": ["Broncos"], "answer_start": [2]})]},
                         r"record 'q1' \(record #0\): answer_start 2 does not match answer 'Broncos' \(the context "
                         r"has 'e Bronc' there; the text occurs at offset 4\); fix answer_start"),
    "empty_dataset": ({"version": "1.1", "data": []}, r"empty_dataset\.json: no examples found"),
    "nested_no_context": ({"data": [{"title": "t", "paragraphs": [{"qas": [dict(RECORD)]}]}]},
                          r"record 'q1' \(data\[0\]\.paragraphs\[0\]\.qas\[0\]\) has no 'context'"),
    "duplicate_id": ({"data": [RECORD, RECORD]}, r"record 'q1' \(record #1\) repeats id 'q1'"),
}


def _write_case(tmp_path, name):
    content, _ = BAD_CASES[name]
    path = tmp_path / f"{name}.json"
    if content is None:
        return path
    if isinstance(content, str):
        path.write_text(content)
        return path
    return write_json(path, content)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_errors(tmp_path, name):
    path = _write_case(tmp_path, name)
    with pytest.raises(DataError, match=BAD_CASES[name][1]) as err:
        load_examples(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("name", ["missing_file", "bad_answer_start", "empty_dataset"])
def test_cli_prints_one_line_and_exits_2(tmp_path, name):
    path = _write_case(tmp_path, name)
    proc = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--do_train", "--train_file", str(path),
                           "--output_dir", str(tmp_path / "out"), "--accelerator", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("jaxqa: error:")]
    assert len(errors) == 1 and str(path) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_model_dir_without_weights(tmp_path, tiny_bert_dir, data_dir):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (model / name).write_bytes((tiny_bert_dir / name).read_bytes())
    proc = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(model), "--do_eval",
                           "--validation_file", str(data_dir / "fixtures/flat_sample.json"),
                           "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"jaxqa: error: {model}: no model weights found (looked for model.safetensors, pytorch_model.bin); "
        "point --model_name_or_path at a directory that holds the checkpoint")

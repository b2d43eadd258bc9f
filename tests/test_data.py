"""Reading SQuAD files in every layout, and one-line errors for every bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, write_json

from jaxqa.data.examples import load_examples, problem_report
from jaxqa.data.features import checked_features
from jaxqa.errors import DataError

RECORD = {"id": "q1", "question": "Who won?", "context": "The Broncos won the game.",
          "answers": {"text": ["The Broncos"], "answer_start": [0]}}


def test_nested_v1_and_v2(data_dir):
    v1 = load_examples(data_dir / "squad_v1.1/dev.json")
    assert len(v1) == 1086 and not v1.is_impossible.any()
    assert v1.ids[0] == "56ddde6b9a695914005b9628" and v1.answer_texts[0] == ["France"] * 4
    v2 = load_examples(data_dir / "squad_v2.0/dev.json")
    assert len(v2) == 1659 and int(v2.is_impossible.sum()) == 832
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



def test_csv_is_refused_naming_the_formats_read(tmp_path):
    """A CSV as Hugging Face datasets' to_csv writes SQuAD (answers as the text of a dict of NumPy arrays): one
    line naming the formats read and how to write one, not a JSON parse error."""
    path = tmp_path / "train.csv"
    path.write_text("id,title,context,question,answers\n"
                    "q1,Super_Bowl,The Broncos won the game.,Who won?,\"{'text': array(['The Broncos'], dtype=object), "
                    "'answer_start': array([0], dtype=int32)}\"\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert str(err.value) == (
        f"{path}: CSV is not read; jaxqa reads SQuAD JSON (nested), flat Hugging Face JSON ({{\"data\": [records]}}) "
        "and JSON lines: write the dataset with Dataset.to_json(\"train.jsonl\") instead of to_csv, or convert each "
        "row's answers to {\"text\": [...], \"answer_start\": [...]}")


def test_a_run_output_directory_given_as_the_model_points_at_its_model(tmp_path):
    """OUTPUT_DIR (checkpoints/, model/, no config.json of its own) where a model directory is wanted: one line
    pointing at OUTPUT_DIR/model, before any tokenizer is looked for there."""
    from jaxqa.errors import ModelError
    from jaxqa.models.weights import resolve_model_dir

    out = tmp_path / "run"
    (out / "checkpoints/5").mkdir(parents=True)
    (out / "model").mkdir()
    write_json(out / "model/config.json", {"model_type": "bert"})
    with pytest.raises(ModelError) as err:
        resolve_model_dir(str(out))
    assert str(err.value) == (f"{out}: a jaxqa run's output directory, not a model directory; the model it trained "
                              f"is {out / 'model'}: pass that")
    assert resolve_model_dir(str(out / "model")) == out / "model"

# tests/data/bad: one hand-written malformed file per problem. Each maps to the whole one-line error
# (after "FILE: ") in the default mode and, with --on_bad_record skip, to how many records are left out
# by kind, or to the error that still stops the load (problems with the file itself, nothing usable).
SKIP_HINT = r"; fix answer_start, or pass --on_bad_record skip to leave such records out"
NEEDS_STRING = r"; every record needs a non-empty string '{0}' \(fix the record or remove it\)"
BAD_FILES = {
    "all_records_bad.json": (
        r"record 'b1' \(record #0\): answer_start 0 of answer 'Somebody' is out of range for its 7-character context "
        r"\(the text does not occur in the context at all\)" + SKIP_HINT
        + r" \[2 bad records in this file: 1 answer_out_of_range \(b1\), 1 wrong_type \(b2\)\]",
        r"no examples found \(2 bad records skipped: 1 answer_out_of_range \(b1\), 1 wrong_type \(b2\)\); the file "
        r"holds no usable questions"),
    "answer_count_mismatch.json": (
        r"record 'b1' \(record #1\) has 2 answer texts but 1 answer_start values; give one answer_start per answer text",
        {"answer_count_mismatch": 1}),
    "answer_item_not_an_object.json": (
        r"record 'b1' \(record #1\) has an answers\[0\] that is a string, not an object; "
        r"write \{\"text\": \.\.\., \"answer_start\": \.\.\.\}", {"wrong_type": 1}),
    "answer_longer_than_window.json": (
        r"no usable training window: no window holds the whole answer of any of the 1 questions \(answers longer than a "
        r"window's context room, or text the tokenizer drops\); raise --max_seq_length or check the answers", "same"),
    "answer_not_in_context.json": (
        r"record 'b1' \(record #1\): answer_start 4 does not match answer 'Patriots' \(the context has 'Panthers' there; "
        r"the text does not occur in the context at all\)" + SKIP_HINT, {"answer_mismatch": 1}),
    "answer_start_is_string.json": (
        r"record 'b1' \(record #1\) has a string \('4'\) as the answer_start of answer 0; it must be an integer character "
        r"offset \(the text occurs at offset 4\)", {"wrong_type": 1}),
    "answer_start_out_of_range.json": (
        r"record 'b1' \(record #1\): answer_start 500 of answer 'Panthers' is out of range for its 18-character context "
        r"\(the text occurs at offset 4\)" + SKIP_HINT
        + r" \[2 bad records in this file: 2 answer_out_of_range \(b1, b2\)\]", {"answer_out_of_range": 2}),
    "answer_text_not_a_list.json": (
        r"record 'b1' \(record #1\) has an 'answers.text' that is a string, not a list; write \"text\": \[\.\.\.\] with "
        r"one entry per answer", {"wrong_type": 1}),
    "context_without_tokens.json": (
        r"record 'b1' has a context with no token for this tokenizer \(only whitespace, control or combining "
        r"characters\); fix or remove the record, or pass --on_bad_record skip", {"context_without_tokens": 1}),
    "duplicate_ids.json": (
        r"record 'b1' \(record #2\) repeats id 'b1' \(first seen in record 'b1' \(record #1\)\); ids must be unique "
        r"\[2 bad records in this file: 2 duplicate_id \(b1, ok1\)\]", {"duplicate_id": 2}),
    "empty_answer_text.json": (
        r"record 'b1' \(record #1\) has an empty answer text \(answer 0\); give the answer's text, or mark the question "
        r"'is_impossible': true", {"empty_field": 1}),
    "empty_context.json": (r"record 'b1' \(record #1\) has an empty 'context'" + NEEDS_STRING.format("context"),
                           {"empty_field": 1}),
    "empty_file.json": (r"the file is empty; it must hold SQuAD-format JSON", "same"),
    "empty_question.json": (r"record 'b1' \(record #1\) has an empty 'question'" + NEEDS_STRING.format("question"),
                            {"empty_field": 1}),
    "id_is_number.json": (r"record 7 \(record #1\) has a number \(7\) as 'id'" + NEEDS_STRING.format("id"),
                          {"wrong_type": 1}),
    "invalid_json.json": (r"invalid JSON at line 3 column 1 \(Expecting property name enclosed in double quotes\); "
                          r"fix the file or re-export it", "same"),
    "is_impossible_string.json": (r"record 'b1' \(record #1\) has 'is_impossible': 'false'; it must be true or false",
                                  {"wrong_type": 1}),
    "latin1.json": (r"not UTF-8 text: byte 46 \(line 1\) is 0xe9; re-encode the file as UTF-8, e.g. iconv -f latin1 "
                    r"-t utf-8 \(if it is Latin-1\)", "same"),
    "lone_surrogate.json": (
        r"record 'b1' \(record #1\) has a lone surrogate \('\\ud800'\) at character 8 of its 'question': a \\u "
        r"escape of half a UTF-16 pair, not text; write the character itself \(or both escapes of its pair\), or pass "
        r"--on_bad_record skip to leave such records out \[2 bad records in this file: 2 lone_surrogate \(b1, b2\)\]",
        {"lone_surrogate": 2}),
    "missing_context.json": (r"record 'b1' \(record #1\) has no 'context'" + NEEDS_STRING.format("context"),
                             {"missing_field": 1}),
    "nested_offset_and_no_answers.json": (
        r"record 'b1' \(data\[0\]\.paragraphs\[0\]\.qas\[1\]\): answer_start 30 does not match answer 'Broncos' \(the "
        r"context has ' the Br' there; the text occurs at offset 35\)" + SKIP_HINT
        + r" \[2 bad records in this file: 1 answer_mismatch \(b1\), 1 no_answers \(b2\)\]",
        {"answer_mismatch": 1, "no_answers": 1}),
    "paragraphs_not_a_list.json": (r"data\[0\]\.paragraphs is a string, expected a list of \{context, qas\} objects",
                                   "same"),
    "question_is_number.json": (r"record 'b1' \(record #1\) has a number \(42\) as 'question'"
                                + NEEDS_STRING.format("question"), {"wrong_type": 1}),
    "torn_json_lines.jsonl": (r"invalid JSON at line 2 column 50 \(Unterminated string starting at\); each line of "
                              r"a JSON-lines file must be one record", "same"),
    "utf16.json": (r"UTF-16 text \(it starts with a UTF-16 byte-order mark\); re-encode the file as UTF-8, e.g. iconv "
                   r"-f utf-16 -t utf-8", "same"),
}
BAD_DIR = ROOT / "tests/data/bad"


def _load_for_training(path, minilm_tokenizer, on_bad_record):
    """What the trainer does to a training file: load, then tokenize and check the windows."""
    examples = load_examples(path, on_bad_record=on_bad_record)
    return checked_features(examples, minilm_tokenizer, training=True, on_bad_record=on_bad_record,
                            max_seq_length=64, doc_stride=16, max_query_length=16)


def test_bad_corpus_is_complete():
    assert sorted(p.name for p in BAD_DIR.iterdir()) == sorted(BAD_FILES) and len(BAD_FILES) >= 15


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_error_and_skip_count(name, minilm_tokenizer):
    path = BAD_DIR / name
    error, skipped = BAD_FILES[name]
    with pytest.raises(DataError) as err:
        _load_for_training(path, minilm_tokenizer, "error")
    assert re.fullmatch(f"{re.escape(str(path))}: {error}", str(err.value)), str(err.value)
    if isinstance(skipped, dict):
        examples, features = _load_for_training(path, minilm_tokenizer, "skip")
        assert problem_report(examples.skipped) == {
            kind: {"count": n, "ids": [s["id"] for s in examples.skipped if s["kind"] == kind]}
            for kind, n in skipped.items()}
        kept = ["ok1", "b1"] if name == "duplicate_ids.json" else ["ok1"]  # the first of duplicates stays
        assert examples.ids == kept and len(features) == len(kept)
        assert all(s["problem"] and s["record"] for s in examples.skipped)
    else:
        with pytest.raises(DataError) as err:
            _load_for_training(path, minilm_tokenizer, "skip")
        expected = error if skipped == "same" else skipped
        assert re.fullmatch(f"{re.escape(str(path))}: {expected}", str(err.value)), str(err.value)


def test_lone_surrogate_is_named_by_record_and_field():
    """A \\ud800 escape with no pair parses into a str the tokenizer cannot take: refused at load time, in a
    question or a context alike, naming where it is."""
    skipped = load_examples(BAD_DIR / "lone_surrogate.json", on_bad_record="skip").skipped
    assert [(s["id"], s["problem"].split(":")[0]) for s in skipped] == [
        ("b1", "has a lone surrogate ('\\ud800') at character 8 of its 'question'"),
        ("b2", "has a lone surrogate ('\\udfff') at character 12 of its 'context'")]


def test_window_checks_before_tokenising_assume_no_worst_case_question(minilm_tokenizer):
    """At start-up only what no data can change is refused: a window that holds nothing but its special
    tokens. --max_query_length and --doc_stride are checked against the real questions when tokenising."""
    from jaxqa.data.features import check_window
    from jaxqa.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        check_window(3, 0, 64, minilm_tokenizer)
    assert str(err.value) == ("--max_seq_length 3 leaves no room for a question and its context: a window holds 3 "
                              "special tokens; raise --max_seq_length")
    check_window(64, 16, 64, minilm_tokenizer)  # a 64-token question would leave no room, real ones do


def test_cut_questions_are_counted_per_file(tmp_path, data_dir, minilm_tokenizer):
    """A question longer than --max_query_length is cut: the file's report counts such questions and names
    the first, also when the features come from the feature cache."""
    from jaxqa.data.examples import file_report
    from jaxqa.data.feature_cache import cached_tokenize

    raw = json.loads((data_dir / "fixtures/flat_sample.json").read_text())["data"][:6]
    raw[4]["question"] = "why " * 3000 + raw[4]["question"]
    path = write_json(tmp_path / "long_question.json", {"data": raw})
    window = dict(max_seq_length=128, doc_stride=32, max_query_length=24)  # the sample's longest has 22 tokens
    hits = []

    def cached(examples, tokenizer, **settings):
        features, hit = cached_tokenize(examples, tokenizer, tmp_path / "cache", **settings)
        hits.append(hit)
        return features

    for _ in range(2):
        examples, _ = checked_features(load_examples(path), minilm_tokenizer, training=True, tokenize_fn=cached,
                                       **window)
        assert examples.questions_cut == [raw[4]["id"]]
        assert file_report(examples)["questions_cut"] == {"count": 1, "ids": [raw[4]["id"]]}
    assert hits == [False, True]  # tokenised, then read from the cache
    normal, _ = checked_features(load_examples(data_dir / "fixtures/flat_sample.json"), minilm_tokenizer,
                                 training=False, **window)
    assert normal.questions_cut == [] and "questions_cut" not in file_report(normal)


def test_trainer_load_warns_of_cut_questions(tmp_path, data_dir, minilm_tokenizer, caplog):
    """The log names the file, the count, the first ids and the fix."""
    from jaxqa.config import RunConfig
    from jaxqa.training.run_setup import DataReport, load_split

    raw = json.loads((data_dir / "fixtures/flat_sample.json").read_text())["data"][:6]
    for i in (1, 4):
        raw[i]["question"] = "why " * 40 + raw[i]["question"]
    path = str(write_json(tmp_path / "long_question.json", {"data": raw}))
    config = RunConfig(output_dir=str(tmp_path / "out"), max_query_length=32, max_seq_length=128, doc_stride=32,
                       feature_cache_dir="none")
    report = DataReport()
    with caplog.at_level("WARNING", logger="jaxqa"):
        load_split(config, path, None, minilm_tokenizer, report)
    assert report.files[path]["questions_cut"] == {"count": 2, "ids": [raw[1]["id"], raw[4]["id"]]}
    assert [r.getMessage() for r in caplog.records if "cut" in r.getMessage()] == [
        f"{path}: 2 question(s) are longer than --max_query_length 32 tokens and were cut to it (e.g. {raw[1]['id']}, "
        f"{raw[4]['id']}); a larger --max_query_length would keep them whole"]


def test_several_training_files_are_checked_each_and_joined(tmp_path, data_dir, minilm_tokenizer):
    """--train_file v2.0,v1.1: each file loaded and checked alone (an error names its file), then one split
    whose windows are those of tokenising the joined examples (example_index moved past earlier files)."""
    import dataclasses

    from jaxqa.config import RunConfig
    from jaxqa.data.features import tokenize
    from jaxqa.training.run_setup import _load_splits

    v2, v1 = str(data_dir / "squad_v2.0/train.json"), str(data_dir / "squad_v1.1/train.json")
    window = dict(max_seq_length=128, doc_stride=32, max_query_length=64)
    config = RunConfig(train_file=f"{v2},{v1}", do_train=True, max_train_samples=20, feature_cache_dir="none",
                       output_dir=str(tmp_path / "out"), **window)
    train = _load_splits(config, minilm_tokenizer)["train"]
    first = [load_examples(path).select(range(20)) for path in (v2, v1)]
    assert train.examples.ids == first[0].ids + first[1].ids and train.examples.source == f"{v2},{v1}"
    assert train.examples.is_impossible.tolist() == first[0].is_impossible.tolist() + [False] * 20
    whole = tokenize(train.examples, minilm_tokenizer, **window)
    for field in dataclasses.fields(whole):
        np.testing.assert_array_equal(getattr(train.features, field.name), getattr(whole, field.name), field.name)
    report = json.loads((tmp_path / "out/data_report.json").read_text())  # written for several files
    repeats = {v2: {"count": 3950, "ids": report[v1]["already_in"][v2]["ids"]}}  # of the files, before the first 20
    assert report == {v2: {"examples": 20, "skipped": 0, "problems": {}, "unanswerable": int(first[0].is_impossible.sum())},
                      v1: {"examples": 20, "skipped": 0, "problems": {}, "already_in": repeats}}
    bad = str(BAD_DIR / "answer_not_in_context.json")
    with pytest.raises(DataError, match=f"^{re.escape(bad)}: "):
        _load_splits(dataclasses.replace(config, train_file=f"{v1},{bad}"), minilm_tokenizer)


def test_a_question_in_both_shared_training_files_trains_once(tmp_path, data_dir, minilm_tokenizer, caplog):
    """SQuAD v2.0's answerable questions are v1.1 questions (same ids, question, context, answers): the shared
    v2.0 and v1.1 train files hold 3,950 of them. Each trains once, from the first file that holds it; the log
    and data_report.json count them under the later file."""
    from jaxqa.config import RunConfig
    from jaxqa.training.run_setup import _load_splits

    v2, v1 = str(data_dir / "squad_v2.0/train.json"), str(data_dir / "squad_v1.1/train.json")
    config = RunConfig(train_file=f"{v2},{v1}", do_train=True, feature_cache_dir="none", output_dir=str(tmp_path / "out"),
                       max_seq_length=128, doc_stride=32)
    with caplog.at_level("INFO", logger="jaxqa"):
        train = _load_splits(config, minilm_tokenizer)["train"]
    v2_ids, v1_ids = load_examples(v2).ids, load_examples(v1).ids
    only_v1 = [i for i in v1_ids if i not in set(v2_ids)]
    assert (len(v2_ids), len(v1_ids), len(only_v1)) == (7982, 7753, 3803)
    assert train.examples.ids == v2_ids + only_v1 and len(set(train.examples.ids)) == 11785
    assert set(train.features.example_index.tolist()) == set(range(11785))  # every question has its windows
    report = json.loads((tmp_path / "out/data_report.json").read_text())[v1]
    assert report["examples"] == 3803 and report["already_in"] == {v2: {"count": 3950, "ids": [
        "5733a5f54776f41900660f45", "5733a5f54776f41900660f48", "5733a5f54776f41900660f44",
        "5733a5f54776f41900660f46", "5733a5f54776f41900660f47"]}}
    messages = [r.getMessage() for r in caplog.records]
    assert f"3,950 questions appear in both {v2} and {v1}: trained once" in messages
    assert "training on 2 files: 11785 examples (4032 unanswerable) -> 25302 features" in messages


def _paragraphs(path, *contexts_of):
    """The paragraphs of a real SQuAD file that hold the given question ids (one id per paragraph)."""
    paragraphs = [p for article in json.loads(path.read_text())["data"] for p in article["paragraphs"]]
    return [next(p for p in paragraphs if any(q["id"] == qid for q in p["qas"])) for qid in contexts_of]


def test_repeats_leave_a_later_file_before_max_train_samples_and_the_overlap_check(tmp_path, data_dir,
                                                                                    minilm_tokenizer):
    """Real records: a v2.0 passage (5 v1.1 questions, 5 unanswerable) in one file; the same passage's v1.1
    questions, then another passage's 14, in the next. The repeats leave the later file first, so
    --max_train_samples 12 takes 12 new questions there, and the eval-overlap check (the dev file is the shared
    passage) counts the shared questions once, under the file that trains them."""
    from jaxqa.config import RunConfig
    from jaxqa.training.run_setup import _load_splits

    shared = "5733a5f54776f41900660f45"
    (v2_para,) = _paragraphs(data_dir / "squad_v2.0/train.json", shared)
    v1_shared, v1_other = _paragraphs(data_dir / "squad_v1.1/train.json", shared, "56becb823aeaaa14008c948b")
    a = str(write_json(tmp_path / "a.json", {"data": [{"title": "t", "paragraphs": [v2_para]}]}))
    b = str(write_json(tmp_path / "b.json", {"data": [{"title": "t", "paragraphs": [v1_shared, v1_other]}]}))
    dev = str(write_json(tmp_path / "dev.json", {"data": [{"title": "t", "paragraphs": [v1_shared]}]}))
    config = RunConfig(train_file=f"{a},{b}", do_train=True, max_train_samples=12, validation_file=dev, do_eval=True,
                       feature_cache_dir="none", output_dir=str(tmp_path / "out"), max_seq_length=128, doc_stride=32)
    train = _load_splits(config, minilm_tokenizer)["train"]
    a_ids, repeated = [q["id"] for q in v2_para["qas"]], [q["id"] for q in v1_shared["qas"]]
    assert len(a_ids) == 10 and len(v1_other["qas"]) == 14 and set(repeated) < set(a_ids)
    assert train.examples.ids == a_ids + [q["id"] for q in v1_other["qas"][:12]]
    report = json.loads((tmp_path / "out/data_report.json").read_text())
    assert report[a]["eval_overlap"] == {"shared_with": {dev: {"examples": 10, "passages": 1, "ids": a_ids[:5]}},
                                         "left_out": 0}
    assert report[b] == {"examples": 12, "skipped": 0, "problems": {},
                         "already_in": {a: {"count": 5, "ids": repeated}}}


def test_one_id_for_two_different_questions_in_two_training_files_is_refused(tmp_path, data_dir, minilm_tokenizer):
    """The same id with other content in a later training file stops the load, naming both files, the id, what
    differs and the fix; so does a file that adds nothing (all its questions in an earlier one, e.g. a file given
    twice). A repeat within one file stays a duplicate_id bad record (test_bad_input_errors)."""
    import copy

    from jaxqa.config import RunConfig
    from jaxqa.training.run_setup import _load_splits

    (para,) = _paragraphs(data_dir / "squad_v1.1/train.json", "5733a5f54776f41900660f45")
    a = str(write_json(tmp_path / "a.json", {"data": [{"title": "t", "paragraphs": [para]}]}))
    asked, unanswerable = copy.deepcopy(para), copy.deepcopy(para)
    asked["qas"][2]["question"] = "Who was the most famous person born in Warsaw?"
    unanswerable["qas"][0].update(answers=[], is_impossible=True)
    b, c = (str(write_json(tmp_path / f"{n}.json", {"data": [{"title": "t", "paragraphs": [p]}]}))
            for n, p in (("b", asked), ("c", unanswerable)))
    qid, question = para["qas"][2]["id"], para["qas"][2]["question"]

    def load(*files):
        config = RunConfig(train_file=",".join(files), do_train=True, feature_cache_dir="none",
                           output_dir=str(tmp_path / "out"), max_seq_length=128, doc_stride=32)
        _load_splits(config, minilm_tokenizer)

    with pytest.raises(DataError) as err:
        load(a, b)
    assert str(err.value) == (
        f"{b}: question id {qid!r} is also in {a}, with a different question ({question!r} in {a}, "
        "'Who was the most famous person born in Warsaw?' here); one id must name one question (a question in several "
        "training files trains once): correct the record that is wrong, or give one of them a new id")
    with pytest.raises(DataError, match=re.escape(
            f"{c}: question id {para['qas'][0]['id']!r} is also in {a}, with a different answer list ([('Nobel Prize', "
            f"188), ('Nobel Prize', 188), ('Nobel Prize', 188)] in {a}, 'none (unanswerable)' here); one id must")):
        load(a, c)
    with pytest.raises(DataError, match=re.escape(f"{a}: every one of its 5 questions is also in {a}, so it adds "
                                                  "nothing to train on; leave it out of --train_file")):
        load(a, a)


def test_training_passages_that_the_run_scores_are_found_and_dropped_on_request(tmp_path, data_dir, minilm_tokenizer,
                                                                                 caplog):
    """The shared v2.0 dev split is 194 passages of the shared v1.1 dev split (its answerable questions are v1.1
    questions, same ids): training on v1.1 dev and scoring on v2.0 dev is scoring memory. The 828 v1.1 questions on
    those passages are counted and warned of by default, left out with --on_eval_overlap drop, refused with error.
    With --max_train_samples N only the first N questions are trained on, so only the shared ones among them count:
    the first N are taken, then those are dropped."""
    import dataclasses

    from jaxqa.config import RunConfig
    from jaxqa.data import overlap
    from jaxqa.training.run_setup import _load_splits

    v1, dev = data_dir / "squad_v1.1/dev.json", data_dir / "squad_v2.0/dev.json"
    v2_ids = {q["id"] for a in json.loads(dev.read_text())["data"] for p in a["paragraphs"] for q in p["qas"]}
    v1_ids = load_examples(v1).ids
    # Found by id, not by passage text: every v1.1 question that v2.0 kept, plus one on a shared passage that
    # v2.0 dropped (Pharmacy); the other 258 are Apollo_program's and 6 Normans passages v2.0 does not hold.
    on_dev = [i for i in v1_ids if i in v2_ids or i == "5726edecdd62a815002e957e"]
    elsewhere = [i for i in v1_ids if i not in on_dev]
    assert len(on_dev) == 828 and len(elsewhere) == 258
    kept, found = overlap.apply(load_examples(v1), {str(dev): load_examples(dev)}, "drop")
    assert kept.ids == elsewhere
    assert found == {"shared_with": {str(dev): {"examples": 828, "passages": 194, "ids": on_dev[:5]}}, "left_out": 828}
    with pytest.raises(DataError, match=f"^{re.escape(str(v1))}: 828 training examples on 194 passages are also in "
                                        f"{re.escape(str(dev))} .*--on_eval_overlap drop"):
        overlap.apply(load_examples(v1), {str(dev): load_examples(dev)}, "error")

    # A run on the first 300 questions: 204 of them are on 61 of the shared passages (the v1.1 file's paragraphs
    # holding them, counted by position in the file).
    n = 300
    first_on_dev = [i for i in v1_ids[:n] if i in on_dev]
    paragraphs = [(a, p) for a, art in enumerate(json.loads(v1.read_text())["data"])
                  for p, para in enumerate(art["paragraphs"]) for _ in para["qas"]]
    shared_paragraphs = {paragraphs[k] for k, i in enumerate(v1_ids[:n]) if i in on_dev}
    assert len(first_on_dev) == 204 and len(shared_paragraphs) == 61
    in_run = {"shared_with": {str(dev): {"examples": 204, "passages": 61, "ids": first_on_dev[:5]}}}
    config = RunConfig(train_file=str(v1), validation_file=str(dev), do_train=True, do_eval=True, max_train_samples=n,
                       max_seq_length=128, doc_stride=32, feature_cache_dir="none", output_dir=str(tmp_path / "out"))
    with caplog.at_level("WARNING", logger="jaxqa"):
        warned = _load_splits(config, minilm_tokenizer)["train"]
    assert warned.examples.ids == v1_ids[:n]  # warn: trained on as given
    assert [r.getMessage() for r in caplog.records if "memory" in r.getMessage()] == [
        f"{v1}: 204 examples on 61 passages also in {dev}: scores there measure memory, not generalisation; "
        "--on_eval_overlap drop leaves them out of training"]
    report = json.loads((tmp_path / "out/data_report.json").read_text())
    assert report[str(v1)]["eval_overlap"] == {**in_run, "left_out": 0} and report[str(v1)]["examples"] == n
    dropped = _load_splits(dataclasses.replace(config, on_eval_overlap="drop"), minilm_tokenizer)["train"]
    assert dropped.examples.ids == [i for i in v1_ids[:n] if i not in on_dev]  # the first 300, less the 204
    assert set(dropped.examples.contexts).isdisjoint(load_examples(dev).contexts)
    report = json.loads((tmp_path / "out/data_report.json").read_text())
    assert report[str(v1)]["eval_overlap"] == {**in_run, "left_out": 204} and report[str(v1)]["examples"] == 96
    with pytest.raises(DataError, match=f"^{re.escape(str(v1))}: 204 training examples on 61 passages are also in "):
        _load_splits(dataclasses.replace(config, on_eval_overlap="error"), minilm_tokenizer)

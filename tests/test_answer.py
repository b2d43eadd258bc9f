"""Prediction without labels: the one-shot API, --do_predict, and the exported model in PyTorch."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, require

from jaxqa.errors import ModelError
from jaxqa.models import weights
from jaxqa.models.loading import load_model
from jaxqa.scoring.answer import QuestionAnswerer


def test_export_loads_in_transformers_with_equal_logits(tmp_path, tiny_bert_dir, minilm_tokenizer):
    """Round trip: HF checkpoint -> jaxqa params -> exported directory -> PyTorch: the logits jaxqa
    computes, and those of the original checkpoint. (transformers 5 has no question-answering
    pipeline any more; its Auto classes load the directory.)"""
    torch = require("torch")
    from flax import nnx
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, BertForQuestionAnswering

    from jaxqa.models.loading import forward

    graphdef, params, cfg = load_model(tiny_bert_dir)
    out = weights.save_pretrained(nnx.to_pure_dict(params), cfg, tmp_path / "export", minilm_tokenizer,
                                  dict(max_seq_length=64, doc_stride=16, max_query_length=16, max_answer_length=5))
    assert (out / weights.SETTINGS_FILE).is_file()  # beside config.json: transformers loads the directory as before
    reloaded = AutoModelForQuestionAnswering.from_pretrained(str(out)).eval()
    original = BertForQuestionAnswering.from_pretrained(str(tiny_bert_dir)).eval()
    encoded = AutoTokenizer.from_pretrained(str(out))("who sat?", "the cat sat on the mat", return_tensors="np")
    with torch.no_grad():
        a = reloaded(**{k: torch.tensor(v) for k, v in encoded.items()})
        b = original(**{k: torch.tensor(v) for k, v in encoded.items()})
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.end_logits, b.end_logits)
    ours = forward(graphdef, params, {k: np.asarray(v, np.int32) for k, v in encoded.items()})
    np.testing.assert_allclose(np.asarray(ours[0]), a.start_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(ours[1]), a.end_logits.numpy(), atol=1e-4)
    _, params_again, _ = load_model(out)
    for x, y in zip(jax_leaves(params), jax_leaves(params_again)):
        np.testing.assert_array_equal(x, y)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_one_shot_answer_over_long_context(tiny_bert_dir):
    qa = QuestionAnswerer.from_pretrained(tiny_bert_dir, max_seq_length=64, doc_stride=16, max_query_length=16)
    context = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))  # many windows
    result = qa("Which topic?", context)
    assert set(result) == {"answer", "start", "end", "score", "probability"} and 0 < result["probability"] < 1
    assert result["answer"] and context[result["start"]:result["end"]] == result["answer"]
    batch = qa.answer_batch(["Which topic?", "Which sentence?"], [context, "A short one."])
    assert batch[0] == result and batch[1]["answer"] in "A short one."


def test_do_predict_writes_predictions_without_labels(tmp_path, tiny_bert_dir, data_dir):
    records = json.loads((data_dir / "fixtures/flat_sample.json").read_text())["data"]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("\n".join(json.dumps({k: r[k] for k in ("id", "question", "context")}) for r in records))
    proc = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(tiny_bert_dir),
                           "--do_predict", "--test_file", str(test_file), "--output_dir", str(tmp_path / "out"),
                           "--max_seq_length", "128", "--doc_stride", "32"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    preds = json.loads((tmp_path / "out/predict_predictions.json").read_text())
    nbest = json.loads((tmp_path / "out/predict_nbest_predictions.json").read_text())
    assert list(preds) == [r["id"] for r in records]
    for r in records:
        assert preds[r["id"]] in r["context"] and len(nbest[r["id"]]) == 20
        assert nbest[r["id"]][0]["text"] == preds[r["id"]]


def test_answer_probability_is_the_softmax_over_the_nbest_spans_and_no_answer(tiny_bert_dir, minilm_tokenizer):
    """One window: every valid span (in the context, end >= start, at most max_answer_length tokens)
    scored start + end logit by brute force; the 20 best and "no answer" (the [CLS] score) share a
    softmax, and the answer's probability is its share, as Hugging Face's pipeline reports."""
    from jaxqa.data.examples import Examples
    from jaxqa.data.features import tokenize
    question, context = "Which team won?", "The Denver Broncos defeated the Carolina Panthers 24-10 at Levi's Stadium."
    qa = QuestionAnswerer.from_pretrained(tiny_bert_dir, max_seq_length=64, max_answer_length=5)
    result = qa(question, context)
    features = tokenize(Examples(["q"], [question], [context], [[]], [[]], np.zeros(1, bool)), minilm_tokenizer,
                        max_seq_length=64)
    assert len(features) == 1
    start, end = (np.asarray(x)[0] for x in qa.predictor.forward(qa.params, features.model_inputs()))
    in_context = np.flatnonzero(features.offsets[0, :, 0] >= 0)
    spans = [(start[i] + end[j], i, j) for i in in_context for j in in_context if 0 <= j - i < 5]
    best = sorted(spans, reverse=True)[:20]
    scores = np.array([s for s, _, _ in best] + [start[0] + end[0]])
    softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    _, i, j = best[0]
    assert result["answer"] == context[features.offsets[0, i, 0]:features.offsets[0, j, 1]]
    assert abs(result["score"] - best[0][0]) < 1e-4
    assert abs(result["probability"] - softmax[0]) < 1e-5, (result, softmax[:3])


def test_the_trainers_answerer_abstains_by_the_runs_no_answer_threshold(tmp_path, tiny_bert_dir, data_dir):
    """`Trainer.answerer()` keeps the run's threshold rule, like --do_predict and `jaxqa answer`: the threshold
    saved with an evaluated model, or the flag, and no abstaining on SQuAD v1.1 with a model that has none."""
    import shutil

    from jaxqa.config import RunConfig
    from jaxqa.scoring.evaluation import THRESHOLD_FILE
    from jaxqa.training.trainer import Trainer

    saved = tmp_path / "evaluated"
    shutil.copytree(tiny_bert_dir, saved)
    (saved / THRESHOLD_FILE).write_text(json.dumps({"null_score_diff_threshold": -100.0, "best_f1": 50.0,
                                                    "validation_file": "dev.json", "step": 3}))

    def answerer(model, dev, **flags):
        config = RunConfig(model_name_or_path=str(model), validation_file=str(data_dir / dev), do_eval=True,
                           max_eval_samples=4, max_seq_length=128, doc_stride=32, output_dir=str(tmp_path / "out"),
                           compilation_cache_dir="none", feature_cache_dir="none", **flags)
        return Trainer(config).answerer()

    context = "The Normans gave their name to Normandy, a region in France, in the 10th and 11th centuries."
    abstaining = answerer(saved, "squad_v1.1/dev.json")  # a saved threshold: it abstains on any data
    assert abstaining.null_score_diff_threshold == -100.0 and abstaining("Where is Normandy?", context)["answer"] == ""
    assert answerer(saved, "squad_v1.1/dev.json", null_score_diff_threshold=1.5).null_score_diff_threshold == 1.5
    answering = answerer(tiny_bert_dir, "squad_v1.1/dev.json")
    assert answering.null_score_diff_threshold is None and answering("Where is Normandy?", context)["answer"]
    assert answerer(tiny_bert_dir, "squad_v2.0/dev.json", version_2_with_negative=True,
                    null_score_diff_threshold=-100.0)("Where is Normandy?", context)["answer"] == ""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_bert_dir, data_dir):
    """The tiny BERT exported by a run's `save_model` with windows of 256 (stride 64, questions of 32, answers of
    12 tokens): what a run at --max_seq_length 256 leaves in OUTPUT_DIR/model."""
    from jaxqa.config import RunConfig
    from jaxqa.training.trainer import Trainer

    out = tmp_path_factory.mktemp("exported")
    config = RunConfig(model_name_or_path=str(tiny_bert_dir), validation_file=str(data_dir / "fixtures/flat_sample.json"),
                       do_eval=True, max_seq_length=256, doc_stride=64, max_query_length=32,
                       max_answer_length=12, output_dir=str(out), compilation_cache_dir="none",
                       feature_cache_dir="none")
    return Trainer(config).save_model()


@pytest.fixture(scope="module")
def answerer(exported):
    return QuestionAnswerer.from_pretrained(exported)


WINDOWS = {"max_seq_length": 256, "doc_stride": 64, "max_query_length": 32, "max_answer_length": 12}
LONG = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))  # ~600 tokens: many windows


def test_an_exported_model_answers_in_the_windows_it_was_trained_in(exported, answerer):
    """The acceptance of issue 34: a model exported by a run at --max_seq_length 256 answers in 256-token
    windows unless told otherwise (it answered in 384-token windows: `answer`'s and QuestionAnswerer's defaults)."""
    assert json.loads((exported / "jaxqa_settings.json").read_text()) == WINDOWS
    from_model = answerer("Which topic?", LONG)
    assert QuestionAnswerer.from_pretrained(exported, **WINDOWS)("Which topic?", LONG) == from_model
    told = QuestionAnswerer.from_pretrained(exported, max_seq_length=384)("Which topic?", LONG)
    assert told["answer"] and told["score"] != from_model["score"]


def test_predicting_with_an_exported_model_uses_its_windows_unless_given(exported):
    """--do_eval/--do_predict with the model and no window flag: the model's windows; a flag given wins, and a
    training run keeps the flags' defaults (it makes a model of its own)."""
    from jaxqa.cli import parse_config

    def windows(*flags):
        config, _ = parse_config(["--model_name_or_path", str(exported), "--test_file", "t.json", *flags])
        return {name: getattr(config, name) for name in WINDOWS}

    assert windows("--do_predict") == WINDOWS
    assert windows("--do_predict", "--max_seq_length", "384") == {**WINDOWS, "max_seq_length": 384}
    assert windows("--do_train", "--train_file", "t.json") == {"max_seq_length": 384, "doc_stride": 128,
                                                                "max_query_length": 64, "max_answer_length": 30}


def test_answer_questions_file_gives_json_lines_in_order_with_ids(exported, answerer, tmp_path, capsys, monkeypatch):
    """--questions_file: one answer per line, in order, each with its line's id (where it has one), the answers
    QuestionAnswerer.answer_batch gives; --verbose reports the load and answer times on stderr."""
    from jaxqa.cli import answer_main

    monkeypatch.setattr(logging.getLogger("jaxqa"), "level", logging.getLogger("jaxqa").level)  # answer_main sets it
    questions = [{"id": "q1", "question": "Which topic?", "context": LONG},
                 {"question": "Who won?", "context": "The Denver Broncos defeated the Carolina Panthers."},
                 {"id": 7, "question": "Where?", "context": "It stands in Paris, on the Champ de Mars."}]
    (tmp_path / "q.jsonl").write_text("\n".join(map(json.dumps, questions)) + "\n\n", encoding="utf-8")
    assert answer_main(["--model", str(exported), "--questions_file", str(tmp_path / "q.jsonl"), "--verbose"]) == 0
    out, err = capsys.readouterr()
    expected = answerer.answer_batch([q["question"] for q in questions],
                                                                       [q["context"] for q in questions])
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": "q1", **expected[0]}, expected[1], {"id": 7, **expected[2]}]
    assert re.search(r"model loaded in [\d.]+ s", err) and re.search(r"3 question\(s\) answered in [\d.]+ s \([\d.]+ ms "
                                                                      r"per question", err), err


def test_answer_refuses_an_untrained_head_and_empty_text_in_one_line(exported, answerer, minilm_dir, tmp_path, capsys,
                                                                     monkeypatch):
    """A model without a QA head would answer from a random layer (probability ~0.06, only a log line said so); an
    empty context printed "score": -Infinity (not JSON) with exit 0, an empty question got an answer."""
    from jaxqa.cli import answer_main

    monkeypatch.setattr(logging.getLogger("jaxqa"), "level", logging.getLogger("jaxqa").level)

    def refusal(*argv) -> str:
        assert answer_main(list(map(str, argv))) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("jaxqa: error: "), lines
        return lines[-1]

    assert f"python run_qa.py --model_name_or_path {minilm_dir} --train_file" in refusal(
        "--model", minilm_dir, "--question", "Who?", "--context", "Nobody.")
    assert refusal("--model", exported, "--question", " ", "--context", "Nobody.") == \
        "jaxqa: error: --question is empty: give the question to answer"
    assert refusal("--model", exported, "--question", "Who?", "--context", "") == \
        "jaxqa: error: --context is empty: give the passage that holds the answer"
    (tmp_path / "q.jsonl").write_text('{"question": "Who?", "context": "Nobody."}\n{"id": 2, "question": "Who?"}\n')
    assert refusal("--model", exported, "--questions_file", tmp_path / "q.jsonl") == (
        f'jaxqa: error: --questions_file {tmp_path / "q.jsonl"} line 2: no "context"; every question needs a '
        "non-empty question and context")
    with pytest.raises(ModelError, match="no QA head .* python run_qa.py --model_name_or_path"):
        QuestionAnswerer.from_pretrained(minilm_dir)
    with pytest.raises(ValueError, match="^question 0 is empty"):
        answerer("", "Nobody.")
    with pytest.raises(ValueError, match="^context 1 is empty"):
        answerer.answer_batch(["Who?", "Who?"], ["Nobody.", "  "])


def test_answer_help_describes_every_flag_and_its_default():
    """`answer --help` had no text for --question and no defaults; the window flags' defaults come from the model."""
    from jaxqa.cli import answer_parser

    actions = {a.dest: a for a in answer_parser()._actions}
    assert all(a.help for a in actions.values()), [name for name, a in actions.items() if not a.help]
    for name, default in {"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64, "max_answer_length": 30}.items():
        assert f"(default: the model's, saved by the run that trained it; else {default})" in actions[name].help
    assert "(default: " in actions["null_score_diff_threshold"].help and "(default: off)" in actions["verbose"].help


def test_answering_runs_batches_sized_to_the_request(tiny_bert_dir):
    """One question runs a one-row batch and five questions an eight-row one (rows bucketed 1, 2, 4, ...,
    batch_size like the length), not the configured 32 rows of filler; more questions than a batch run full
    batches and a bucketed rest. Seen by the rows each call of the jitted forward got; the answers are those
    of the same model run in full batches."""
    import dataclasses

    qa = QuestionAnswerer.from_pretrained(tiny_bert_dir, max_seq_length=64, doc_stride=16, max_query_length=16)
    full_batch = dataclasses.replace(qa.predictor)
    shapes = []

    def counting(params, batch):
        shapes.append(batch["input_ids"].shape)
        return full_batch.forward(params, batch)

    qa.predictor = dataclasses.replace(qa.predictor, forward=counting)
    context = "The Denver Broncos defeated the Carolina Panthers 24-10 at Levi's Stadium in Santa Clara."
    questions = ["Who won?", "Who lost?", "Where was the game?", "What was the score?", "Which city?"]
    one = qa(questions[0], context)
    assert shapes == [(1, 64)]
    five = qa.answer_batch(questions, [context] * 5)
    assert shapes[1:] == [(8, 64)]
    qa.predictor = dataclasses.replace(qa.predictor, batch_size=4)
    four_and_one = qa.answer_batch(questions, [context] * 5)
    assert shapes[2:] == [(4, 64), (1, 64)]

    qa.predictor = dataclasses.replace(full_batch, min_rows=None)  # every batch full (16 rows of 64 on CPU)
    reference = qa.answer_batch(questions, [context] * 5)
    # The same spans; scores to rounding (a matrix product of another row count sums in another order).
    for got, want in zip([one, *five, *four_and_one], reference[:1] + reference * 2):
        assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"])
        assert abs(got["score"] - want["score"]) < 1e-4 and abs(got["probability"] - want["probability"]) < 1e-5


def test_on_cpu_an_answer_is_bitwise_the_same_whatever_it_is_batched_with(minilm_dir, minilm_tokenizer, data_dir):
    """In bf16 on CPU, real MiniLM, windows of 256: programs hold at most 4 rows (`inference.program_rows`), so
    six SQuAD dev questions answered alone score bitwise what they score among 32 long ones (in programs of 16 or 32 x 256
    tokens XLA:CPU splits the dots otherwise: the same rows' logits moved by 0.05-0.09)."""
    graphdef, params, _ = load_model(minilm_dir, dtype="bfloat16")  # a fresh QA head: the scores are what they are
    qa = QuestionAnswerer(graphdef, params, minilm_tokenizer, max_seq_length=256, doc_stride=128, batch_size=32)
    assert qa.predictor.batch_size == 4
    articles = json.loads((data_dir / "squad_v1.1/dev.json").read_text(encoding="utf-8"))["data"]
    long = [(q["question"], p["context"]) for a in articles for p in a["paragraphs"] if len(p["context"]) > 1500
            for q in p["qas"]]  # windows of the full 256 tokens: one length bucket
    pairs = long[::len(long) // 32][:32]
    together = qa.answers([q for q, _ in pairs], [c for _, c in pairs])
    alone = [qa.answers([q], [c])[0] for q, c in pairs[:6]]
    assert alone == together[:6]


def test_row_buckets_divide_over_the_mesh():
    """A short batch takes the fewest of min_rows * 2**k rows (min_rows: the devices a batch is split
    over), at most batch_size; full batches stay whole, and without min_rows every batch is full."""
    from jaxqa.data import batching
    lengths = np.array([10] * 27 + [100] * 3)  # two length buckets (64, 128): 27 and 3 rows
    sizes = lambda **kw: [(len(b.rows), b.seq_len, int((b.rows >= 0).sum()))  # noqa: E731
                          for b in batching.plan_batches(lengths, 24, max_seq_length=128, **kw)]
    assert sizes(min_rows=1) == [(24, 64, 24), (4, 64, 3), (4, 128, 3)]
    assert sizes(min_rows=2) == [(24, 64, 24), (4, 64, 3), (4, 128, 3)]
    assert sizes(min_rows=8) == [(24, 64, 24), (8, 64, 3), (8, 128, 3)]
    assert sizes() == [(24, 64, 24), (24, 64, 3), (24, 128, 3)]
    assert [batching.batch_rows(n, 24, 2) for n in (1, 2, 3, 5, 9, 17, 24)] == [2, 2, 4, 8, 16, 24, 24]


def test_a_model_from_the_hub_brings_every_file_its_export_wrote(tmp_path, monkeypatch):
    """A model pushed by a run (tests/test_cli's push test) comes back from the Hub with its window settings and
    its saved no-answer threshold: the download asks for every file the export writes, not just the weights."""
    import fnmatch

    import huggingface_hub

    from jaxqa.models.weights import resolve_model_dir

    repo = tmp_path / "repo"
    repo.mkdir()
    written = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.txt", "jaxqa_settings.json", "null_threshold.json"]
    for name in [*written, "README.md", "training_args.bin"]:
        (repo / name).write_text("{}")

    def snapshot_download(repo_id, *, allow_patterns, **_kwargs):
        out = tmp_path / "snapshot"
        out.mkdir()
        for f in repo.iterdir():
            if any(fnmatch.fnmatch(f.name, pattern) for pattern in allow_patterns):
                (out / f.name).write_text(f.read_text())
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert sorted(p.name for p in resolve_model_dir("tester/squad-v2").iterdir()) == sorted(written)

"""Prediction without labels: the one-shot API, --do_predict, and the exported model in PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from conftest import ROOT, require

from jaxqa import weights
from jaxqa.answer import QuestionAnswerer
from jaxqa.train_state import load_model


def test_export_loads_in_transformers_with_equal_logits(tmp_path, tiny_bert_dir, minilm_tokenizer):
    """Round trip: HF checkpoint -> jaxqa params -> exported directory -> PyTorch: the logits jaxqa
    computes, and those of the original checkpoint. (transformers 5 has no question-answering
    pipeline any more; its Auto classes load the directory.)"""
    torch = require("torch")
    from flax import nnx
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, BertForQuestionAnswering

    from jaxqa.steps import forward

    graphdef, params, cfg = load_model(tiny_bert_dir)
    out = weights.save_pretrained(nnx.to_pure_dict(params), cfg, tmp_path / "export", minilm_tokenizer)
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
    from jaxqa.data import Examples
    from jaxqa.features import tokenize
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
    from jaxqa.evaluation import THRESHOLD_FILE
    from jaxqa.trainer import Trainer

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

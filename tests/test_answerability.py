"""--answerability_head (issue 35): a no-answer classifier on the [CLS] vector, trained with the span loss and
added to the null score; its loss and null score against hand-computed values, and a trained model whose
Hugging Face export transformers loads while jaxqa reads the head beside it."""

from __future__ import annotations

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxqa import cli
from jaxqa.config import RunConfig
from jaxqa.scoring import decode
from jaxqa.training.steps import qa_loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_no_answer_loss_and_combined_null_score_by_hand():
    """Loss: row 0 answerable (label 2), weight 1; row 1 unanswerable (label at [CLS], 0), weight 2; row 2 a
    filler row (weight 0) with labels past its length and a large logit. Span logits are all 0, so the span
    cross-entropies are log 3 (3 real tokens) and log 4. The no-answer logits 1 and -2 cost softplus(1) ("no
    answer" wrongly likely) and softplus(2) (label "no answer", logit -2), at weight 0.5; the mean is over the
    3 units of weight, and the gradient of a logit x is 0.5 (sigmoid(x) - label) x weight / 3.
    Null score: three windows (0, 1 of example 0; 2 of example 1), [CLS] at 0, context tokens 1-3, the best
    spans scoring 3.5 (example 0, window 1) and 1.0; each window's null score is start + end at [CLS] plus
    its no-answer logit, the example's the lowest over its windows."""
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    zeros = jnp.zeros((3, 4))
    batch = {"attention_mask": mask, "start_positions": jnp.array([2, 0, 7]), "end_positions": jnp.array([2, 0, 9]),
             "weights": jnp.array([1.0, 2.0, 0.0])}
    no_answer = jnp.array([1.0, -2.0, 30.0])
    expected = (1 * (math.log(3) + 0.5 * _softplus(1.0)) + 2 * (math.log(4) + 0.5 * _softplus(2.0))) / 3
    loss = qa_loss(zeros, zeros, batch, no_answer, answerability_weight=0.5)
    assert abs(float(loss) - expected) < 1e-6, (float(loss), expected)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    grad = jax.grad(lambda a: qa_loss(zeros, zeros, batch, a, answerability_weight=0.5))(no_answer)
    np.testing.assert_allclose(np.asarray(grad), [0.5 * sigmoid(1.0) / 3, 0.5 * (sigmoid(-2.0) - 1) * 2 / 3, 0.0],
                               atol=1e-7)
    assert abs(float(qa_loss(zeros, zeros, batch)) - (math.log(3) + 2 * math.log(4)) / 3) < 1e-6  # no head

    start = np.array([[1.5, 0.0, 2.0, 0.0], [0.25, 1.0, 0.5, 0.0], [-1.0, 0.5, 0.0, 0.0]], np.float32)
    end = np.array([[0.5, 0.0, 0.0, 1.0], [0.75, 0.0, 2.5, 0.0], [2.0, 0.0, 0.5, 0.0]], np.float32)
    offsets = np.array([[[-1, -1], [0, 4], [5, 9], [10, 14]]] * 3)
    head = np.array([-0.5, 2.25, 0.75], np.float32)
    contexts = ["aaaa bbbb cccc", "dddd eeee ffff"]
    # Example 0: windows' null 1.5 + 0.5 - 0.5 = 1.5 and 0.25 + 0.75 + 2.25 = 3.25 -> 1.5 (without the head
    # 2.0 and 1.0 -> 1.0: the other window); best span 1.0 + 2.5 (window 1, tokens 1-2) = 3.5; odds -2 (-2.5).
    # Example 1: -1 + 2 + 0.75 = 1.75 (1.0); best 0.5 + 0.5 = 1.0 (tokens 1-2); odds 0.75 (0): abstains at 0.5.
    answers = decode.decode(contexts, start, end, offsets, np.array([0, 0, 1]), cls_index=np.zeros(3, np.int64),
                            null_score_diff_threshold=0.5, n_best_size=3, no_answer_logits=head)
    assert answers.null_odds.tolist() == [-2.0, 0.75] and answers.texts == ["aaaa bbbb", ""]
    assert answers.span_texts == ["aaaa bbbb", "dddd eeee"]
    nbest = answers.nbest.lists(contexts)
    assert [e["score"] for e in nbest[1] if e["text"] == ""] == [1.75]  # "" competes at the combined null score
    plain = decode.decode(contexts, start, end, offsets, np.array([0, 0, 1]), cls_index=np.zeros(3, np.int64),
                          null_score_diff_threshold=0.5)
    assert plain.null_odds.tolist() == [-2.5, 0.0] and plain.texts == ["aaaa bbbb", "dddd eeee"]


def _train_config(tiny_bert_dir, data_dir, out, **settings) -> RunConfig:
    """Train on 16 SQuAD v2.0 questions (one program: windows padded to 128) and score 16 dev questions."""
    return RunConfig(**{**dict(
        model_name_or_path=str(tiny_bert_dir), train_file=str(data_dir / "squad_v2.0/train.json"),
        validation_file=str(data_dir / "squad_v2.0/dev.json"), max_train_samples=16, max_eval_samples=16,
        do_train=True, do_eval=True, version_2_with_negative=True, answerability_head=True, max_seq_length=128,
        doc_stride=64, pad_to_max_length=True, per_device_train_batch_size=8, num_train_epochs=1.0,
        learning_rate=3e-3, seed=5, dtype="float32", output_dir=str(out), accelerator="cpu",
        report_to="none"), **settings})


def test_answerability_head_exports_beside_a_hugging_face_model_and_reloads(tmp_path, tiny_bert_dir, data_dir):
    """A short run with the head exports model/ that transformers loads as a plain BertForQuestionAnswering
    (nothing missing, nothing unexpected), with the head in answerability_head.safetensors beside it. jaxqa
    scoring that directory (--do_eval --model_name_or_path model/) reads the head and gives the run's own null
    odds and best spans, exactly; so does `QuestionAnswerer` (to float32 rounding: its batches have other
    shapes), while the same directory without the file loads as a model without the head, whose null odds
    (the span scores alone) are not the run's."""
    out = tmp_path / "run"
    cli.run(_train_config(tiny_bert_dir, data_dir, out), announce=lambda _line: None)
    model = out / "model"
    assert (model / "answerability_head.safetensors").is_file() and (model / "null_threshold.json").is_file()
    from transformers import AutoModelForQuestionAnswering

    _, info = AutoModelForQuestionAnswering.from_pretrained(model, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info

    again = tmp_path / "again"
    cli.run(RunConfig(model_name_or_path=str(model), validation_file=str(data_dir / "squad_v2.0/dev.json"),
                      max_eval_samples=16, do_eval=True, max_seq_length=128, doc_stride=64, pad_to_max_length=True,
                      dtype="float32", output_dir=str(again), accelerator="cpu", report_to="none"),
            announce=lambda _line: None)
    for name in ("null_odds.json", "span_predictions.json"):  # (predictions.json: at the threshold saved since)
        assert json.loads((again / name).read_text()) == json.loads((out / name).read_text()), name

    from jaxqa.data.examples import load_examples
    from jaxqa.data.features import tokenize
    from jaxqa.scoring.answer import QuestionAnswerer

    plain = shutil.copytree(model, tmp_path / "plain")
    (plain / "answerability_head.safetensors").unlink()
    examples = load_examples(data_dir / "squad_v2.0/dev.json").select(range(16))
    with_head, without = (QuestionAnswerer.from_pretrained(m, dtype="float32", max_seq_length=128, doc_stride=64)
                          for m in (model, plain))
    assert "answerability" in with_head.params and "answerability" not in without.params
    features = tokenize(examples, with_head.tokenizer, max_seq_length=128, doc_stride=64, max_query_length=64)
    ran = json.loads((out / "null_odds.json").read_text())
    ran = np.array([ran[qid] for qid in examples.ids])
    odds = [qa.predictor.answers(qa.params, examples.contexts, features, null_score_diff_threshold=0.0).null_odds
            for qa in (with_head, without)]
    # (the answerer's batches have other shapes than the run's evaluation: equal to float32 rounding)
    np.testing.assert_allclose(odds[0], ran, atol=1e-5)
    assert np.abs(odds[1] - ran).min() > 1e-3  # the head's logits are in the run's null odds


@pytest.mark.parametrize("flags,message", [
    ([], "--answerability_head trains a no-answer classifier for SQuAD v2.0: it needs --do_train and "
         "--version_2_with_negative"),
    (["--version_2_with_negative", "--answerability_loss_weight", "0"],
     "--answerability_loss_weight must be positive, got 0.0"),
])
def test_answerability_flags_are_checked(tmp_path, data_dir, capsys, flags, message):
    """The head is a SQuAD v2.0 lever: without --version_2_with_negative (or with a weight of 0) the run stops
    before any work, with one line naming the flag."""
    argv = ["--train_file", str(data_dir / "squad_v2.0/train.json"), "--do_train", "--answerability_head",
            "--output_dir", str(tmp_path / "out"), "--accelerator", "cpu", *flags]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"jaxqa: error: {message}")
    assert not (tmp_path / "out").exists()


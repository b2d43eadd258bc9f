"""What a run writes and reports in --output_dir: a resumed run keeps what it wrote before it was stopped
(the before-training evaluation included), a new run in a reused directory shows nothing of the previous
run's, and a model taken back to an earlier step by --load_best_model_at_end is reported as that step's."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil

import pytest

from jaxqa import cli
from jaxqa.config import RunConfig
from jaxqa.errors import Interrupted
from jaxqa.report import plots
from jaxqa.training.evaluator import Evaluator
from jaxqa.training.preemption import StopRequest
from jaxqa.training.trainer import Trainer

BEFORE_FILES = ("before_training_predictions.json", "before_training_nbest_predictions.json",
                "before_training_results.json")


def tiny_run(tiny_bert_dir, data_dir, out, **settings) -> RunConfig:
    """Train on 16 SQuAD questions (5 steps of 8 windows, one program: padded to 128) and score 16 others."""
    return RunConfig(**{**dict(
        model_name_or_path=str(tiny_bert_dir), train_file=str(data_dir / "squad_v1.1/train.json"),
        validation_file=str(data_dir / "squad_v1.1/dev.json"), max_train_samples=16, max_eval_samples=16,
        do_train=True, do_eval=True, max_seq_length=128, doc_stride=64, pad_to_max_length=True,
        per_device_train_batch_size=8, num_train_epochs=1.0, learning_rate=1e-3, logging_steps=1, save_steps=2,
        seed=5, output_dir=str(out), accelerator="cpu"), **settings})


def test_a_resumed_run_keeps_its_before_training_evaluation_and_its_log(tmp_path, tiny_bert_dir, data_dir,
                                                                          monkeypatch):
    """Stopped at step 2 (as by SIGTERM) and resumed with the same command (--eval_before_training on, as in
    the default job): the before-training results and files are the first part's, byte for byte, not an
    evaluation of the restored step-2 model, and metrics.jsonl keeps the first part's lines. Where the
    saved evaluation is gone, the initial weights are evaluated again, to the same predictions."""
    out = tmp_path / "run"
    config = tiny_run(tiny_bert_dir, data_dir, out, eval_before_training=True)
    with monkeypatch.context() as patch:
        patch.setattr(StopRequest, "requested", lambda self, step: step >= 2)
        with pytest.raises(Interrupted, match="stopped by preemption at step 2/"):
            cli.run(config, announce=lambda _line: None)
    first = {name: (out / name).read_bytes() for name in BEFORE_FILES}
    first_result = json.loads(first["before_training_results.json"])
    first_log = (out / "metrics.jsonl").read_text()
    assert first_result["step"] == 0 and [json.loads(line)["step"] for line in first_log.splitlines()] == [1, 2]
    copy = shutil.copytree(out, tmp_path / "copy")  # the same stopped run, for the second resume
    for name in BEFORE_FILES:
        (copy / name).unlink()

    results = cli.run(dataclasses.replace(config, resume_from_checkpoint="auto"), announce=lambda _line: None)
    assert results["eval"]["step"] > 2 and results["before_training"] == first_result
    assert {name: (out / name).read_bytes() for name in BEFORE_FILES} == first
    assert (out / "metrics.jsonl").read_text().startswith(first_log)
    before_point = {"step": 0, "f1": first_result["f1"], "em": first_result["exact_match"], "label": "before training"}
    assert plots.curve_data(out)["evals"][0] == before_point
    assert f'before training {first_result["f1"]:.2f}' in (out / "eval_report.html").read_text(encoding="utf-8")

    again = cli.run(dataclasses.replace(config, output_dir=str(copy), resume_from_checkpoint="auto"),
                    announce=lambda _line: None)
    assert {k: v for k, v in again["before_training"].items() if k != "eval_seconds"} == \
        {k: v for k, v in first_result.items() if k != "eval_seconds"}
    assert (copy / "before_training_predictions.json").read_bytes() == first["before_training_predictions.json"]


@pytest.mark.parametrize("train", [False, True], ids=["evaluation", "training"])
def test_a_new_run_in_a_reused_output_dir_shows_nothing_of_the_previous_one(tmp_path, tiny_bert_dir, data_dir, train):
    """A directory left by a training run (its log, curves, before-training evaluation, TensorBoard events,
    goodput), run into again without --eval_before_training: evaluating only, or training (5 steps) and
    evaluating. The new run's report page and curves show its own steps and final evaluation alone, and the
    previous run's files are gone, or hold the new run's."""
    out = tmp_path / "reused"
    (out / "tensorboard").mkdir(parents=True)
    (out / "tensorboard/events.out.tfevents.1.old").write_bytes(b"old events")
    old = {"metrics.jsonl": "".join(json.dumps(r) + "\n" for r in (
        {"step": 10, "loss": 2.5, "learning_rate": 1e-4}, {"step": 10, "eval": {"f1": 41.0, "exact_match": 30.0}})),
        "before_training_results.json": json.dumps({"f1": 3.0, "exact_match": 1.0, "step": 0}),
        "before_training_predictions.json": json.dumps({"x": "old answer"}), "training_curves.png": "not this run's",
        "goodput.json": json.dumps({"wall_seconds": 99.0})}
    for name, text in old.items():
        (out / name).write_text(text, encoding="utf-8")

    results = cli.run(tiny_run(tiny_bert_dir, data_dir, out, do_train=train), announce=lambda _line: None)
    left = {p.name: p.read_bytes() for p in out.iterdir() if p.name in old}
    assert sorted(left) == (["goodput.json", "metrics.jsonl", "training_curves.png"] if train else [])
    assert all(content != old[name].encode() for name, content in left.items())
    events = sorted(p.name for p in (out / "tensorboard").iterdir()) if (out / "tensorboard").exists() else []
    assert len(events) == train and "events.out.tfevents.1.old" not in events  # the new run's own, if it trained
    final = {"step": results["eval"]["step"], "f1": results["eval"]["f1"], "em": results["eval"]["exact_match"],
             "label": "final"}
    data = plots.curve_data(out)
    assert (data["evals"], [r["step"] for r in data["train"]]) == ([final], [1, 2, 3, 4, 5] if train else [])
    page = (out / "eval_report.html").read_text(encoding="utf-8")
    assert '<span class="was">before training' not in page and "Fine-tuning changed F1" not in page


def test_a_model_kept_from_an_earlier_step_is_reported_as_that_step(tmp_path, tiny_bert_dir, data_dir, monkeypatch):
    """--load_best_model_at_end with evaluations at steps 2, 4 and 5, the last (F1 scripted: 50, then 5;
    the final evaluation is real): the model and the final evaluation are step 2's, and the summary, the
    "after fine-tuning" line, eval_results.json, the report page and the PNG title say "trained 5 steps,
    kept step 2 (f1 x)"; its metrics.jsonl record, written after step 5's, is marked as the kept step's, and
    is not kept twice when the run is resumed."""
    scripted, real_evaluate = {2: 50.0, 4: 5.0, 5: 5.0}, Trainer.evaluate

    def evaluate(self, split="eval", write_files=True):
        if write_files:
            return real_evaluate(self, split, write_files)
        result = {"f1": scripted[self.state_step], "exact_match": 0.0, "step": self.state_step}
        self.reporter.eval(self.state_step, result)
        return result

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    out, lines = tmp_path / "best", []
    config = tiny_run(tiny_bert_dir, data_dir, out, eval_before_training=True, eval_steps=2, load_best_model_at_end=True)
    results = cli.run(config, announce=lines.append)
    final, before = results["eval"], results["before_training"]
    assert (final["step"], final["trained_steps"], final["kept_best_by"]) == (2, 5, "f1")
    assert json.loads((out / "eval_results.json").read_text()) == final
    kept = f"trained 5 steps, kept step 2 (f1 {final['f1']:.2f})"
    summary = "\n".join(lines)
    assert re.search(rf"^train steps +{re.escape(kept)}$", summary, re.M), summary
    assert f"({final['num_examples']} questions, {data_dir / 'squad_v1.1/dev.json'}; {kept})" in summary

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], "eval" in r) for r in records] == [(1, False), (2, False), (2, True), (3, False),
                                                            (4, False), (4, True), (5, False), (5, True), (2, True)]
    assert records[-1] == {"step": 2, "kept": True, "trained_steps": 5, "eval": final}
    data = plots.curve_data(out)
    assert [(e["step"], e["f1"], e["label"]) for e in data["evals"]] == [
        (0, before["f1"], "before training"), (2, final["f1"], "final"), (4, 5.0, "eval"), (5, 5.0, "eval")]
    assert plots.curves_title(out, data) == f"jaxqa: best  F1 {before['f1']:.1f} -> {final['f1']:.1f}; {kept}"
    assert html.escape(f"Trained 5 steps, kept step 2 (f1 {final['f1']:.2f}): --load_best_model_at_end") in \
        (out / "eval_report.html").read_text(encoding="utf-8")

    # Resumed from its last checkpoint, the run has nothing left to train and evaluates step 2 again: the log
    # holds that evaluation once.
    again = cli.run(dataclasses.replace(config, resume_from_checkpoint="auto"), announce=lambda _line: None)
    assert again["eval"] == {**final, "eval_seconds": again["eval"]["eval_seconds"]}
    assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == \
        records[:-1] + [{**records[-1], "eval": again["eval"]}]


def test_the_last_steps_evaluation_in_the_loop_is_the_final_one(tmp_path, tiny_bert_dir, data_dir, monkeypatch):
    """--load_best_model_at_end evaluates the last step in the train loop (to choose); when that step is kept,
    the final evaluation writes those answers instead of predicting again: the model predicts the dev file
    once, and its files are those of the exported model evaluated anew, byte for byte."""
    predicted, real_predict = [], Evaluator.predict

    def predict(self, state, examples, features, nbest=True):
        predicted.append((int(state.step), nbest))
        return real_predict(self, state, examples, features, nbest)

    monkeypatch.setattr(Evaluator, "predict", predict)
    out = tmp_path / "run"
    results = cli.run(tiny_run(tiny_bert_dir, data_dir, out, eval_steps=5, load_best_model_at_end=True),
                      announce=lambda _line: None)
    assert predicted == [(5, True)] and results["eval"]["step"] == 5
    anew = cli.run(tiny_run(tiny_bert_dir, data_dir, tmp_path / "anew", model_name_or_path=str(out / "model"),
                            do_train=False), announce=lambda _line: None)
    timing_and_step = ("eval_seconds", "step")  # a model loaded from model/ evaluates as step 0
    assert {k: v for k, v in anew["eval"].items() if k not in timing_and_step} == \
        {k: v for k, v in results["eval"].items() if k not in timing_and_step}
    for name in ("predictions.json", "nbest_predictions.json"):
        assert (tmp_path / "anew" / name).read_bytes() == (out / name).read_bytes()

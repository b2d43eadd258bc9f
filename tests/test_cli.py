"""run_qa.py as a user runs it: flags, outputs, errors, and the no-argument default job."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

RUN_QA = str(ROOT / "run_qa.py")


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, RUN_QA, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_train_and_eval_writes_predictions(tmp_path, tiny_bert_dir, data_dir):
    out = tmp_path / "run"
    proc = _run("--model_name_or_path", tiny_bert_dir, "--train_file", data_dir / "fixtures/flat_sample.json",
                "--validation_file", data_dir / "squad_v1.1/dev.json", "--max_eval_samples", 40,
                "--do_train", "--do_eval", "--max_seq_length", 128, "--doc_stride", 32,
                "--per_device_train_batch_size", 4, "--num_train_epochs", 2, "--learning_rate", 1e-3,
                "--warmup_ratio", 0.1, "--weight_decay", 0.01, "--seed", 3, "--output_dir", out,
                "--accelerator", "cpu", "--logging_steps", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = json.loads((out / "predictions.json").read_text())
    results = json.loads((out / "eval_results.json").read_text())
    dev = json.loads((data_dir / "squad_v1.1/dev.json").read_text())
    first_ids = [qa["id"] for art in dev["data"] for p in art["paragraphs"] for qa in p["qas"]][:40]
    assert list(predictions) == first_ids and all(isinstance(v, str) for v in predictions.values())
    # The reported scores are those of predictions.json, by the official SQuAD v1.1 algorithm
    # (test_metrics' plain re-implementation) over the 40 questions evaluated.
    from test_metrics import ref_v1

    asked = set(first_ids)
    evaluated = [{"paragraphs": [{"qas": [qa for qa in p["qas"] if qa["id"] in asked]} for p in art["paragraphs"]]}
                 for art in dev["data"]]
    reference = ref_v1(evaluated, predictions)
    assert results["num_examples"] == 40
    assert results["f1"] == pytest.approx(reference["f1"], abs=1e-6) and results["f1"] > 0
    assert results["exact_match"] == pytest.approx(reference["exact_match"], abs=1e-6)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    last = results["step"]  # every 2 steps, and the last one; then the final evaluation
    assert last >= 8 and [r["step"] for r in logged] == list(range(2, last + 1, 2)) + ([last] if last % 2 else [])
    assert records[-1] == {"step": last, "eval": results}
    assert all(r["loss"] > 0 and r["learning_rate"] >= 0 and r["grad_norm"] > 0 for r in logged)
    assert (out / "model/model.safetensors").is_file() and (out / "model/tokenizer.json").is_file()
    assert re.search(r"after fine-tuning: exact_match [\d.]+ f1 [\d.]+", proc.stdout)


def test_absent_accelerator_is_one_line_error(tmp_path, data_dir):
    proc = _run("--accelerator", "tpu", "--do_eval", "--validation_file", data_dir / "fixtures/flat_sample.json",
                "--output_dir", tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"jaxqa: error: --accelerator tpu: no TPU is available to JAX \(found: cpu\); .*"
                        r"or use --accelerator cpu", last), proc.stderr


def test_bad_flag_value_names_the_flag(tmp_path):
    proc = _run("--do_train", "--train_file", "x.json", "--learning_rate", "0")
    assert proc.returncode == 2 and "jaxqa: error: --learning_rate must be positive, got 0.0" in proc.stderr
    proc = _run("--accelerator", "quantum")
    assert proc.returncode == 2 and "--accelerator: invalid choice: 'quantum'" in proc.stderr


@pytest.mark.slow
def test_default_run_learns(tmp_path):
    """The default job (`python run_qa.py` takes no data or model flags: packaged MiniLM, bundled sample, its
    recipe), cut to 240 questions in windows of 128 (stride 64) and batches of 8, one epoch (54 steps), scored
    on the first 100 held-out questions, to keep CI short; the full job's F1 at three seeds is
    benchmarks/default_run_seeds.py's. Measured: loss 4.77 over steps 1-5, 2.88 at the end (a uniform guess
    over a window's tokens: ~4.8); EM 1.00 -> 8.00 (1 -> 8 of 100 questions), F1 8.03 -> 13.44 (on all 201:
    EM 0.50 -> 5.47, F1 7.48 -> 10.66, and the two evaluations took 68 of the run's 228 s)."""
    proc = subprocess.run([sys.executable, RUN_QA, "--max_train_samples", "240", "--max_eval_samples", "100",
                           "--max_seq_length", "128", "--doc_stride", "64", "--per_device_train_batch_size", "8",
                           "--num_train_epochs", "1", "--logging_steps", "5"],
                          capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "No data or model flags: the default job" in proc.stdout and "--max_train_samples 240" in proc.stdout
    scores = {when: tuple(map(float, re.search(rf"{when} fine-tuning: exact_match ([\d.]+) f1 ([\d.]+)",
                                               proc.stdout).groups())) for when in ("before", "after")}
    out = tmp_path / "jaxqa_output/default_run"
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < 3.5 and losses[-1] < losses[0] - 1.2, losses
    (em_before, f1_before), (em_after, f1_after) = scores["before"], scores["after"]
    assert em_after >= em_before + 3 and f1_after > f1_before + 1, proc.stdout  # >= 3 more questions exactly right
    assert (out / "predictions.json").is_file()


def test_chinese_run_from_random_init_scores_with_cmrc(tmp_path, data_dir):
    """CMRC 2018 through run_qa.py: bert-base-chinese tokenizer, a random small BERT (no Chinese
    weights exist offline), bad answer_start records skipped and listed, cmrc metric chosen."""
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": 21128, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64}))
    out = tmp_path / "out"
    proc = _run("--config_name", config / "config.json", "--tokenizer_name", data_dir / "vocab/bert-base-chinese",
                "--train_file", data_dir / "cmrc2018/train.json", "--max_train_samples", 320,
                "--validation_file", data_dir / "cmrc2018/trial.json",
                "--max_eval_samples", 60, "--on_bad_record", "skip", "--do_train", "--do_eval",
                "--max_seq_length", 256, "--doc_stride", 64, "--per_device_train_batch_size", 32,
                "--num_train_epochs", 1, "--output_dir", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["metric"] == "cmrc" and results["num_examples"] == 60
    skipped = [json.loads(line) for line in (out / "skipped_records.jsonl").read_text().splitlines()]
    kinds = collections.Counter((Path(s["file"]).name, s["problem"].split(" ")[0]) for s in skipped)
    # CMRC 2018 as published: 21 + 5 answer_start values off by a character or two, 2 empty questions.
    assert kinds == {("train.json", "answer_start"): 21, ("trial.json", "answer_start"): 5,
                     ("trial.json", "has"): 2}
    assert skipped[0]["record"].startswith("record 'TRAIN_876_QUERY_0'")
    predictions = json.loads((out / "predictions.json").read_text())
    contexts = {qa["id"]: p["context"] for a in json.loads((data_dir / "cmrc2018/trial.json").read_text())["data"]
                for p in a["paragraphs"] for qa in p["qas"]}
    assert len(predictions) == 60 and all(text in contexts[qid] for qid, text in predictions.items())


def test_config_file_with_unknown_setting(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"do_train": True, "train_file": "x.json", "learning_rat": 1e-4}))
    proc = _run(config)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"jaxqa: error: {config}: unknown setting(s) learning_rat; see run_qa.py --help"


def test_v2_eval_results_reproduce_from_the_written_files(tmp_path, tiny_bert_dir, data_dir):
    """eval_results.json of a SQuAD v2.0 evaluation equals the official v2.0 algorithm run on the files
    the run wrote: span_predictions.json with null_odds.json (and predictions.json is what abstains).
    The run trains one step on two files, v2.0 and v1.1 mixed (counted per file in data_report.json),
    and saves its best threshold with the model; a run that predicts with that model on a test file
    (no answers, no is_impossible) abstains above the saved threshold, or above the flag when given.
    (This random model does best abstaining everywhere: the official best_f1_thresh is then 0.0, which
    answers every question, its odds all being negative; the threshold saved lies below them all and
    gives exactly the best_f1 saved with it.)"""
    from test_metrics import ref_v2

    dataset = json.loads((data_dir / "fixtures/squad_v2_small.json").read_text())
    dataset["data"] = dataset["data"][:1]
    paragraphs = dataset["data"][0]["paragraphs"]
    dataset["data"][0]["paragraphs"] = paragraphs[:20]
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(dataset))
    test = tmp_path / "test.json"  # other paragraphs, as a test file comes: questions only
    test.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": p["context"], "qas": [{"id": qa["id"], "question": qa["question"]} for qa in p["qas"]]}
        for p in paragraphs[20:32]]}]}))
    out = tmp_path / "v2"
    threshold = -0.65  # the median null odds of this random model (its odds lie in -0.78..-0.57): some abstain
    train_files, n = [data_dir / "squad_v2.0/train.json", data_dir / "squad_v1.1/train.json"], 6  # questions of each
    # One step at a learning rate too small to move the odds: the model stays the random one.
    proc = _run("--model_name_or_path", tiny_bert_dir, "--train_file", *train_files, "--max_train_samples", n,
                "--do_train", "--learning_rate", 1e-7, "--per_device_train_batch_size", 64, "--num_train_epochs", 1,
                "--pad_to_max_length",
                "--validation_file", dev, "--do_eval", "--max_seq_length", 128, "--doc_stride", 32,
                "--null_score_diff_threshold", threshold, "--output_dir", out, "--accelerator", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    spans, null_odds = (json.loads((out / name).read_text()) for name in ("span_predictions.json", "null_odds.json"))
    reference = ref_v2(dataset["data"], spans, null_odds, na_prob_thresh=threshold)
    assert results["total"] == reference["total"] > 100 and results["NoAns_total"] > 30
    for key, value in reference.items():
        assert abs(results[key] - value) < 1e-9, (key, results[key], value)
    abstained = {q for q, odds in null_odds.items() if odds > threshold}
    predictions = json.loads((out / "predictions.json").read_text())
    assert 0 < len(abstained) < len(predictions) and {q for q, a in predictions.items() if a == ""} >= abstained
    assert all(predictions[q] == spans[q] for q in predictions if q not in abstained)

    report = json.loads((out / "data_report.json").read_text())
    assert list(report)[:2] == list(map(str, train_files)) and [report[str(f)]["examples"] for f in train_files] == [n, n]
    unanswerable = report[str(train_files[0])].get("unanswerable", 0)
    assert 0 < unanswerable < n and "unanswerable" not in report[str(train_files[1])]
    assert f"training on 2 files: {2 * n} examples ({unanswerable} unanswerable)" in proc.stderr
    saved = json.loads((out / "model/null_threshold.json").read_text())
    assert saved == {"null_score_diff_threshold": results["best_f1_reached_thresh"], "best_f1": results["best_f1_reached"],
                     "validation_file": str(dev), "step": results["step"]}
    assert results["best_f1_thresh"] == 0.0 and max(null_odds.values()) < 0  # the official figure, kept
    assert saved["null_score_diff_threshold"] < min(null_odds.values())
    at_saved = ref_v2(dataset["data"], spans, null_odds, na_prob_thresh=saved["null_score_diff_threshold"])
    assert abs(at_saved["f1"] - saved["best_f1"]) < 1e-9 and at_saved["HasAns_f1"] == 0 and at_saved["NoAns_f1"] == 100

    def predict(*flags):
        run = tmp_path / f"predict{len(flags)}"
        proc = _run("--model_name_or_path", out / "model", "--do_predict", "--test_file", test, "--max_seq_length",
                    128, "--doc_stride", 32, "--output_dir", run, "--accelerator", "cpu", *flags)
        assert proc.returncode == 0, proc.stderr[-3000:]
        odds, answers = (json.loads((run / f"predict_{name}.json").read_text()) for name in ("null_odds", "predictions"))
        assert {q for q, a in answers.items() if a == ""} == {q for q, o in odds.items() if o > used}, used
        return proc, odds

    used = saved["null_score_diff_threshold"]
    proc, odds = predict()
    assert (f"null threshold: {used:g} (saved with the model by its evaluation on dev.json at step "
            f"{results['step']})") in proc.stderr
    assert all(o > used for o in odds.values())  # it abstains everywhere, as its evaluation found best
    used = sorted(odds.values())[len(odds) // 4]  # another threshold, abstaining on three quarters
    proc, _ = predict("--null_score_diff_threshold", used)
    assert f"null threshold: {used:g} (--null_score_diff_threshold)" in proc.stderr
    from jaxqa.scoring.answer import (
        QuestionAnswerer,  # `python -m jaxqa answer`: the same rule, never abstaining without
    )

    assert QuestionAnswerer.from_pretrained(out / "model").null_score_diff_threshold == saved["null_score_diff_threshold"]
    assert QuestionAnswerer.from_pretrained(out / "model", null_score_diff_threshold=1.5).null_score_diff_threshold == 1.5
    assert QuestionAnswerer.from_pretrained(tiny_bert_dir).null_score_diff_threshold is None


def test_push_to_hub_uploads_the_model_after_the_final_evaluation(tmp_path, tiny_bert_dir, data_dir):
    """--push_to_hub sends the model directory as the run leaves it: a SQuAD v2.0 model reaches the Hub with
    the null_threshold.json its final evaluation wrote, without which it would never abstain. tests/fake_hub
    stands in for the Hub and logs the files of each upload."""
    import os

    import jaxqa

    hub_log, out = tmp_path / "hub.jsonl", tmp_path / "v2"
    package_root = Path(jaxqa.__file__).parents[1]  # the jaxqa under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests/fake_hub"), str(package_root)]),
           "JAXQA_FAKE_HUB_LOG": str(hub_log), "HF_HUB_OFFLINE": "0"}
    args = ["--model_name_or_path", tiny_bert_dir, "--train_file", data_dir / "squad_v2.0/train.json",
            "--max_train_samples", 8, "--validation_file", data_dir / "squad_v2.0/dev.json", "--max_eval_samples", 24,
            "--do_train", "--do_eval", "--version_2_with_negative", "--max_seq_length", 128, "--doc_stride", 32,
            "--per_device_train_batch_size", 8, "--num_train_epochs", 1, "--output_dir", out, "--accelerator", "cpu",
            "--push_to_hub", "--hub_model_id", "tester/v2"]
    proc = subprocess.run([sys.executable, "-m", "jaxqa", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uploads = [json.loads(line) for line in hub_log.read_text().splitlines() if '"upload_folder"' in line]
    assert [u["repo_id"] for u in uploads] == ["tester/v2"], uploads
    assert uploads[0]["files"] == sorted(p.name for p in (out / "model").iterdir())  # the directory as it ends
    assert "null_threshold.json" in uploads[0]["files"]


def test_metric_for_best_model_is_checked_before_training(tmp_path, tiny_bert_dir, data_dir):
    """--metric_for_best_model must name a score the evaluations during training report, and the validation
    data decides which (its metric): a name they lack is refused while the run is set up, not at the first
    evaluation an epoch in. Hugging Face's eval_ prefix is accepted."""
    from jaxqa.cli import parse_config
    from jaxqa.errors import ConfigError
    from jaxqa.training.trainer import Trainer

    def config(dev: str, metric: str, out: str):
        return parse_config(["--model_name_or_path", str(tiny_bert_dir), "--train_file", str(data_dir / "squad_v1.1/train.json"),
                             "--max_train_samples", "8", "--validation_file", str(data_dir / dev), "--max_eval_samples", "12",
                             "--do_train", "--do_eval", "--eval_steps", "1000", "--metric_for_best_model", metric,
                             "--max_seq_length", "128", "--doc_stride", "32", "--per_device_train_batch_size", "8",
                             "--num_train_epochs", "2", "--pad_to_max_length", "--output_dir", str(tmp_path / out),
                             "--accelerator", "cpu"])[0]

    v2, v1 = data_dir / "squad_v2.0/dev.json", data_dir / "squad_v1.1/dev.json"
    with pytest.raises(ConfigError, match=re.escape(
            f"--metric_for_best_model exact_match: evaluations on {v2} (metric squad_v2) report exact, f1, HasAns_exact, "
            "HasAns_f1, NoAns_exact, NoAns_f1, best_exact, best_f1") + r"(, \w+)* \(an eval_ prefix may be added\)"):
        Trainer(config("squad_v2.0/dev.json", "exact_match", "v2"))
    with pytest.raises(ConfigError, match=re.escape(f"--metric_for_best_model best_f1: evaluations on {v1} (metric "
                                                    "squad) report exact_match, f1 (an eval_ prefix may be added)")):
        Trainer(config("squad_v1.1/dev.json", "eval_best_f1", "v1"))
    assert not (tmp_path / "v2").exists() and not (tmp_path / "v1").exists()  # refused before any output

    trainer = Trainer(config("squad_v1.1/dev.json", "eval_exact_match", "ok"))
    assert trainer.config.metric_for_best_model == "exact_match"
    trainer.fit()  # the end of epoch 1 is evaluated in the loop (--eval_steps as Hugging Face's), epoch 2's after it
    evaluated = [json.loads(line) for line in (tmp_path / "ok/metrics.jsonl").read_text().splitlines()]
    in_loop = [(r["step"], r["eval"]["exact_match"]) for r in evaluated if "eval" in r]
    assert [step for step, _ in in_loop] == [trainer.parts.steps_per_epoch] and trainer.total_steps == 2 * in_loop[0][0]
    assert trainer.parts.checkpoints.selection.history == in_loop



def test_max_steps_and_epoch_strategies_train_as_hugging_face_trainer(tmp_path, tiny_bert_dir, data_dir):
    """Hugging Face Trainer flags on a run of 5 steps per epoch and --num_train_epochs 1: --max_steps 7 trains 7
    steps (into a second epoch) on a schedule that ends at step 7; --eval_strategy epoch evaluates at the epoch's
    end (step 5), not at the last step (the final evaluation's); --save_strategy epoch saves there and at the end, not every
    --save_steps 2; --report_to none writes no TensorBoard events."""
    from jaxqa.cli import parse_config
    from jaxqa.training.trainer import Trainer

    out = tmp_path / "run"
    config = parse_config([
        "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(data_dir / "squad_v1.1/train.json"),
        "--max_train_samples", "16", "--validation_file", str(data_dir / "squad_v1.1/dev.json"), "--max_eval_samples",
        "8", "--do_train", "--do_eval", "--max_seq_length", "128", "--doc_stride", "64", "--pad_to_max_length",
        "--per_device_train_batch_size", "8", "--num_train_epochs", "1", "--learning_rate", "7e-4", "--logging_steps",
        "1", "--save_steps", "2", "--save_total_limit", "none", "--max_steps", "7", "--eval_strategy", "epoch",
        "--save_strategy", "epoch", "--report_to", "none", "--output_dir", str(out), "--accelerator", "cpu"])[0]
    trainer = Trainer(config)
    assert trainer.parts.steps_per_epoch == 5 and trainer.total_steps == 7
    trainer.fit()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = {r["step"]: r["learning_rate"] for r in records if "loss" in r}
    assert list(rates) == [1, 2, 3, 4, 5, 6, 7] and trainer.trained_steps == 7
    # the rate of update i (0, 1, ...) is 7e-4 x (1 - i / 7): linear decay to 0 over 7 steps (over 5 without --max_steps)
    assert [rates[s] for s in (1, 5, 7)] == pytest.approx([7e-4, 3e-4, 1e-4], abs=1e-9)
    assert [r["step"] for r in records if "eval" in r] == [5]  # in the loop; the final evaluation comes after
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [5, 7]
    assert not (out / "tensorboard").exists()

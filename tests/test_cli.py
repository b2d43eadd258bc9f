"""run_qa.py as a user runs it: flags, outputs, errors, and the no-argument default job."""

from __future__ import annotations

import json
import re
import subprocess
import sys

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
    assert results["num_examples"] == 40 and 0 <= results["f1"] <= 100
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [2, 4, 6, 8]  # 14 flat records -> 16 windows -> 4 steps/epoch
    assert re.search(r"after fine-tuning: exact_match [\d.]+  f1 [\d.]+", proc.stdout)


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
    """`python run_qa.py` with no arguments: real MiniLM, bundled sample, F1 well above untrained."""
    proc = subprocess.run([sys.executable, RUN_QA], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = float(re.search(r"before fine-tuning: exact_match [\d.]+  f1 ([\d.]+)", proc.stdout).group(1))
    after = float(re.search(r"after fine-tuning: exact_match [\d.]+  f1 ([\d.]+)", proc.stdout).group(1))
    assert after >= before + 10, proc.stdout
    assert (tmp_path / "jaxqa_output/default_run/predictions.json").is_file()

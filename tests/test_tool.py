"""jaxqa as a drop-in for Hugging Face's Flax run_qa.py: its flags and README command, TensorBoard and
curves, the answer command, the Colab notebook, README's flag table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from jaxqa.cli import build_parser, flags_table, parse_config
from jaxqa.config import SAMPLE_DIR

# Every field of ModelArguments, DataTrainingArguments and TrainingArguments in Hugging Face's
# examples/flax/question-answering/run_qa.py (plus `token` and `trust_remote_code` of later versions).
HF_FLAX_RUN_QA_FLAGS = [
    "model_name_or_path", "config_name", "tokenizer_name", "cache_dir", "model_revision", "use_auth_token", "token",
    "trust_remote_code", "dtype",
    "dataset_name", "dataset_config_name", "train_file", "validation_file", "test_file", "overwrite_cache",
    "preprocessing_num_workers", "max_seq_length", "pad_to_max_length", "max_train_samples", "max_eval_samples",
    "max_predict_samples", "version_2_with_negative", "null_score_diff_threshold", "doc_stride", "n_best_size",
    "max_answer_length",
    "output_dir", "overwrite_output_dir", "do_train", "do_eval", "do_predict", "per_device_train_batch_size",
    "per_device_eval_batch_size", "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
    "adafactor", "num_train_epochs", "warmup_steps", "logging_steps", "save_steps", "eval_steps", "seed",
    "push_to_hub", "hub_model_id", "hub_token",
]


def _sample_value(action):
    if action.choices:
        return str(action.choices[-1])
    if action.nargs == "?":  # booleans: `--flag` alone means true
        return None
    return {int: "3", float: "0.25"}.get(action.type, "some_value")


def test_every_hugging_face_flax_run_qa_flag_parses():
    actions = {a.dest: a for a in build_parser()._actions}
    missing = [flag for flag in HF_FLAX_RUN_QA_FLAGS if flag not in actions]
    assert not missing, f"flags of Hugging Face's run_qa.py that jaxqa does not accept: {missing}"
    argv, expected = [], {}
    for flag in HF_FLAX_RUN_QA_FLAGS:
        value = _sample_value(actions[flag])
        argv += [f"--{flag}"] + ([] if value is None else [value])
        expected[flag] = True if value is None else actions[flag].type(value) if actions[flag].type else value
    config, is_default = parse_config(argv)
    assert not is_default
    for flag, value in expected.items():
        assert getattr(config, flag) == value, flag


def _hf_readme_command(minilm_dir, out: Path) -> list[str]:
    """Hugging Face's README command for the Flax QA example, with the model swapped for the local MiniLM and
    `--dataset_name squad` for the bundled SQuAD sample, cut to a few samples so CI stays short."""
    return [sys.executable, str(ROOT / "run_qa.py"),
            "--model_name_or_path", str(minilm_dir),
            "--train_file", str(SAMPLE_DIR / "squad_sample_train.json"),
            "--validation_file", str(SAMPLE_DIR / "squad_sample_dev.json"),
            "--max_train_samples", "48", "--max_eval_samples", "24",
            "--do_train", "--do_eval", "--max_seq_length", "384", "--doc_stride", "128", "--learning_rate", "3e-5",
            "--num_train_epochs", "2", "--per_device_train_batch_size", "12", "--output_dir", str(out),
            "--eval_steps", "1000", "--push_to_hub"]


def test_hugging_face_readme_command_runs_with_tensorboard_and_curves(tmp_path, minilm_dir):
    out = tmp_path / "bert-qa-squad"
    command = _hf_readme_command(minilm_dir, out)
    # Offline, --push_to_hub cannot work: said at once, before any training.
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and not (out / "checkpoints").exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("jaxqa: error: --push_to_hub: the Hugging Face Hub is "
                                                           "switched off here")
    proc = subprocess.run(command[:-1], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_examples"] == 24 and results["step"] == 8  # 48 questions, 48 windows: 4 steps x 2 epochs
    assert "summary" in proc.stdout and "eval f1" in proc.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm", "train/examples_per_s", "eval/f1",
                "eval/exact_match"):
        assert tag in scalars, (tag, scalars)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in logged if "loss" in r}
    assert {e.step: pytest.approx(e.value) for e in events.Scalars("train/loss")} == losses
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("eval/f1")] == [(8, results["f1"])]
    png = out / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_answer_command(tmp_path, tiny_bert_dir):
    context = "The Eiffel Tower was finished in 1889. It stands in Paris, on the Champ de Mars."
    (tmp_path / "context.txt").write_text(context, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "jaxqa", "answer", "--model", str(tiny_bert_dir), "--question",
                           "When was it finished?", "--context_file", str(tmp_path / "context.txt")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert context[answer["start"]:answer["end"]] == answer["answer"] != "" and isinstance(answer["score"], float)
    proc = subprocess.run([sys.executable, "-m", "jaxqa", "answer", "--model", str(tiny_bert_dir), "--question", "q",
                           "--context_file", str(tmp_path / "missing.txt")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "jaxqa: error: --context_file" in proc.stderr and "no such file" in proc.stderr


def test_dataset_name_without_datasets_package_says_what_to_do(tmp_path, monkeypatch):
    from jaxqa import hub
    from jaxqa.config import RunConfig
    from jaxqa.errors import ConfigError

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"--dataset_name squad needs the optional `datasets` package \(pip install "
                                          r"datasets\) and network access to the Hub; or pass --train_file"):
        hub.dataset_files(RunConfig(dataset_name="squad", do_train=True), tmp_path)


def test_colab_notebook_runs_top_to_bottom_on_cpu(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "notebooks/colab_tpu.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "CPU device(s)" in printed and "'f1':" in printed and "'answer':" in printed
    assert (tmp_path / "jaxqa_notebook_run/model/model.safetensors").is_file()
    assert (tmp_path / "jaxqa_notebook_run/training_curves.png").is_file()


def test_readme_flag_table_is_the_parser():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert flags_table() in readme, "README's flag table is stale: paste jaxqa.cli.flags_table() into it"

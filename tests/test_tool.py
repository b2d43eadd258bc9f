"""jaxqa as a drop-in for Hugging Face's Flax run_qa.py: its flags and README command, TensorBoard and
curves, the answer command, the Colab notebook, README's flag table."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, require, write_json

from jaxqa.cli import build_parser, flags_table, parse_config
from jaxqa.config import SAMPLE_DIR, RunConfig, default_run, inert_flags

# Every field of ModelArguments, DataTrainingArguments and TrainingArguments in Hugging Face's
# examples/flax/question-answering/run_qa.py (plus `token` and `trust_remote_code` of later versions),
# each with a value as a user would pass it there and the value, of the type Hugging Face declares
# (str, int, float, bool), that it must give here. Values differ from jaxqa's defaults where the type
# allows, so a flag that is parsed but lands nowhere fails. Booleans take HfArgumentParser's forms:
# `--flag` alone is true, or true/false, yes/no, 1/0 in any case.
HF_FLAX_RUN_QA_COMMAND = [
    ("model_name_or_path", ["bert-base-uncased"], "bert-base-uncased"),
    ("config_name", ["bert-base-cased"], "bert-base-cased"),
    ("tokenizer_name", ["bert-large-uncased"], "bert-large-uncased"),
    ("cache_dir", ["/data/hf_cache"], "/data/hf_cache"),
    ("model_revision", ["v1.1"], "v1.1"),
    ("use_auth_token", ["True"], True),
    ("token", ["hf_token_a"], "hf_token_a"),
    ("trust_remote_code", ["yes"], True),
    ("dtype", ["bfloat16"], "bfloat16"),
    ("dataset_name", ["squad_v2"], "squad_v2"),
    ("dataset_config_name", ["squad_v2"], "squad_v2"),
    ("train_file", ["train.json"], "train.json"),
    ("validation_file", ["dev.json"], "dev.json"),
    ("test_file", ["test.json"], "test.json"),
    ("overwrite_cache", [], True),
    ("preprocessing_num_workers", ["4"], 4),
    ("max_seq_length", ["256"], 256),
    ("pad_to_max_length", ["TRUE"], True),
    ("max_train_samples", ["1000"], 1000),
    ("max_eval_samples", ["200"], 200),
    ("max_predict_samples", ["300"], 300),
    ("version_2_with_negative", ["1"], True),
    ("null_score_diff_threshold", ["-1.5"], -1.5),
    ("doc_stride", ["64"], 64),
    ("n_best_size", ["10"], 10),
    ("max_answer_length", ["50"], 50),
    ("output_dir", ["./bert-qa-squad"], "./bert-qa-squad"),
    ("overwrite_output_dir", [], True),
    ("do_train", [], True),
    ("do_eval", ["true"], True),
    ("do_predict", ["y"], True),
    ("per_device_train_batch_size", ["12"], 12),
    ("per_device_eval_batch_size", ["16"], 16),
    ("learning_rate", ["3e-5"], 3e-5),
    ("weight_decay", ["0.01"], 0.01),
    ("adam_beta1", ["0.85"], 0.85),
    ("adam_beta2", ["0.98"], 0.98),
    ("adam_epsilon", ["1e-6"], 1e-6),
    ("adafactor", ["1"], True),
    ("num_train_epochs", ["2"], 2.0),
    ("warmup_steps", ["100"], 100),
    ("logging_steps", ["25"], 25),
    ("save_steps", ["250"], 250),
    ("eval_steps", ["1000"], 1000),
    ("seed", ["7"], 7),
    ("push_to_hub", [], True),
    ("hub_model_id", ["me/bert-qa"], "me/bert-qa"),
    ("hub_token", ["hf_token_b"], "hf_token_b"),
]


def test_hugging_face_flax_run_qa_flags_mean_the_same_here():
    """A full Hugging Face command line: every flag lands in the field of that name with HF's value and
    type; booleans read as HF reads them; the flags whose effect is jaxqa's own act as HF's do."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxqa.training import train_state
    accepted = {action.dest for action in build_parser()._actions}
    missing = [flag for flag, _, _ in HF_FLAX_RUN_QA_COMMAND if flag not in accepted]
    assert not missing, f"flags of Hugging Face's run_qa.py that jaxqa does not accept: {missing}"
    argv = [token for flag, values, _ in HF_FLAX_RUN_QA_COMMAND for token in (f"--{flag}", *values)]
    config, overrides = parse_config(argv)
    assert overrides is None  # a run of its own, not the default job
    for flag, _, expected in HF_FLAX_RUN_QA_COMMAND:
        got = getattr(config, flag)
        assert type(got) is type(expected) and got == expected, (flag, got, expected)
    defaults = RunConfig()
    assert all(getattr(defaults, flag) != expected for flag, _, expected in HF_FLAX_RUN_QA_COMMAND), \
        "every value differs from jaxqa's default, so a flag that changes nothing fails above"

    for text, value in [("True", True), ("false", False), ("YES", True), ("no", False), ("1", True), ("0", False),
                        ("Y", True), ("n", False), ("t", True), ("F", False)]:  # Hugging Face's string_to_bool
        assert parse_config(["--do_train", text])[0].do_train is value, text
    assert parse_config(["--do_train"])[0].do_train is True
    assert parse_config(["--do_eval", "--validation_file", "dev.json"])[0].do_train is False

    # HF's meaning, not just the name: padding to max_seq_length instead of buckets; warmup_steps
    # (rather than a ratio) of linear warmup to the learning rate, then linear decay to 0, as in HF's
    # create_learning_rate_fn; trust_remote_code and preprocessing_num_workers accepted but inert.
    assert config.bucket is None and parse_config(["--do_train"])[0].bucket is not None
    _, schedule = train_state.make_optimizer(config, total_steps=1100)
    assert [float(schedule(s)) for s in (0, 50, 100, 600, 1100)] == pytest.approx([0, 1.5e-5, 3e-5, 1.5e-5, 0])
    # --adafactor --learning_rate 3e-5 --weight_decay 0.01 steps as Hugging Face's Adafactor(scale_parameter=False,
    # relative_step=False): the decay is decoupled and scaled by the rate (zero gradients at step 50, rate
    # 1.5e-5: a matrix of 2s moves by -1.5e-5 x 0.01 x 2, a bias not at all); at the peak (step 100) gradients
    # of one, after 100 steps of none, normalise to 101^0.4 and are clipped to RMS 1: -3e-5 x (1 + 0.01 x 2).
    tx, _ = train_state.make_optimizer(config, total_steps=1100)
    params = {"dense": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.zeros(3)}}
    opt_state, update = tx.init(params), jax.jit(tx.update)
    for step in range(101):
        fill = 1.0 if step == 100 else 0.0
        updates, opt_state = update(jax.tree.map(lambda p, f=fill: jnp.full_like(p, f), params), opt_state, params)
        if step in (50, 100):
            expected = [-3e-7, 0.0] if step == 50 else [-3.06e-5, -3e-5]
            got = [np.asarray(updates["dense"][name]) for name in ("kernel", "bias")]
            for name, value, want in zip(("kernel", "bias"), got, expected):
                np.testing.assert_allclose(value, np.full_like(value, want), rtol=1e-5, err_msg=f"{name}, step {step}")
    assert [f.split(":")[0] for f in inert_flags(config)] == ["--trust_remote_code", "--preprocessing_num_workers"]


def test_without_data_or_model_flags_the_default_job_takes_the_other_flags(capsys):
    """`run_qa.py --seed 43` is the default job at seed 43; any data or model flag makes a run of its own."""
    assert parse_config([]) == (default_run(), {})
    config, overrides = parse_config(["--seed", "43"])
    assert config == dataclasses.replace(default_run(), seed=43) and overrides == {"seed": 43}
    config, overrides = parse_config(["--seed", "43", "--eval_before_training", "false", "--output_dir", "o"])
    assert config == dataclasses.replace(default_run(), seed=43, eval_before_training=False, output_dir="o")
    assert overrides == {"seed": 43, "eval_before_training": False, "output_dir": "o"}
    for flag in ("--train_file", "--validation_file", "--test_file", "--dataset_name", "--model_name_or_path",
                 "--config_name"):
        config, overrides = parse_config([flag, "x", "--seed", "43"])
        assert overrides is None and config == RunConfig(**{flag[2:]: "x"}, seed=43), flag
    with pytest.raises(SystemExit) as stop:
        parse_config(["--help"])
    assert stop.value.code == 0 and "--train_file FILE [FILE ...]" in capsys.readouterr().out


def test_config_file_gives_the_defaults_and_flags_override_it(tmp_path):
    from jaxqa.errors import ConfigError

    recipe = tmp_path / "recipe.yaml"  # PyYAML reads 1e-4 as a string: read as the flag reads it
    recipe.write_text("do_train: true\nlearning_rate: 1e-4\nnum_train_epochs: 2\nseed: 5\n"
                      "train_file: [a.json, b.json]\nmax_seq_length: 256\n")
    config, overrides = parse_config([str(recipe), "--seed", "7", "--validation_file", "dev.json", "--do_eval"])
    assert overrides is None
    assert config == RunConfig(do_train=True, learning_rate=1e-4, num_train_epochs=2.0, seed=7, train_file="a.json,b.json",
                               max_seq_length=256, validation_file="dev.json", do_eval=True)
    assert type(config.num_train_epochs) is float and config.train_files == ["a.json", "b.json"]
    assert parse_config([str(recipe), "--train_file", "c.json"])[0].train_file == "c.json"
    as_json = tmp_path / "recipe.json"
    as_json.write_text(json.dumps({"do_eval": True, "validation_file": "dev.json", "max_seq_length": 256}))
    assert parse_config([str(as_json), "--max_seq_length", "128"])[0] == RunConfig(do_eval=True, validation_file="dev.json",
                                                                                 max_seq_length=128)
    recipe.write_text("do_train: true\nlearning_rat: 1e-4\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(recipe))}: unknown setting\\(s\\) learning_rat; "):
        parse_config([str(recipe), "--seed", "7"])


def test_config_file_values_are_checked_as_the_flags_are(tmp_path, capsys):
    """A config file's value goes through its flag's type and choices, as the command line's text does: a
    value the flag cannot take is one `jaxqa: error:` line naming the file and the flag (exit 2), never a
    traceback later nor a run with a wrong value."""
    from jaxqa.cli import main

    refused = {  # file text -> the error after "FILE: "
        "profile_steps: 615": "profile_steps: expected a string, got 615; quote it if it is text",
        "mesh: 2": "mesh: expected a string, got 2; quote it if it is text",
        "learning_rate: [1, 2]": "learning_rate: expected a number, got [1, 2]",
        "per_device_train_batch_size: 8.5": "per_device_train_batch_size: expected an integer, got 8.5",
        "do_train: 1": "do_train: expected true or false, got 1",
        "train_file: 5": "train_file: expected a file name or a list of them, got 5; quote it if it is text",
        "train_file: [a.json, 5]": 'train_file: expected a file name or a list of them, got ["a.json", 5]',
        "max_seq_length: null": "max_seq_length: expected an integer, got null; leave the line out for the default",
        "metric: no": "metric: expected one of auto, squad, squad_v2, cmrc, got false; quote it if it is text",
        "do_eval: maybe": 'do_eval: expected true or false, got "maybe"',
    }
    path = tmp_path / "run.yaml"
    for text, error in refused.items():
        path.write_text(f"validation_file: dev.json\n{text}\n")
        assert main([str(path)]) == 2, text
        assert capsys.readouterr().err.strip().splitlines() == [f"jaxqa: error: {path}: {error}"]
    as_json = tmp_path / "run.json"
    for settings, error in [({"do_train": 1}, "do_train: expected true or false, got 1"),
                            ({"per_device_train_batch_size": 8.5}, "per_device_train_batch_size: expected an "
                                                                   "integer, got 8.5")]:
        as_json.write_text(json.dumps(settings))
        assert main([str(as_json)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"jaxqa: error: {as_json}: {error}"]

    # Well-typed values, YAML's and JSON's, read as the flags read them; 10:15 is no base-60 number here.
    path.write_text("profile_steps: 10:15\nlearning_rate: 4.0e-4\nadam_epsilon: 1e-6\nnum_train_epochs: 2\n"
                    "do_train: yes\ndo_eval: 'false'\ntrain_file: [a.json, b.json]\nsave_total_limit: null\n"
                    "metric: squad_v2\nmesh: 'data=2'\nnull_score_diff_threshold: -1\n")
    assert parse_config([str(path)])[0] == RunConfig(
        profile_steps="10:15", learning_rate=4e-4, adam_epsilon=1e-6, num_train_epochs=2.0, do_train=True,
        do_eval=False, train_file="a.json,b.json", save_total_limit=None, metric="squad_v2", mesh="data=2",
        null_score_diff_threshold=-1.0)
    as_json.write_text(json.dumps({"per_device_train_batch_size": 16, "warmup_ratio": 0, "do_train": True,
                                   "train_file": ["a.json"], "eval_steps": None}))
    config = parse_config([str(as_json)])[0]
    assert config == RunConfig(per_device_train_batch_size=16, warmup_ratio=0.0, do_train=True, train_file="a.json")
    assert type(config.warmup_ratio) is float


def test_none_unsets_a_number_a_config_file_sets(tmp_path):
    """--save_total_limit none (as the help offers), --eval_steps none, --early_stopping_patience none: a
    recipe's value is overridden on the command line back to None (keep all, no evaluations, never stop)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("do_train: true\ndo_eval: true\nsave_total_limit: 3\neval_steps: 10\n"
                      "early_stopping_patience: 2\nmax_eval_samples: 100\nnull_score_diff_threshold: 0.5\n")
    kept = parse_config([str(recipe)])[0]
    assert (kept.save_total_limit, kept.eval_steps, kept.early_stopping_patience) == (3, 10, 2)
    config = parse_config([str(recipe), "--save_total_limit", "none", "--eval_steps", "None", "--early_stopping_patience",
                           "NONE", "--max_eval_samples", "none", "--null_score_diff_threshold", "none"])[0]
    assert config == RunConfig(do_train=True, do_eval=True, save_total_limit=None, eval_steps=None,
                               early_stopping_patience=None, max_eval_samples=None, null_score_diff_threshold=None)


def test_sizes_that_mean_nothing_are_refused_naming_the_flag():
    """A negative --warmup_steps (it shifted the schedule), --max_train_samples 0 (it failed later as "no
    window holds ...") and --max_eval_samples 0 (it scored 0 questions as F1 0.0) are refused before any work."""
    from jaxqa.errors import ConfigError

    base = ["--do_train", "--do_eval", "--train_file", "t.json", "--validation_file", "d.json", "--do_predict",
            "--test_file", "p.json"]
    for flags, error in [(["--warmup_steps", "-5"], "--warmup_steps must be >= 0 (0: --warmup_ratio decides), got -5"),
                         (["--max_train_samples", "0"], "--max_train_samples must be positive (or none), got 0"),
                         (["--max_eval_samples", "0"], "--max_eval_samples must be positive (or none), got 0"),
                         (["--max_predict_samples", "-1"], "--max_predict_samples must be positive (or none), got -1")]:
        with pytest.raises(ConfigError, match=f"^{re.escape(error)}$"):
            parse_config(base + flags)[0].validate()
    assert parse_config(base + ["--max_train_samples", "1", "--warmup_steps", "0"])[0].validate().max_train_samples == 1


def test_train_file_takes_several_files_in_either_spelling():
    spaced = parse_config(["--train_file", "v2/train.json", "v1/train.json", "--do_train"])[0]
    joined = parse_config(["--train_file", "v2/train.json,v1/train.json", "--do_train"])[0]
    assert spaced == joined and spaced.train_file == "v2/train.json,v1/train.json"  # a string: the run's identity
    assert spaced.train_files == ["v2/train.json", "v1/train.json"] and spaced.identity()["train_file"] == spaced.train_file
    assert parse_config(["--train_file", "one.json"])[0].train_files == ["one.json"] and RunConfig().train_files == []


@pytest.mark.parametrize("recipe", ["squad_v1_1h.yaml", "squad_v2_1h.yaml"])
def test_recipes_parse_into_a_run_config(recipe):
    import yaml

    path = ROOT / "recipes" / recipe
    settings = yaml.safe_load(path.read_text())
    assert settings and not {"train_file", "validation_file", "test_file", "model_name_or_path", "output_dir"} & set(settings)
    config, _ = parse_config([str(path), "--model_name_or_path", "M", "--train_file", "v2.json", "v1.json",
                              "--validation_file", "dev.json", "--test_file", "test.json", "--do_predict",
                              "--output_dir", "O"])
    config.validate()
    for name, value in settings.items():
        assert getattr(config, name) == value and type(getattr(config, name)) in (type(value), float), name
    assert config.train_files == ["v2.json", "v1.json"] and config.do_predict and config.output_dir == "O"


def _hf_readme_command(minilm_dir, out: Path) -> list[str]:
    """Hugging Face's README command for the Flax QA example, with the model swapped for the local MiniLM and
    `--dataset_name squad` for the bundled SQuAD sample, cut to a few samples so CI stays short."""
    return [sys.executable, str(ROOT / "run_qa.py"),
            "--model_name_or_path", str(minilm_dir),
            "--train_file", str(SAMPLE_DIR / "squad_sample_train.json"),
            "--validation_file", str(SAMPLE_DIR / "squad_sample_dev.json"),
            "--max_train_samples", "12", "--max_eval_samples", "4",
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
    # 12 questions in 12 windows: 1 step x 2 epochs, one train and one eval program to compile (48 and 24
    # questions took 4 + 4 steps and four eval programs: 108 s in a suite run)
    assert results["num_examples"] == 4 and results["step"] == 2
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
    # --eval_steps 1000 as Hugging Face's Flax run_qa.py reads it: also at the end of every epoch, so step 1
    # (epoch 1) is evaluated in the loop and step 2 (epoch 2) by the final evaluation
    evals = {r["step"]: r["eval"]["f1"] for r in logged if "eval" in r}
    assert sorted(evals) == [1, 2] and evals[2] == pytest.approx(results["f1"])
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("eval/f1")] == sorted(evals.items())
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
    from jaxqa.config import RunConfig
    from jaxqa.data import hub
    from jaxqa.errors import ConfigError

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"--dataset_name squad needs the optional `datasets` package \(pip install "
                                          r"datasets\) and network access to the Hub; or pass --train_file"):
        hub.dataset_files(RunConfig(dataset_name="squad", do_train=True), tmp_path)


def test_two_processes_writing_the_same_dataset_name_file_do_not_break_each_other(tmp_path, monkeypatch):
    """Each process of a multi-host run writes --dataset_name's split to the same output_dir/hub_data file
    (a shared filesystem). A second writer starting while the first is half-way must not take the first's
    temporary for a killed writer's leftover and delete it (the first then failed): both end, the file whole."""
    import types

    from jaxqa.config import RunConfig
    from jaxqa.data import hub

    records = [{"id": f"q{i}", "question": "Who?", "context": "Ann did.", "answers": {"text": ["Ann"],
                "answer_start": [0]}} for i in range(2)]
    config, writers, other_writer = RunConfig(dataset_name="squad", do_train=True), [], []

    class Split:
        def __len__(self):
            return len(records)

        def to_json(self, path, force_ascii):
            with open(path, "w") as file:
                file.write(json.dumps(records[0]) + "\n")
                writers.append(path)
                if len(writers) == 1:  # the other process writes the same file meanwhile
                    other_writer.append(hub.dataset_files(config, tmp_path))
                file.write(json.dumps(records[1]) + "\n")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *args, **kw: Split()))
    path = tmp_path / "hub_data/train.jsonl"
    assert hub.dataset_files(config, tmp_path) == other_writer[0] == {"train_file": str(path)}
    assert [json.loads(line) for line in path.read_text().splitlines()] == records
    assert [p.name for p in path.parent.iterdir()] == ["train.jsonl"]  # no temporary left behind


def test_colab_notebook_runs_top_to_bottom_on_two_cpu_devices(tmp_path, monkeypatch):
    """notebooks/colab_tpu.ipynb top to bottom, once, in a kernel with 2 fake CPU devices (its TPU path
    trains on a mesh of 8): it trains, evaluates, exports, draws the curves, and `trainer.answerer()`
    answers with the parameters where training left them, on the run's mesh, as the exported model
    answers on one device, and as it answers loaded onto that mesh (`from_pretrained(mesh=...)`)."""
    nbformat, nbclient = require("nbformat"), require("nbclient")
    notebook = nbformat.read(ROOT / "notebooks/colab_tpu.ipynb", as_version=4)
    cell = notebook.cells[-2].source  # the answerer cell, as the notebook has it
    assert cell.startswith("qa = trainer.answerer()\n")
    ask = cell[cell.index("answer = qa("):cell.index("print(answer)")]
    # Then the same question to the exported model, on one device (QuestionAnswerer's default).
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import json\nfrom jaxqa.scoring.answer import QuestionAnswerer\n"
        "qa = QuestionAnswerer.from_pretrained('jaxqa_notebook_run/model')\n"
        f"on_two = answer\n{ask}one = answer\n"
        # and loaded onto the run's mesh: its parameters go there (once they stayed on device 0, and failed)
        "qa = QuestionAnswerer.from_pretrained('jaxqa_notebook_run/model', mesh=trainer.mesh)\n"
        f"{ask}print('ANSWERS', json.dumps([dict(trainer.mesh.shape), on_two, one, answer]))"))
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # the kernel's JAX starts with it
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "2 CPU device(s)" in printed and "'f1':" in printed and "'answer':" in printed
    assert (tmp_path / "jaxqa_notebook_run/model/model.safetensors").is_file()
    assert (tmp_path / "jaxqa_notebook_run/training_curves.png").is_file()
    mesh, two, one, loaded_on_two = json.loads(printed.split("ANSWERS ")[1].splitlines()[0])
    assert mesh == {"data": 2, "fsdp": 1, "tensor": 1}
    for other in (two, loaded_on_two):
        assert (other["answer"], other["start"], other["end"]) == (one["answer"], one["start"], one["end"])
        assert abs(other["score"] - one["score"]) < 1e-4 and abs(other["probability"] - one["probability"]) < 1e-4, \
            (other, one)
    assert one["answer"]


def test_command_line_process_loads_tokenizers_without_pytorch(minilm_dir):
    """run_qa.py and `python -m jaxqa` mark PyTorch absent before `transformers` loads, so the tokenizer's
    import skips it (PyTorch is installed here, as the test reference) and tokenises the same."""
    code = ("import sys; from jaxqa.cli import keep_pytorch_out; keep_pytorch_out(); "
            "from jaxqa.data.features import load_tokenizer; ids = load_tokenizer(sys.argv[1])('Who wrote it?')['input_ids']; "
            "print(ids, sys.modules.get('torch') is not None)")
    proc = subprocess.run([sys.executable, "-c", code, str(minilm_dir)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("]")[1].strip() == "False"  # PyTorch never imported
    assert "PyTorch was not found" not in proc.stderr, proc.stderr  # (it is installed: no such notice)
    from jaxqa.data.features import load_tokenizer

    assert proc.stdout.split("]")[0] + "]" == str(load_tokenizer(minilm_dir)("Who wrote it?")["input_ids"])
    for entry in ("run_qa.py", "jaxqa/__main__.py"):
        assert re.search(r"keep_pytorch_out\(\)\n    sys\.exit\(main\((prog=\"python -m jaxqa\")?\)\)", (ROOT / entry).read_text())


def test_compilation_cache_defaults_to_jax_own_variable(monkeypatch, tmp_path):
    """JAX_COMPILATION_CACHE_DIR (JAX's own setting) is the default cache where set, so several runs share
    one; the flag wins over it, 'none' turns caching off, and without either it sits beside the output."""
    from jaxqa.config import RunConfig

    out = str(tmp_path / "out")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "shared"))
    assert RunConfig(output_dir=out).compilation_cache == str(tmp_path / "shared")
    assert RunConfig(output_dir=out, compilation_cache_dir=str(tmp_path / "mine")).compilation_cache == \
        str(tmp_path / "mine")
    assert RunConfig(output_dir=out, compilation_cache_dir="none").compilation_cache is None
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    assert RunConfig(output_dir=out).compilation_cache == str(tmp_path / ".jax_cache")


def test_readme_flag_table_is_the_parser():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert flags_table() in readme, "README's flag table is stale: paste jaxqa.cli.flags_table() into it"


def test_a_missing_test_reference_fails_under_ci_and_skips_elsewhere(monkeypatch):
    """conftest.require, used for torch and the notebook runner: never a silent skip in CI."""
    monkeypatch.setitem(sys.modules, "absent_reference", None)  # `import absent_reference` raises ImportError
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="absent_reference is needed by this test"):
        require("absent_reference")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="absent_reference is needed by this test"):
        require("absent_reference")
    assert require("json") is json


def _help(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_help_names_the_program_lists_the_commands_and_groups_the_flags():
    """`python -m jaxqa --help` names `python -m jaxqa` and lists its commands, one line each (run_qa.py's
    names run_qa.py); the flags come in sections (data, model, ..., multi-host), each flag once."""
    env = {**os.environ, "COLUMNS": "200"}
    helps = {prog: subprocess.run([sys.executable, *start, "--help"], capture_output=True, text=True, cwd=ROOT,
                                  env=env, timeout=120).stdout
             for prog, start in [("python -m jaxqa", ["-m", "jaxqa"]), ("run_qa.py", [str(ROOT / "run_qa.py")])]}
    for prog, text in helps.items():
        assert text.startswith(f"usage: {prog} [train] [CONFIG.yaml|CONFIG.json] [--flag value ...]\n"
                               f"       {prog} {{answer,evaluate,report,compare,serve}} ..."), text[:300]
        listed = re.findall(r"^  (\w+) +\w", text.split("\ncommands:\n")[1].split("\n\n")[0], re.M)
        assert listed == ["train", "answer", "evaluate", "report", "compare", "serve"]
    sections = dict(re.findall(r"^(\S[^\n]*):\n(.*?)(?=^\S|\Z)", helps["python -m jaxqa"], re.M | re.S))
    assert list(sections)[1:] == ["options", "data", "model", "training", "evaluation", "checkpoints", "speed",
                                  "output", "multi-host"]
    flags = {name: re.findall(r"^  (--\w+)", body, re.M) for name, body in sections.items()}
    for flag, section in [("--train_file", "data"), ("--model_name_or_path", "model"), ("--learning_rate", "training"),
                          ("--max_steps", "training"), ("--eval_steps", "evaluation"), ("--save_steps", "checkpoints"),
                          ("--bf16", "speed"), ("--mesh", "speed"), ("--output_dir", "output"),
                          ("--process_id", "multi-host")]:
        assert flag in flags[section], (flag, section)
    listed = [flag for section in flags.values() for flag in section]
    assert sorted(listed) == sorted({*listed}) and {f"--{f.name}" for f in dataclasses.fields(RunConfig)} <= {*listed}


def test_evaluate_is_a_command_and_help_texts_read_whole(capsys, data_dir, tmp_path):
    """`python -m jaxqa evaluate DATA PRED` is `python -m jaxqa.evaluate DATA PRED`; the scorer's description
    is a sentence, not "...interface:"; compare's help says 95%, not 95%%."""
    from jaxqa.cli import main
    from jaxqa.report import compare
    from jaxqa.scoring import evaluate

    records = [r for r in json.loads((data_dir / "fixtures/flat_sample.json").read_text())["data"]
               if r["answers"]["text"]][:20]
    data = write_json(tmp_path / "data.json", {"data": records})
    predictions = {r["id"]: r["answers"]["text"][0] for r in records[:-1]}  # all right, but the last one missing
    (tmp_path / "pred.json").write_text(json.dumps(predictions))
    assert main(["evaluate", str(data), str(tmp_path / "pred.json")]) == 0
    via_command = capsys.readouterr()
    assert evaluate.main([str(data), str(tmp_path / "pred.json")]) == 0
    assert via_command == capsys.readouterr()
    assert len(records) == 8 and json.loads(via_command.out) == {"metric": "squad", "exact_match": 87.5, "f1": 87.5}

    text = " ".join(_help(capsys, main, ["evaluate", "--help"]).split())
    assert text.startswith("usage: run_qa.py evaluate [-h]") and "interface:" not in text
    assert "Score a predictions file against SQuAD-format data (nested or flat JSON, or JSON lines) with the official " \
           "SQuAD v1.1/v2.0 scripts' arguments and numbers; prints the metrics as one JSON object." in text
    text = " ".join(_help(capsys, compare.main, ["--help"]).split())
    assert "paired bootstrap 95% confidence interval" in text and "%%" not in text


def test_hugging_face_trainer_flags_mean_the_same_or_name_the_flag_to_use(tmp_path, capsys):
    """--bf16, --max_steps, --eval_strategy (and its old name --evaluation_strategy), --save_strategy and
    --report_to land in jaxqa's settings; --fp16 and --logging_dir are refused naming what to use instead,
    on the command line and in a config file alike; a mistyped flag is answered with the closest one."""
    from jaxqa.errors import ConfigError

    run = ["--do_train", "--train_file", "a.json", "--do_eval", "--validation_file", "b.json"]
    config = parse_config([*run, "--bf16", "--max_steps", "700", "--evaluation_strategy", "epoch", "--save_strategy",
                           "no", "--report_to", "none"])[0]
    assert config == RunConfig(do_train=True, train_file="a.json", do_eval=True, validation_file="b.json",
                               dtype="bfloat16", max_steps=700, eval_strategy="epoch", save_strategy="no",
                               report_to="none")
    assert parse_config([*run, "--bf16", "false", "--eval_strategy", "steps"])[0] == RunConfig(
        do_train=True, train_file="a.json", do_eval=True, validation_file="b.json", eval_strategy="steps",
        dtype="float32")  # as in Hugging Face: no bf16, whatever --dtype's default
    refused = {
        ("--fp16",): "--fp16: float16 training needs loss scaling, which jaxqa does not do; use --bf16 (= --dtype "
                     "bfloat16: the same speed on GPUs and TPUs that have it, no loss scaling needed)",
        ("--logging_dir", "runs"): "--logging_dir runs: jaxqa writes TensorBoard event files to OUTPUT_DIR/tensorboard "
                                   "(tensorboard --logdir OUTPUT_DIR); drop --logging_dir and choose --output_dir",
        ("--bf16", "--dtype", "float32"): "--bf16 true means --dtype bfloat16, but --dtype float32 is given too; "
                                          "pass one",
        ("--bf16", "false", "--dtype", "auto"): "--bf16 false means --dtype float32, but --dtype auto is given too; "
                                                "pass one",
    }
    for flags, error in refused.items():
        with pytest.raises(ConfigError) as err:
            parse_config([*run, *flags])
        assert str(err.value) == error
    for flags, error in [(["--max_steps", "0"], "--max_steps must be positive (or -1: --num_train_epochs decides), "
                                                "got 0"),
                         (["--do_eval", "false", "--eval_strategy", "epoch"], "--eval_strategy epoch evaluates during "
                          "training: it needs --do_train and --do_eval (with --validation_file)")]:
        with pytest.raises(ConfigError) as err:
            parse_config([*run, *flags])[0].validate()
        assert str(err.value) == error
    recipe = tmp_path / "hf.yaml"
    recipe.write_text("do_train: true\ntrain_file: a.json\nbf16: true\nevaluation_strategy: 'no'\n")
    assert parse_config([str(recipe)])[0] == RunConfig(do_train=True, train_file="a.json", dtype="bfloat16",
                                                       eval_strategy="no")
    recipe.write_text("do_train: true\ntrain_file: a.json\nfp16: true\n")
    with pytest.raises(ConfigError, match=r"^--fp16: float16 training needs loss scaling"):
        parse_config([str(recipe)])

    for flags, hint in [(["--lerning_rate", "1e-4"], "--lerning_rate 1e-4 (did you mean --learning_rate?)"),
                        (["--num_epochs=2", "--evaluation_strategy", "epoch", "--weightdecay", "0.01"],
                         "--num_epochs=2 --weightdecay 0.01 (did you mean --num_train_epochs for --num_epochs, "
                         "--weight_decay for --weightdecay?)"),
                        (["--push_to_hugging_face"], "--push_to_hugging_face")]:
        with pytest.raises(SystemExit):
            parse_config([*run, *flags])
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"run_qa.py: error: unrecognized arguments: {hint}"


def test_eval_strategy_steps_epoch_no_as_hugging_face_trainer():
    """Steps after which the train loop evaluates, 12 steps of 5 per epoch: Hugging Face's Trainer for
    steps / epoch / no, its Flax run_qa.py (every N and at each epoch's end) for auto, the jaxqa default."""
    def due(**settings):
        config = RunConfig(do_train=True, do_eval=True, logging_steps=4, **settings)
        return [step for step in range(1, 13) if config.evaluation_due(step, steps_per_epoch=5)]

    assert due(eval_steps=3) == [3, 5, 6, 9, 10, 12]  # auto: the Flax run_qa.py's rule, as before
    assert due() == []
    assert due(eval_strategy="steps", eval_steps=3) == [3, 6, 9, 12]
    assert due(eval_strategy="steps") == [4, 8, 12]  # no --eval_steps: every --logging_steps, as Hugging Face's
    assert due(eval_strategy="epoch", eval_steps=3) == [5, 10]
    assert due(eval_strategy="no", eval_steps=3) == []

"""Meshes, logical-axis rules and multi-host runs.

Runs that need several devices go to subprocesses with fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N must be set before JAX starts; this process's
JAX already has one device): `sharding_worker.py` for the step-equivalence checks, `run_qa.py` for
the multi-process run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, save_tiny_bert

from jaxqa import sharding
from jaxqa.config import RunConfig
from jaxqa.errors import ConfigError

WORKER = str(Path(__file__).with_name("sharding_worker.py"))
# Sizes divisible by 8 where a mesh axis of 8 should split them; the vocab (30522) is not: it
# exercises the replicated fallback.
SHARDABLE = dict(hidden_size=64, num_attention_heads=8, intermediate_size=128)


def _env(n_devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def bert64_dir(tmp_path_factory, minilm_dir) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("bert64"), minilm_dir, **SHARDABLE)


# --- in this process: parsing, rules, errors ------------------------------------------------------

def test_parse_mesh():
    assert sharding.parse_mesh("", 8) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert sharding.parse_mesh("data=2,fsdp=2,tensor=2", 8) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert sharding.parse_mesh("fsdp=-1,tensor=2", 8) == {"data": 1, "fsdp": 4, "tensor": 2}
    assert sharding.parse_mesh(" data = -1 ", 4) == {"data": 4, "fsdp": 1, "tensor": 1}


@pytest.mark.parametrize("spec, n, message", [
    ("data=3", 8, "--mesh data=3: the sizes multiply to 3 but there are 8 devices; make the product 8"),
    ("data=3,fsdp=-1", 8, "--mesh data=3,fsdp=-1: 8 devices do not divide by 3"),
    ("pipeline=2", 8, "--mesh pipeline=2: unknown axis 'pipeline'; use data, fsdp, tensor"),
    ("data=-1,fsdp=-1", 8, "--mesh data=-1,fsdp=-1: only one axis can be -1"),
    ("data=two", 8, "--mesh data=two: data needs an integer size"),
    ("data=0", 8, "--mesh data=0: data=0; sizes are positive"),
])
def test_bad_mesh_is_a_config_error_naming_the_flag(spec, n, message):
    with pytest.raises(ConfigError) as err:
        sharding.parse_mesh(spec, n)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_mesh_syntax_is_checked_with_the_other_flags():
    with pytest.raises(ConfigError, match="--mesh tensr=2: unknown axis"):
        RunConfig(do_eval=True, validation_file="x.json", mesh="tensr=2").validate()


@pytest.mark.parametrize("flags, message", [
    (dict(coordinator_address="localhost:1234"), "--coordinator_address, --num_processes and --process_id go together"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2),
     "--process_id 2 must be in [0, --num_processes 2)"),
])
def test_partial_multihost_flags_are_config_errors(flags, message):
    with pytest.raises(ConfigError) as err:
        sharding.initialize_distributed(**flags)
    assert str(err.value).startswith(message)


def test_logical_rules_fall_back_to_replicated_when_a_dim_does_not_divide():
    shape = {"data": 1, "fsdp": 8, "tensor": 2}
    P = sharding.P
    assert sharding.logical_to_spec(("vocab", "embed"), (30522, 1024), shape) == P("tensor", "fsdp")
    assert sharding.logical_to_spec(("vocab", "embed"), (30521, 1024), shape) == P(None, "fsdp")
    assert sharding.logical_to_spec(("embed", "classes"), (1024, 2), shape) == P("fsdp", None)
    assert sharding.logical_to_spec(("embed", "mlp"), (100, 4096), shape) == P(None, "tensor")
    assert sharding.logical_to_spec(("batch", "length", None), (16, 128, 64), shape) == P("fsdp", None, None)
    assert sharding.logical_to_spec(("batch",), (16,), {**shape, "data": 2}) == P(("data", "fsdp"))
    assert sharding.logical_to_spec(("batch", None), (12, 3), shape) == P(None, None)  # 12 rows on fsdp=8
    assert sharding.logical_to_spec(("embed", "embed"), (64, 64), shape) == P("fsdp", None)  # an axis once only


def test_every_parameter_has_logical_axis_names(tiny_bert_dir):
    from flax import nnx

    from jaxqa.models.loading import load_model

    _, params, _ = load_model(tiny_bert_dir)
    for path, var in nnx.to_flat_state(params):
        names = var.get_metadata().get("out_sharding")
        assert names and len(names) == var.get_value().ndim and all(n in sharding.RULES for n in names), path


def test_single_host_reads_every_row():
    mesh = sharding.make_mesh()
    assert np.array_equal(sharding.local_rows(mesh, 4), np.arange(4))
    assert sharding.batch_size_multiplier(mesh) == 1


def test_mesh_that_does_not_fit_the_devices_is_one_line_cli_error(tmp_path, data_dir):
    proc = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--do_eval", "--validation_file",
                           data_dir / "fixtures/flat_sample.json", "--mesh", "data=2,tensor=2", "--accelerator", "cpu",
                           "--output_dir", tmp_path], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=_env(2))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "jaxqa: error: --mesh data=2,tensor=2: the sizes multiply to 4 but there are 2 devices; "
        "make the product 2 (or give one axis -1)")


# --- 8 fake devices: the same step on every mesh --------------------------------------------------

@pytest.fixture(scope="module")
def mesh_runs(bert64_dir, data_dir) -> dict:
    proc = subprocess.run([sys.executable, WORKER, "meshes", str(bert64_dir), str(data_dir / "fixtures/flat_sample.json")],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=_env(8))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("spec", ["data=8", "fsdp=8", "tensor=8", "data=2,fsdp=2,tensor=2"])
def test_sharded_step_equals_single_device_step(mesh_runs, spec):
    run = mesh_runs["meshes"][spec]
    assert mesh_runs["n_devices"] == 8
    assert run["loss_diff"] < 1e-5 and run["logits_diff"] < 1e-5, run
    assert run["param_diff"] < 1e-5 and run["opt_diff"] < 1e-5, run


def test_fsdp_splits_parameters_and_adam_moments_eightfold(mesh_runs):
    fsdp = mesh_runs["meshes"]["fsdp=8"]
    layer = "encoder/layers/0/"
    assert fsdp["params"][layer + "attention/qkv/kernel"] == {"shape": [64, 192], "spec": "P('fsdp', None)",
                                                            "shard": [8, 192]}
    assert fsdp["params"][layer + "ffn/output/kernel"]["shard"] == [128, 8]
    assert fsdp["params"]["encoder/embeddings/word/embedding"]["shard"] == [30522, 8]
    assert fsdp["params"]["qa_outputs/kernel"]["shard"] == [8, 2]
    assert fsdp["params"][layer + "ffn/norm/scale"]["spec"] == "P(None,)"  # tiny: replicated
    # Everything but LayerNorm vectors and a few biases is split: within 1% of 1/8 per device.
    for kind in ("param", "opt"):
        assert fsdp[f"{kind}_bytes_device0"] < fsdp[f"{kind}_bytes"] / 8 * 1.01, (kind, fsdp)
    data = mesh_runs["meshes"]["data=8"]
    assert data["param_bytes_device0"] == data["param_bytes"] and data["opt_bytes_device0"] == data["opt_bytes"]


def test_tensor_axis_splits_heads_and_mlp(mesh_runs):
    tensor = mesh_runs["meshes"]["tensor=8"]["params"]
    layer = "encoder/layers/1/"
    assert tensor[layer + "attention/qkv/kernel"]["shard"] == [64, 24]
    assert tensor[layer + "attention/out/kernel"]["shard"] == [8, 64]
    assert tensor[layer + "ffn/intermediate/kernel"]["shard"] == [64, 16]
    assert tensor[layer + "ffn/output/kernel"]["shard"] == [16, 64]
    assert tensor["encoder/embeddings/word/embedding"]["spec"] == "P(None, None)"  # 30522 % 8 != 0
    mixed = mesh_runs["meshes"]["data=2,fsdp=2,tensor=2"]["params"]
    assert mixed["encoder/embeddings/word/embedding"] == {"shape": [30522, 64], "spec": "P('tensor', 'fsdp')",
                                                          "shard": [15261, 32]}


# --- two processes x 4 devices = one process x 8 devices ------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def _two_process_args(model_dir: Path, data_dir: Path, epochs: float) -> list[str]:
    sample = data_dir / "fixtures/flat_sample.json"  # 28 windows of 128: 3.5 batches of 8 per epoch
    args = [sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", model_dir, "--train_file", sample,
            "--validation_file", sample, "--do_train", "--do_eval", "--max_seq_length", 128, "--doc_stride", 32,
            "--pad_to_max_length", "--per_device_train_batch_size", 2, "--per_device_eval_batch_size", 2,
            "--mesh", "data=2,fsdp=2,tensor=2", "--num_train_epochs", epochs, "--logging_steps", 1,
            "--learning_rate", 1e-3, "--adam_epsilon", 1e-5, "--accelerator", "cpu"]  # eps: see sharding_worker.OPT
    return [str(a) for a in args]


def _start_two_processes(args: list[str], out: Path, env: dict) -> list[subprocess.Popen]:
    """Processes 0 and 1 of one jax.distributed run over localhost, 4 fake devices each."""
    port = _free_port()
    return [subprocess.Popen(args + ["--output_dir", str(out), "--coordinator_address", f"localhost:{port}",
                                     "--num_processes", "2", "--process_id", str(pid)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
            for pid in range(2)]


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """(stdout, stderr) of each process; a process still running at the deadline (a hang) is killed."""
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_processes_train_like_one(tmp_path, bert64_dir, data_dir):
    """jax.distributed over localhost (gloo CPU collectives): 2 processes x 4 fake devices on a
    data=2,fsdp=2,tensor=2 mesh, each reading half of every batch, give the losses, predictions and
    saved model of 1 process x 8 devices; with --push_to_hub only process 0 uploads."""
    args = _two_process_args(bert64_dir, data_dir, epochs=1.25)
    single = subprocess.run(args + ["--output_dir", str(tmp_path / "one")], capture_output=True, text=True,
                            timeout=600, cwd=ROOT, env=_env(8))
    assert single.returncode == 0, single.stderr[-3000:]

    # --push_to_hub against a stand-in Hub (tests/fake_hub) that logs each call and the files sent.
    hub_log = tmp_path / "hub.jsonl"
    hub_env = {**_env(4), "PYTHONPATH": os.pathsep.join([str(ROOT / "tests/fake_hub"), _env(4)["PYTHONPATH"]]),
               "JAXQA_FAKE_HUB_LOG": str(hub_log), "HF_HUB_OFFLINE": "0"}
    procs = _start_two_processes(args + ["--push_to_hub", "--hub_model_id", "tester/two"], tmp_path / "two", hub_env)
    outputs = _finish(procs, timeout=600)
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    uploads = [json.loads(line) for line in hub_log.read_text().splitlines() if '"upload_folder"' in line]
    assert [(u["process_id"], u["repo_id"]) for u in uploads] == [("0", "tester/two")], uploads  # process 0 alone
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(uploads[0]["files"]), uploads
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == 5 and len(two) == 5
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-5, (one, two)
    # Process 0 alone reports and writes; evaluation saw the full logits on every process.
    assert "after fine-tuning" in outputs[0][0] and "after fine-tuning" not in outputs[1][0]
    assert not re.search(r"INFO jaxqa", outputs[1][1])
    for name in ("predictions.json", "eval_results.json"):
        # the no-answer threshold jaxqa saves sits 1 below the lowest odds here, which the two meshes'
        # float32 sums give 3e-8 apart: the one figure compared to a tolerance
        first, second = ({**json.loads((tmp_path / run / name).read_text()), "eval_seconds": 0} for run in ("one", "two"))
        threshold = first.pop("best_f1_reached_thresh", None)
        assert threshold == pytest.approx(second.pop("best_f1_reached_thresh", None), abs=1e-6)
        assert first == second
    from safetensors.numpy import load_file

    a, b = load_file(tmp_path / "one/model/model.safetensors"), load_file(tmp_path / "two/model/model.safetensors")
    worst = max((float(np.abs(a[k] - b[k]).max()), k) for k in a)
    assert worst[0] < 1e-5, worst


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(tmp_path, bert64_dir, data_dir):
    """Only process 1 is signalled (as a preempted host would be). The checkpoint save is collective, so
    both must stop at one step (JAX's preemption sync point), save it together and exit: no hang."""
    out = tmp_path / "preempted"
    procs = _start_two_processes(_two_process_args(bert64_dir, data_dir, epochs=150), out, _env(4))  # 600 steps
    deadline = time.monotonic() + 300
    while not ((out / "metrics.jsonl").exists() and len(_losses(out)) >= 3):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the run ended or stalled"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    outputs = _finish(procs, timeout=240)
    stops = [re.search(r"jaxqa: stopped by (\w+) at step (\d+)/600; checkpoint saved", err) for _, err in outputs]
    assert all(p.returncode == 0 for p in procs) and all(stops), [err[-2000:] for _, err in outputs]
    step = int(stops[0].group(2))
    assert int(stops[1].group(2)) == step and 3 <= step < 600
    assert [p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()] == [str(step)]

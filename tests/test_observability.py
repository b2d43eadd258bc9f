"""Long runs you can see into: compile once (and from the cache), honest FLOP/s, no hidden host round
trips, every eval example counted once, memory known before the run."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT

from jaxqa import batching, compilation, decode, throughput
from jaxqa.config import RunConfig
from jaxqa.errors import ConfigError
from jaxqa.steps import forward
from jaxqa.trainer import Trainer


def _config(tiny_bert_dir, data_dir, tmp_path, **overrides) -> RunConfig:
    settings = dict(model_name_or_path=str(tiny_bert_dir), train_file=str(data_dir / "squad_v1.1/train.json"),
                    validation_file=str(data_dir / "squad_v1.1/dev.json"), max_train_samples=60, max_eval_samples=40,
                    do_train=True, max_seq_length=192, doc_stride=64, per_device_train_batch_size=8,
                    per_device_eval_batch_size=7, num_train_epochs=2, learning_rate=1e-3, logging_steps=2,
                    save_steps=1000, output_dir=str(tmp_path / "out"), compilation_cache_dir="none")
    return RunConfig(**{**settings, **overrides})


@pytest.fixture()
def compile_events():
    """Names of the functions XLA compiles while the test runs."""
    names: list[str] = []

    def listen(event, _secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name", ""))

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield names
    jax.monitoring.unregister_event_duration_listener(listen)


def test_every_bucket_compiles_once_before_training_and_never_again(tiny_bert_dir, data_dir, tmp_path,
                                                                     compile_events):
    trainer = Trainer(_config(tiny_bert_dir, data_dir, tmp_path))
    buckets = sorted({b.seq_len for b in trainer._plan(trainer.train_features, trainer.train_batch, epoch=0)})
    assert len(buckets) >= 2  # a real bucketed run: several shapes
    report = trainer.compile_train_steps()
    assert report["seq_lens"] == buckets and sorted(trainer.train_steps) == buckets
    compiled_before_fit = sum("train_step" in name for name in compile_events)
    assert compiled_before_fit == len(buckets)
    trainer.fit()  # two epochs: every bucket is seen again in the second
    assert sum("train_step" in name for name in compile_events) == compiled_before_fit


def test_step_loop_runs_under_a_transfer_guard(tiny_bert_dir, data_dir, tmp_path, monkeypatch):
    """The loop runs under jax.transfer_guard("disallow"): a clean run passes, and an implicit
    device->host copy slipped into the loop (here: float() of a device scalar) fails loudly."""
    config = _config(tiny_bert_dir, data_dir, tmp_path, num_train_epochs=1)
    Trainer(config).fit()  # no implicit transfer anywhere in the loop

    original = throughput.Window.add

    def leaky_add(self, batch, lengths):
        original(self, batch, lengths)
        float(jnp.zeros(()) + batch.seq_len)  # implicit transfers (the int to the device, the sum back)

    monkeypatch.setattr(throughput.Window, "add", leaky_add)
    trainer = Trainer(_config(tiny_bert_dir, data_dir, tmp_path, num_train_epochs=1,
                              output_dir=str(tmp_path / "leaky")))
    with pytest.raises(Exception, match="Disallowed (host-to-device|device-to-host) transfer"):
        trainer.fit()


def test_partial_last_eval_batch_matches_an_unbatched_reference(tiny_bert_dir, data_dir, tmp_path):
    """40 questions, a window count that 7 does not divide: every window's logits equal a forward of
    that window alone, unpadded; the decoded answers are identical."""
    trainer = Trainer(_config(tiny_bert_dir, data_dir, tmp_path, do_train=False, do_eval=True))
    features, examples = trainer.eval_features, trainer.eval_examples
    assert len(features) % trainer.eval_batch != 0
    start, end = trainer.logits(features)
    arrays = features.model_inputs()
    ref_start, ref_end = np.full_like(start, -np.inf), np.full_like(end, -np.inf)
    for row, length in enumerate(features.lengths):
        single = batching.gather(arrays, batching.Batch(np.array([row]), int(length)))
        s, e = forward(trainer.state.graphdef, trainer.state.params, single)
        ref_start[row, :length], ref_end[row, :length] = np.asarray(s)[0], np.asarray(e)[0]
    real = np.arange(start.shape[1])[None] < features.lengths[:, None]
    np.testing.assert_allclose(start[real], ref_start[real], atol=2e-5)
    np.testing.assert_allclose(end[real], ref_end[real], atol=2e-5)
    ours = decode.decode(examples.contexts, start, end, features.offsets, features.example_index,
                         max_answer_length=30)
    reference = decode.decode(examples.contexts, ref_start, ref_end, features.offsets, features.example_index,
                              max_answer_length=30)
    assert ours.texts == reference.texts and len(ours.texts) == 40


def test_logged_model_flops_match_an_independent_count(tiny_bert_dir, data_dir, tmp_path):
    """Padded to 192 so every step has the same shape: FLOPs = 6 N per token (N = matmul parameters) +
    12 L h S per token for attention (the PaLM appendix formula), times tokens, against the log."""
    config = _config(tiny_bert_dir, data_dir, tmp_path, pad_to_max_length=True, num_train_epochs=1)
    trainer = Trainer(config)
    trainer.fit()
    cfg = json.loads((tiny_bert_dir / "config.json").read_text())
    h, i, layers, seq = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], 192
    n_matmul = layers * (4 * h * h + 2 * h * i) + 2 * h
    per_token = 6 * n_matmul + 12 * layers * h * seq
    records = [json.loads(line) for line in (tmp_path / "out/metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert len(train) >= 3
    for record in train[1:]:  # each window holds 2 steps of 8 x 192 tokens (the last may hold 1)
        steps = 2 if record["step"] % 2 == 0 else 1
        expected = per_token * steps * 8 * seq
        logged = record["model_tflops"] * 1e12 * record["window_seconds"]
        assert logged == pytest.approx(expected, rel=0.02)
        assert record["mfu"] * trainer.window.peak == pytest.approx(record["model_tflops"] * 1e12, rel=1e-6)
        assert record["padded_tokens_per_s"] * record["window_seconds"] == pytest.approx(steps * 8 * seq)
    goodput = json.loads((tmp_path / "out/goodput.json").read_text()) if (tmp_path / "out/goodput.json").exists() \
        else trainer.goodput.summary()
    parts = sum(goodput[k] for k in ("startup", "compile", "train_steps", "data_wait", "eval", "checkpoint", "idle"))
    assert parts == pytest.approx(goodput["wall_seconds"], abs=0.1) and goodput["compile"] > 0


def test_dry_run_reports_memory_and_a_run_too_big_stops_before_training(tiny_bert_dir, data_dir, tmp_path,
                                                                        monkeypatch):
    proc = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(tiny_bert_dir),
                           "--train_file", str(data_dir / "squad_v1.1/train.json"), "--max_train_samples", "30",
                           "--do_train", "--max_seq_length", "128", "--doc_stride", "32", "--dry_run",
                           "--output_dir", str(tmp_path / "dry")], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"dry run: a train step of 8 x 128 tokens on mesh \{'data': 1, 'fsdp': 1, 'tensor': 1\} needs "
                     r"[\d.]+ GiB per device of [\d.]+ GiB \([\d.]+%\) \[argument .* GiB\]; it fits", proc.stdout)
    assert not (tmp_path / "dry/checkpoints").exists() and not (tmp_path / "dry/model").exists()

    monkeypatch.setattr(compilation, "device_capacity", lambda device: 1 << 20)  # a 1 MiB device
    trainer = Trainer(_config(tiny_bert_dir, data_dir, tmp_path))
    with pytest.raises(ConfigError, match=r"a train step of 8 x \d+ tokens needs [\d.]+ GiB per device but the "
                                          r"device has 0.00 GiB; lower --per_device_train_batch_size"):
        trainer.fit()
    assert int(trainer.state.step) == 0


def test_second_run_compiles_from_the_persistent_cache(tiny_bert_dir, data_dir, tmp_path):
    cache = tmp_path / "jax_cache"
    command = [sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(tiny_bert_dir),
               "--train_file", str(data_dir / "squad_v1.1/train.json"), "--max_train_samples", "30", "--do_train",
               "--max_seq_length", "128", "--doc_stride", "32", "--num_train_epochs", "1",
               "--compilation_cache_dir", str(cache), "--overwrite_output_dir"]
    found = []
    for run in ("first", "second"):
        proc = subprocess.run([*command, "--output_dir", str(tmp_path / run)], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        found.append(re.search(r"compiled the train step for (\d+) batch shape\(s\) in [\d.]+s \(persistent cache: "
                               r"(\d+) hit\(s\), (\d+) miss\(es\); (\d+) traced", proc.stderr).groups())
    (shapes, hits, misses, traced), (shapes2, hits2, misses2, traced2) = found
    assert int(misses) >= int(shapes) and int(hits2) >= int(shapes2) == int(shapes) and int(misses2) == 0
    # The second run loads the traced programs saved by the first (another output_dir is fine) and
    # they compute exactly what the first run's freshly traced ones did.
    assert int(traced) == int(shapes) and int(traced2) == 0
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
               if "loss" in r] for run in ("first", "second")]
    assert losses[0] and losses[0] == losses[1]

"""Long runs you can see into: compile once (and from the cache), honest FLOP/s, no hidden host round
trips, every eval example counted once, memory known before the run."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT

from jaxqa import clock
from jaxqa.config import RunConfig
from jaxqa.data import batching
from jaxqa.errors import ConfigError
from jaxqa.models.loading import forward
from jaxqa.scoring import decode
from jaxqa.training import compilation, run_setup, throughput, train_state
from jaxqa.training.trainer import Trainer


def _config(tiny_bert_dir, data_dir, tmp_path, **overrides) -> RunConfig:
    settings = dict(model_name_or_path=str(tiny_bert_dir), train_file=str(data_dir / "squad_v1.1/train.json"),
                    validation_file=str(data_dir / "squad_v1.1/dev.json"), max_train_samples=60, max_eval_samples=40,
                    do_train=True, max_seq_length=192, doc_stride=64, per_device_train_batch_size=8,
                    per_device_eval_batch_size=7, num_train_epochs=2, learning_rate=1e-3, logging_steps=2,
                    save_steps=1000, output_dir=str(tmp_path / "out"), compilation_cache_dir="none")
    return RunConfig(**{**settings, **overrides})


@pytest.fixture()
def compile_events():
    """(function name, start, end) of each XLA compilation while the test runs, in the order they end."""
    events: list[tuple[str, float, float]] = []

    def listen(event, secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            end = time.perf_counter()
            events.append((kwargs.get("fun_name", ""), end - secs, end))

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield events
    jax.monitoring.unregister_event_duration_listener(listen)


def test_every_bucket_compiles_once_before_training_and_never_again(tiny_bert_dir, data_dir, tmp_path,
                                                                     compile_events, monkeypatch):
    """Also: an evaluation inside the loop starts its clock once the steps dispatched before it are done
    (step 3 is not logged, so nothing else waits for it): their time is the window's, not the eval's."""
    real_evaluate, ready_at_eval = Trainer.evaluate, []

    def evaluate(self, *args, **kwargs):
        ready_at_eval.append(all(leaf.is_ready() for leaf in jax.tree.leaves(self.state)))
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    trainer = Trainer(_config(tiny_bert_dir, data_dir, tmp_path, do_eval=True, eval_steps=3))
    buckets = sorted({b.seq_len for b in run_setup.plan(trainer.config, trainer.train_features, trainer.train_batch, epoch=0)})
    assert len(buckets) >= 2  # a real bucketed run: several shapes
    report = trainer.compile_train_steps()
    assert report["seq_lens"] == buckets and sorted(trainer.train_steps) == buckets
    compiled_before_fit = sum("train_step" in name for name, _, _ in compile_events)
    assert compiled_before_fit == len(buckets)
    # Compiled side by side, one thread per core (2 here): the compilations overlap in time.
    spans = sorted((start, end) for name, start, end in compile_events if "train_step" in name)
    overlapping = sum(later_start < end for (_, end), (later_start, _) in zip(spans, spans[1:]))
    assert overlapping >= 1 or len(os.sched_getaffinity(0)) == 1, spans
    trainer.fit()  # two epochs: every bucket is seen again in the second
    assert sum("train_step" in name for name, _, _ in compile_events) == compiled_before_fit
    assert ready_at_eval and all(ready_at_eval), ready_at_eval


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
    that window without padding (batched only with windows of its own length); the decoded answers are
    identical. In float32: bf16 rounds a window differently in a batch of another shape."""
    trainer = Trainer(_config(tiny_bert_dir, data_dir, tmp_path, do_train=False, do_eval=True, dtype="float32"))
    features, examples = trainer.eval_features, trainer.eval_examples
    assert len(features) % trainer.eval_batch != 0
    start, end = trainer.logits(features)
    arrays = features.model_inputs()
    ref_start, ref_end = np.full_like(start, -np.inf), np.full_like(end, -np.inf)
    unpadded = jax.jit(forward, static_argnums=0)
    for length in np.unique(features.lengths):
        rows = np.flatnonzero(features.lengths == length)
        same_length = batching.gather(arrays, batching.Batch(rows, int(length)))
        s, e = unpadded(trainer.state.graphdef, trainer.state.params, same_length)
        ref_start[rows, :length], ref_end[rows, :length] = np.asarray(s), np.asarray(e)
    real = np.arange(start.shape[1])[None] < features.lengths[:, None]
    np.testing.assert_allclose(start[real], ref_start[real], atol=2e-5)
    np.testing.assert_allclose(end[real], ref_end[real], atol=2e-5)
    ours = decode.decode(examples.contexts, start, end, features.offsets, features.example_index,
                         max_answer_length=30)
    reference = decode.decode(examples.contexts, ref_start, ref_end, features.offsets, features.example_index,
                              max_answer_length=30)
    assert ours.texts == reference.texts and len(ours.texts) == 40


def _matmul_flops(jaxpr) -> float:
    """FLOPs of every dot_general in `jaxpr`, nested programs included (a scan's body times its length)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contracting)
        times = eqn.params["length"] if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    total += times * _matmul_flops(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    total += times * _matmul_flops(sub)
    return total


def test_model_flops_match_the_traced_step_and_goodput_adds_up_to_the_wall(tiny_bert_dir, data_dir, tmp_path,
                                                                            monkeypatch):
    """Logged FLOPs against the matmuls of the train step as JAX traces it (not XLA's cost analysis: it
    counts the blocked attention's loop body once and elementwise ops too); goodput.json, written by
    finish(), against this test's own clock around each phase of the run."""
    monkeypatch.setattr(clock, "LAUNCHED", time.perf_counter())  # goodput counts from here, not pytest's import
    launched = clock.LAUNCHED
    config = _config(tiny_bert_dir, data_dir, tmp_path, pad_to_max_length=True, num_train_epochs=1)
    trainer = Trainer(config)  # padded to 192: every step has the same shape
    startup = time.perf_counter() - launched
    start = time.perf_counter()
    trainer.compile_train_steps()
    compile_seconds, start = time.perf_counter() - start, time.perf_counter()
    # The step loop's span on this clock: from fit()'s peak lookup (just before it) to its save_model (just after).
    stamps, peak_of, save_model = {}, throughput.device_peak, trainer.save_model
    monkeypatch.setattr(throughput, "device_peak", lambda *a: (peak_of(*a), stamps.setdefault("from", time.perf_counter()))[0])
    monkeypatch.setattr(trainer, "save_model", lambda *a: (stamps.setdefault("to", time.perf_counter()), save_model(*a))[1])
    trainer.fit()
    fit_seconds, before_finish = time.perf_counter() - start, time.perf_counter()
    trainer.finish()
    wall_after = time.perf_counter() - launched

    batch = batching.gather(trainer.train_features.train_arrays(), batching.Batch(np.arange(8), 192))
    traced = _matmul_flops(jax.make_jaxpr(train_state.train_step)(trainer.state, batch).jaxpr)
    cfg = json.loads((tiny_bert_dir / "config.json").read_text())
    # The blocked attention's backward recomputes q k^T (as flash attention does): work the step does
    # that model FLOPs leave out. Measured: 415,825,920 traced = 378,077,184 model + 37,748,736.
    recomputed = cfg["num_hidden_layers"] * 8 * 192 * 2 * 192 * cfg["hidden_size"]
    per_step = traced - recomputed
    records = [json.loads(line) for line in (tmp_path / "out/metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert len(train) >= 3
    for record in train:  # each window holds 2 steps of 8 x 192 tokens (the last may hold 1)
        steps = 2 if record["step"] % 2 == 0 else 1
        assert record["model_tflops"] * 1e12 * record["window_seconds"] == pytest.approx(steps * per_step, rel=1e-6)
        assert record["padded_tokens_per_s"] * record["window_seconds"] == pytest.approx(steps * 8 * 192)
        assert 0 < record["mfu"] < 1  # below the CPU's measured matmul peak: a unit or factor slip breaks this

    goodput = json.loads((tmp_path / "out/goodput.json").read_text())
    kinds = ("startup", "compile", "train_steps", "data_wait", "eval", "checkpoint")
    assert set(goodput) == {*kinds, "idle", "wall_seconds", "goodput"}
    assert all(goodput[k] > 0 for k in ("startup", "compile", "train_steps", "checkpoint")), goodput
    assert goodput["eval"] == 0  # no evaluation ran, so none is claimed
    # Each part against this test's clock (summary() rounds to 0.01 s): startup is Trainer(), compile
    # sits inside compile_train_steps(), the loop's parts fill the loop's span (fit() spends the rest
    # measuring the CPU's peak and saving the model), the wall ends inside finish() (which draws the
    # curves after writing goodput.json).
    assert goodput["startup"] == pytest.approx(startup, abs=0.02)
    clocks = dict(startup=startup, compile=compile_seconds, fit=fit_seconds, loop=stamps["to"] - stamps["from"])
    assert 0.5 * compile_seconds <= goodput["compile"] <= compile_seconds + 0.01, (goodput, clocks)
    in_loop = sum(goodput[k] for k in ("train_steps", "data_wait", "eval", "checkpoint"))
    assert 0.7 * clocks["loop"] <= in_loop <= clocks["loop"] + 0.02, (goodput, clocks)
    assert before_finish - launched - 0.01 <= goodput["wall_seconds"] <= wall_after + 0.01
    assert sum(goodput[k] for k in kinds) <= goodput["wall_seconds"] + 0.03  # nothing counted twice
    assert goodput["goodput"] == pytest.approx(goodput["train_steps"] / goodput["wall_seconds"], abs=2e-3)


# device_kind as JAX reports it -> (bf16, tf32/f32) dense peaks from the datasheets.
DEVICE_PEAKS = [
    ("NVIDIA H100 80GB HBM3", 989e12, 495e12), ("NVIDIA H100 PCIe", 756e12, 378e12),
    ("NVIDIA H100 NVL", 835e12, 418e12), ("NVIDIA H200", 989e12, 495e12), ("NVIDIA L40S", 362e12, 183e12),
    ("NVIDIA L40", 181e12, 90.5e12), ("NVIDIA L4", 121e12, 60e12), ("NVIDIA A100-SXM4-80GB", 312e12, 156e12),
    ("TPU v4", 275e12, 275e12), ("TPU v5 lite", 197e12, 197e12), ("TPU v5p", 459e12, 459e12),
    ("TPU v6 lite", 918e12, 918e12),
]


@pytest.mark.parametrize("kind, bf16, f32", DEVICE_PEAKS, ids=[kind for kind, *_ in DEVICE_PEAKS])
def test_each_device_kind_gets_its_own_chip_peak(kind, bf16, f32):
    """Whole-word, most specific match: an L40S is no L40 or L4, an H100 PCIe or NVL no SXM."""
    device = types.SimpleNamespace(device_kind=kind, platform="tpu" if kind.startswith("TPU") else "gpu")
    (peak, source), (peak32, _) = throughput.device_peak(device, "bfloat16"), throughput.device_peak(device, "float32")
    assert (peak, peak32) == (bf16, f32), source
    unknown = types.SimpleNamespace(device_kind="NVIDIA GeForce RTX 4090", platform="gpu")
    assert throughput.device_peak(unknown, "bfloat16") == (None, "unknown device kind 'NVIDIA GeForce RTX 4090'")


def test_cpu_peak_is_measured_on_the_runs_dot_best_of_short_trials(monkeypatch):
    """A bf16 run's MFU is against the bf16 x bf16 -> float32 dot it computes, a float32 run's against
    float32's; the peak is the fastest of the trials (a slow one, another process busy, does not count)."""
    for dtype, operand in (("bfloat16", "bf16"), ("float32", "f32")):
        matmul, a = throughput.peak_matmul(dtype, size=8)
        assert f"(tensor<8x8x{operand}>, tensor<8x8x{operand}>) -> tensor<8x8xf32>" in matmul.lower(a).as_text()
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0, 30.0, 35.0])  # trials of 3, 1, 2 and 5 seconds
    assert throughput.measure_matmul_peak(size=8, dtype="bfloat16", trials=4, pause=0.0,
                                          timer=lambda: next(ticks)) == 2.0 * 8**3 / 1.0
    asked = []
    monkeypatch.setattr(throughput, "measure_matmul_peak", lambda **kw: asked.append(kw) or 1e11)
    cpu = types.SimpleNamespace(device_kind="cpu", platform="cpu")
    assert throughput.device_peak(cpu, "bfloat16") == (
        1e11, "measured 2048^3 bfloat16 x bfloat16 -> float32 matmul, best of 5")
    assert throughput.device_peak(cpu, "float32") == (1e11, "measured 2048^3 float32 matmul, best of 5")
    assert asked == [{"dtype": "bfloat16"}, {"dtype": "float32"}]


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

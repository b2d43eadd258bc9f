"""What a GPU or TPU run needs that a CPU can check: every program such a run compiles lowers for
CUDA and for TPU (`jax.export` on this CPU), the attention kernel is chosen on purpose, bf16 is bf16
where it matters, and `benchmarks/device_check.py` runs (in its tiny mode).

The compile proof: for each target platform, compute dtype and mesh (1 device; 8 devices as
data=2,fsdp=2,tensor=2, in a subprocess with fake CPU devices), the train step of every length bucket
and the eval step are exported with `jax.export` for that platform alone. Lowering fails on an
operation the platform has no lowering for (a CPU-only op), on a host callback (export refuses
them), and the exported module is checked for custom calls other than sharding annotations and for
64-bit floating or complex element types. The model is the one the target would build (its
attention plan follows the target platform); cuDNN's flash call cannot lower without cuDNN, so where
the plan picks it the same call is lowered with `implementation="xla"` (`cudnn_as_xla`) and the
choice itself is tested in the decision-table tests below.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/test_platforms.py lower 8
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxqa import sharding  # noqa: E402
from jaxqa.models.encoder import EncoderConfig, EncoderForQuestionAnswering  # noqa: E402

# A tiny BERT (head_dim 16, a multiple of 8: the cuDNN row of the plan is taken in bf16 on CUDA).
COMPILE_MODEL = dict(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=512, type_vocab_size=2, model_type="bert")
MAX_SEQ, BUCKETS, GLOBAL_BATCH = 128, (64, 128), 8
PLATFORMS, DTYPES = ("cuda", "tpu"), ("bfloat16", "float32")
MESHES = {1: "", 8: "data=2,fsdp=2,tensor=2"}
# Custom calls a CUDA or TPU module may hold: XLA's own sharding annotations.
ALLOWED_CUSTOM_CALLS = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape"}
REJECTED_ELEMENT_TYPES = {"f64", "complex<f64>"}  # no 64-bit floats on TPU (and far slower on GPUs)


# --- the compile proof ----------------------------------------------------------------------------

def _optimizer_config(dtype: str):
    from jaxqa.config import RunConfig

    return RunConfig(dtype=dtype, learning_rate=5e-5, weight_decay=0.01)


def abstract_state(model_config: EncoderConfig, dtype: str, mesh, platform: str, *, attention_dropout: bool = True,
                   total_steps: int = 100):
    """The train state a run on `platform` would create (`train_state.create_train_state`), as
    shape/dtype/sharding structs: nothing is allocated. Its model is built for `platform`."""
    from flax import nnx

    from jaxqa.models.loading import COMPUTE_DTYPES
    from jaxqa.training.train_state import DROPOUT_PRNG, TrainState, make_optimizer

    config = _optimizer_config(dtype)
    model = nnx.eval_shape(lambda: EncoderForQuestionAnswering(
        model_config, rngs=nnx.Rngs(params=0), dtype=COMPUTE_DTYPES[dtype], fused_attention=not attention_dropout,
        platform=platform, cudnn_as_xla=True))
    graphdef, params = nnx.split(model, nnx.Param)
    tx, schedule = make_optimizer(config, total_steps)
    key = jax.random.key_data(jax.random.key(1, impl=DROPOUT_PRNG))
    state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                       opt_state=jax.eval_shape(tx.init, params), dropout_key=key, graphdef=graphdef, tx=tx,
                       lr_schedule=schedule)
    shardings = sharding.state_shardings(state, mesh)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings), model


def abstract_batch(mesh, rows: int, seq_len: int) -> dict:
    spec = sharding.batch_sharding(mesh)
    shapes = {"input_ids": (rows, seq_len), "token_type_ids": (rows, seq_len), "attention_mask": (rows, seq_len),
              "start_positions": (rows,), "end_positions": (rows,), "weights": (rows,)}
    return {name: jax.ShapeDtypeStruct(shape, jnp.float32 if name == "weights" else jnp.int32, sharding=spec)
            for name, shape in shapes.items()}


def module_problems(text: str) -> list[str]:
    """What in an exported StableHLO module a CUDA or TPU compiler would reject or run on the host."""
    problems = [f"custom call {target}" for target in sorted(set(re.findall(r'call_target_name = "([^"]+)"', text)))
                if target not in ALLOWED_CUSTOM_CALLS]
    element_types = set(re.findall(r"tensor<(?:[0-9?]+x)*([a-z0-9<>]+?)>", text))
    problems += [f"element type {t}" for t in sorted(element_types & REJECTED_ELEMENT_TYPES)]
    problems += [f"host transfer ({op})" for op in ("stablehlo.send", "stablehlo.recv", "stablehlo.outfeed",
                                                     "stablehlo.infeed") if op in text]
    return problems


def export_for(step, state, batch, platform: str) -> dict:
    """Export the MeshJit `step` for `platform`: {"ok", "error" or "problems", sizes, seconds}."""
    start = time.perf_counter()
    try:
        with jax.set_mesh(step.mesh):
            exported = jax.export.export(step.jitted, platforms=(platform,))(state, batch)
    except Exception as err:  # the proof failing: report what and where, the test asserts
        return {"ok": False, "error": f"{type(err).__name__}: {str(err)[:800]}",
                "seconds": round(time.perf_counter() - start, 2)}
    text = exported.mlir_module()
    problems = module_problems(text)
    return {"ok": not problems and exported.platforms == (platform,), "problems": problems,
            "platforms": list(exported.platforms), "devices": exported.nr_devices,
            "chars": len(text), "seconds": round(time.perf_counter() - start, 2)}


def lower_all(n_devices: int, platforms=PLATFORMS, dtypes=DTYPES, train_step=None) -> list[dict]:
    """Every program of a run on `n_devices` (train step per bucket, eval step) exported for each
    platform and dtype. `train_step` replaces jaxqa's (the proof's own failure test)."""
    from jaxqa.training.train_state import eval_step
    from jaxqa.training.train_state import train_step as jaxqa_train_step

    mesh = sharding.make_mesh(jax.devices()[:n_devices], MESHES[n_devices])
    model_config = EncoderConfig.from_dict(COMPILE_MODEL)
    results = []
    for platform in platforms:
        for dtype in dtypes:
            state, model = abstract_state(model_config, dtype, mesh, platform)
            state_shardings = jax.tree.map(lambda x: x.sharding, state)
            batch_sharding = sharding.batch_sharding(mesh)
            train = sharding.jit(train_step or jaxqa_train_step, mesh, in_shardings=(state_shardings, batch_sharding),
                                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)
            evaluate = sharding.jit(eval_step, mesh, in_shardings=(state_shardings, batch_sharding),
                                    out_shardings=sharding.replicated(mesh))
            plan = model.encoder.plan
            common = {"platform": platform, "dtype": dtype, "mesh": dict(mesh.shape), "n_devices": n_devices}
            for seq_len in BUCKETS:
                results.append({**common, "program": f"train_step[{seq_len}]", "attention": plan.train.kernel,
                                **export_for(train, state, abstract_batch(mesh, GLOBAL_BATCH, seq_len), platform)})
            results.append({**common, "program": f"eval_step[{MAX_SEQ}]", "attention": plan.eval.kernel,
                            **export_for(evaluate, state, abstract_batch(mesh, GLOBAL_BATCH, MAX_SEQ), platform)})
    return results


def _env(n_devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}", "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _failures(results: list[dict]) -> list[str]:
    return [f"{r['platform']} {r['dtype']} {r['n_devices']} device(s) {r['program']}: "
            f"{r.get('error') or r.get('problems')}" for r in results if not r["ok"]]


def _expected(n_devices: int) -> set:
    programs = [f"train_step[{n}]" for n in BUCKETS] + [f"eval_step[{MAX_SEQ}]"]
    return {(p, d, n_devices, prog) for p in PLATFORMS for d in DTYPES for prog in programs}


def _check(results: list[dict], n_devices: int) -> None:
    assert {(r["platform"], r["dtype"], r["n_devices"], r["program"]) for r in results} == _expected(n_devices)
    assert not _failures(results), "\n".join(_failures(results))
    for r in results:
        assert r["platforms"] == [r["platform"]] and r["devices"] == n_devices
        # The plan follows the target: cuDNN where CUDA takes it (bf16, no dropout: the eval step), the
        # blocked kernel elsewhere (lowered in its place as the same call through XLA, see above).
        cudnn = r["platform"] == "cuda" and r["dtype"] == "bfloat16" and r["program"].startswith("eval")
        assert r["attention"] == ("cudnn" if cudnn else "blocked"), r


def test_every_program_lowers_for_cuda_and_tpu_on_one_device():
    _check(lower_all(1), 1)


class Background:
    """This file run as a worker (`python tests/test_platforms.py MODE ARGS`) in a subprocess that
    starts now and runs beside the tests; `result()` waits for the JSON on its last stdout line."""

    def __init__(self, args: list[str], env: dict):
        import tempfile

        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdout=self.out, stderr=self.err, text=True,
                                     cwd=ROOT, env=env)

    def result(self, timeout: float = 600):
        self.proc.wait(timeout=timeout)
        self.out.seek(0)
        self.err.seek(0)
        out, err = self.out.read(), self.err.read()
        assert self.proc.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


@pytest.fixture(scope="module")
def eight_device_lowering():
    """All 8-device lowerings in one subprocess (8 fake CPU devices)."""
    worker = Background(["lower", "8"], _env(8))
    yield worker
    worker.close()


def test_every_program_lowers_for_cuda_and_tpu_on_eight_devices(eight_device_lowering):
    _check(eight_device_lowering.result(), 8)


def test_the_proof_fails_on_a_host_callback_a_cpu_only_op_and_float64():
    """The checks above can fail: a host callback, an op with only a CPU lowering (Schur
    decomposition: LAPACK) and a float64 value each make the export of a (tiny) program not ok."""
    mesh = sharding.make_mesh(jax.devices()[:1])
    x = jax.ShapeDtypeStruct((4, 4), jnp.float32, sharding=sharding.replicated(mesh))

    def callback(x):
        return jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    def schur(x):
        return jax.lax.linalg.schur(x)[0]

    def float64(x):
        with jax.enable_x64(True):
            return jnp.sum(jnp.asarray(x, jnp.float64) ** 2)

    for fn, why in ((callback, "Error"), (schur, "NotImplementedError: MLIR translation rule for primitive 'schur'"),
                    (float64, None)):
        for platform in PLATFORMS:
            result = _export_one(fn, mesh, x, platform)
            assert not result["ok"], (fn.__name__, platform, result)
            if why:
                assert why in result["error"], result
            else:
                assert result["problems"] == ["element type f64"], result


def _export_one(fn, mesh, x, platform: str) -> dict:
    step = sharding.jit(fn, mesh)
    try:
        with jax.set_mesh(mesh):
            exported = jax.export.export(step.jitted, platforms=(platform,))(x)
    except Exception as err:
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    problems = module_problems(exported.mlir_module())
    return {"ok": not problems, "problems": problems}


# --- bf16 where it matters ---------------------------------------------------------------------------

# bf16 against float32: one train step from the same MiniLM weights on the same real batch (16 windows
# of 128 tokens from the bundled sample), no dropout. Measured 2026-12-01 over 10 such batches: loss
# relative difference median 1.3e-4, worst 2.0e-4 (this test's batch: 1.6e-4); gradient global norm
# median 7e-4, worst 9.6e-4. Why that size: bf16 keeps 8 significant bits (each rounding within
# 2^-9 = 2e-3 relative); the matmuls accumulate in float32 and LayerNorm statistics, softmax, the QA
# head and the loss are float32, so what is left is the rounding of the bf16 activations, which is
# independent from element to element and averages down in a mean over 32 softmaxes of ~100
# positions each. The tolerances are 5x the worst measured: loss 1e-3 (half of one bf16 rounding of
# the loss itself, so a loss computed in bf16 fails on average), gradient norm 5e-3. They cannot tell a
# bf16 QA head from a float32 one (measured: the same ~1e-4); the jaxpr test below holds the head to float32.
LOSS_RTOL, GRAD_NORM_RTOL = 1e-3, 5e-3


@pytest.fixture(scope="module")
def minilm_without_dropout(tmp_path_factory, minilm_dir) -> Path:
    """The packaged MiniLM with its dropout set to 0 (weights and tokenizer linked, not copied)."""
    out = tmp_path_factory.mktemp("minilm_no_dropout")
    for path in minilm_dir.iterdir():
        if path.is_file() and path.name != "config.json":
            (out / path.name).symlink_to(path)
    config = json.loads((minilm_dir / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.0,
                                                 "attention_probs_dropout_prob": 0.0}))
    return out


def _sample_batch(model_dir: Path, rows: int = 16, seq: int = 128, questions: int = 60) -> dict:
    import dataclasses

    from jaxqa.data import batching
    from jaxqa.data.examples import load_examples
    from jaxqa.data.features import load_tokenizer, tokenize

    examples = load_examples(ROOT / "jaxqa" / "sample_data" / "squad_sample_train.json")
    examples = dataclasses.replace(examples, **{name: getattr(examples, name)[:questions] for name in (
        "ids", "questions", "contexts", "answer_texts", "answer_starts", "is_impossible")})
    features = tokenize(examples, load_tokenizer(model_dir), max_seq_length=seq, doc_stride=64)
    plans = batching.plan_batches(features.lengths, rows, max_seq_length=seq, bucket_width=None,
                                  rng=np.random.default_rng(0))
    return batching.gather(features.train_arrays(), next(p for p in plans if (p.rows >= 0).all()))


def _float_dtypes(tree) -> set[str]:
    return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def bf16_against_float32(model_dir: str) -> dict:
    """One train step in each dtype from the same weights on the same real batch (the test's worker)."""
    from jaxqa.training.train_state import create_train_state, eval_step, train_step

    batch = _sample_batch(Path(model_dir))
    out = {"padding": int((batch["attention_mask"] == 0).sum()), "rows": float(batch["weights"].sum())}
    for dtype in ("float32", "bfloat16"):
        state = create_train_state(_optimizer_config(dtype), model_dir, total_steps=10)
        new_state, step_metrics = jax.jit(train_step)(state, batch)
        out[dtype] = {"loss": float(step_metrics["loss"]), "grad_norm": float(step_metrics["grad_norm"]),
                      "params": sorted(_float_dtypes(state.params)), "moments": sorted(_float_dtypes(state.opt_state)),
                      "new_params": sorted(_float_dtypes(new_state.params)),
                      "new_moments": sorted(_float_dtypes(new_state.opt_state)),
                      "logits": [str(x.dtype) for x in jax.eval_shape(eval_step, state, batch)]}
    return out


@pytest.fixture(scope="module")
def bf16_run(minilm_without_dropout):
    """`bf16_against_float32` in a subprocess started before the first test (it runs beside them)."""
    worker = Background(["bf16", str(minilm_without_dropout)], _env(1))
    yield worker
    worker.close()


@pytest.fixture(scope="module", autouse=True)
def _start_workers(eight_device_lowering, bf16_run):
    """Both subprocesses start before the first test of this file."""


def test_bf16_step_matches_float32_on_real_minilm_features(bf16_run):
    """One train step in bf16 and in float32 from the same MiniLM weights on the same real batch:
    losses within LOSS_RTOL, gradient norms within GRAD_NORM_RTOL; the bf16 state's parameters
    and AdamW moments are float32 before and after the step, its logits float32."""
    result = bf16_run.result()
    assert result["padding"] > 0 and result["rows"] == 16
    f32, bf16 = result["float32"], result["bfloat16"]
    for run in (f32, bf16):
        assert run["params"] == run["moments"] == run["new_params"] == run["new_moments"] == ["float32"], run
        assert run["logits"] == ["float32", "float32"], run
    assert np.isfinite(bf16["loss"]) and abs(bf16["loss"] - f32["loss"]) / f32["loss"] < LOSS_RTOL, result
    assert abs(bf16["grad_norm"] - f32["grad_norm"]) / f32["grad_norm"] < GRAD_NORM_RTOL, result


def test_the_qa_head_and_the_loss_compute_in_float32_under_bf16():
    """In a bf16 model the QA head's matmul takes float32 operands (its [.., 2] output), and the
    loss's log-softmax runs on float32; the encoder's matmuls are bf16."""
    from flax import nnx

    from jaxqa.models.loading import forward
    from jaxqa.training.steps import qa_loss

    graphdef, params = nnx.split(nnx.eval_shape(lambda: EncoderForQuestionAnswering(
        EncoderConfig.from_dict(COMPILE_MODEL), rngs=nnx.Rngs(params=0), dtype=jnp.bfloat16)), nnx.Param)
    batch = {"input_ids": jnp.ones((2, 16), jnp.int32), "token_type_ids": jnp.zeros((2, 16), jnp.int32),
             "attention_mask": jnp.ones((2, 16), jnp.int32), "start_positions": jnp.array([1, 2]),
             "end_positions": jnp.array([3, 4]), "weights": jnp.ones(2)}
    jaxpr = jax.make_jaxpr(lambda p: qa_loss(*forward(graphdef, p, batch), batch))(params).jaxpr

    def eqns(jaxpr):
        for eqn in jaxpr.eqns:
            yield eqn
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                        yield from eqns(getattr(sub, "jaxpr", sub))

    dots = [e for e in eqns(jaxpr) if e.primitive.name == "dot_general"]
    head = [e for e in dots if e.outvars[0].aval.shape[-1] == 2]
    assert head and all(v.aval.dtype == jnp.float32 for e in head for v in e.invars), head
    assert any(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)  # the encoder is bf16
    softmax_inputs = [e.invars[0].aval.dtype for e in eqns(jaxpr) if e.primitive.name == "reduce_max"
                      and e.invars[0].aval.shape[-1] == 16 and len(e.invars[0].aval.shape) == 2]
    assert softmax_inputs and set(softmax_inputs) == {jnp.dtype(jnp.float32)}, softmax_inputs


def compiled_dots(text: str) -> list[dict]:
    """Every dot of an optimized XLA HLO module: its output shape and its operands' types and shapes
    as the dot itself receives them (inside the fusion that holds it), and the lhs contracting dims."""
    dots = []
    for computation in re.split(r"\n(?=\S)", text):
        defined = dict(re.findall(r"^\s*(?:ROOT )?(%[\w.\-]+) = (\w+\[[^\]]*\])", computation, re.M))
        for out, lhs, rhs, contracting in re.findall(r"^\s*(?:ROOT )?%[\w.\-]+ = \w+\[([^\]]*)\]\S* "
                                                     r"dot\((%[\w.\-]+), (%[\w.\-]+)\).*?lhs_contracting_dims=\{(\d+)",
                                                     computation, re.M):
            dots.append({"out": _dims(out), "lhs": defined[lhs].split("[")[0], "rhs": defined[rhs].split("[")[0],
                         "shapes": (_dims(defined[lhs]), _dims(defined[rhs])), "contracting": int(contracting)})
    return dots


def _dims(shape: str) -> tuple[int, ...]:
    return tuple(int(d) for d in shape.split("[")[-1].rstrip("]").split(",") if d)


def test_the_compiled_cpu_bf16_step_runs_each_dot_in_its_planned_precision():
    """The compiled CPU train step in bf16 (what XLA runs, after its own rewrites): every dense
    forward and input-gradient dot and the attention dots that contract over keys or head_dim take
    bf16 operands (bf16 kernels, float32 accumulation), and no convert to float32 feeds them; weight
    gradients and the attention gradients contracting over query rows (d_v, d_k) take float32, as
    `jaxqa.models.dense`'s CPU DotPlan chose by measurement; the QA head is float32 throughout. A bf16
    dot asked for bf16 output (nnx.Linear's) compiles to convert + float32 dot on CPU, which fails this."""
    from jaxqa.training.train_state import train_step

    mesh = sharding.make_mesh(jax.devices()[:1], "")
    model_config = EncoderConfig.from_dict(COMPILE_MODEL)
    state, _ = abstract_state(model_config, "bfloat16", mesh, "cpu")
    rows, seq, layers = 8, 64, model_config.num_hidden_layers
    with jax.set_mesh(mesh):
        text = sharding.jit(train_step, mesh).jitted.lower(state, abstract_batch(mesh, rows, seq)).compile().as_text()
    kinds: dict[str, list[str]] = {}
    for d in compiled_dots(text):
        operands = f"{d['lhs']} x {d['rhs']}"
        if 2 in d["out"] + d["shapes"][0] + d["shapes"][1]:
            kind = "qa head"
        elif len(d["out"]) == 3:
            kind = "attention over query rows" if d["contracting"] == 1 else "attention, other"
        elif d["out"][0] == rows * seq:
            kind = "dense forward or input gradient"
        else:
            kind = "dense weight gradient"
        kinds.setdefault(kind, []).append(operands)
    assert kinds == {"dense forward or input gradient": ["bf16 x bf16"] * 8 * layers,
                     "dense weight gradient": ["f32 x f32"] * 4 * layers,
                     "attention, other": ["bf16 x bf16"] * 5 * layers,
                     "attention over query rows": ["f32 x f32"] * 2 * layers,
                     "qa head": ["f32 x f32"] * 3}, kinds


# --- benchmarks/device_check.py, tiny ----------------------------------------------------------------

def test_device_check_runs_in_its_tiny_mode(tmp_path):
    """The GPU check script, on CPU with tiny models: every part runs (PyTorch's too, where torch is
    installed), writes its JSON and prints its table."""
    out = tmp_path / "device_check.json"
    env = {**_env(1), "XLA_FLAGS": "--xla_backend_optimization_level=0"}  # tiny programs: compile fast, not run fast
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["mode"] == "tiny"
    for part in ("memory", "attention", "train", "eval", "finetune"):
        assert "error" not in report[part], (part, report[part])
    assert report["memory"]["predicted_bytes"] > 0 and report["memory"]["measured_bytes"] > 0
    assert report["attention"]["kernel"] == "blocked" and all(r["ok"] for r in report["attention"]["shapes"])
    runs = [r["run"] for r in report["train"]["rows"]]
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        assert runs == ["jaxqa default", "pytorch autocast"], runs  # tiny: no flash row (the same code path)
        assert [r["run"] for r in report["eval"]["rows"]] == ["jaxqa eval", "pytorch eval"]
    except ImportError:
        assert runs == ["jaxqa default"] and report["train"]["torch"].startswith("torch comparison skipped")
    assert all(r["examples_per_s"] > 0 for r in report["train"]["rows"] + report["eval"]["rows"])
    assert report["finetune"]["steps"] > 0 and np.isfinite(report["finetune"]["last_loss"])
    assert "all checks passed" in proc.stdout and "part       what" in proc.stdout


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "lower":
        assert jax.device_count() >= int(args[0]), f"needs {args[0]} devices; set XLA_FLAGS (see _env)"
        print(json.dumps(lower_all(int(args[0]))))
    elif mode == "bf16":
        print(json.dumps(bf16_against_float32(args[0])))

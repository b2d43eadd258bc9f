"""One command for a lent GPU: does jaxqa run there, is it right, how fast is it, does it learn.

    python benchmarks/device_check.py --pack .device_pack       # here, once: what the GPU run needs (< 64 MiB)
    python benchmarks/device_check.py --minilm_dir .device_pack/minilm --out $OUT/device_check.json   # on the GPU
    python benchmarks/device_check.py --tiny                    # tiny configs, any backend (CI runs it on CPU)

No network: the full mode needs MiniLM (packed here to float16, 44 MiB: `--pack`; or the installed
package) and the bundled sample; BERT-base and BERT-large are random configs. Made to finish in under
8 minutes on an H200 (not yet run on one: no figure from it is claimed anywhere). The parts:

1. train: steps/s, examples/s and MFU (analytic model FLOPs over the chip's dense bf16 peak,
   `jaxqa.training.throughput`) of BERT-base and BERT-large at 384 tokens, bf16, with the default attention
   (dropout on probabilities: the blocked kernel) and the flash path (`--attention_dropout false`:
   cuDNN), and `transformers`' PyTorch `BertForQuestionAnswering` under bf16 autocast on the same
   shapes with the same AdamW + clipping, rounds interleaved in this process, medians reported.
2. memory: `--dry_run`'s figure (XLA's memory_analysis of the compiled step) against the peak the
   device allocator measured over the first train step of part 1 (BERT-base, batch 32 x 384), the
   first thing this process puts on the device; it must be within 0.75-1.33x.
3. attention: cuDNN flash (`implementation="cudnn"`) against XLA on real shapes (BERT-base,
   BERT-large, MiniLM at 384 and 256 tokens, right-padded lengths), forward and gradients of q, k,
   v, each against a float32 XLA reference: cuDNN's error must be within 2x XLA-bf16's + 1e-3.
   Where cuDNN is absent (CPU, TPU) the blocked kernel stands in for it, so the check still runs.
4. eval: examples/s of the eval step (bf16, 384 tokens; its plan picks cuDNN on a GPU), jaxqa and
   PyTorch (autocast, no_grad).
5. fine-tune: MiniLM on the bundled sample (2 epochs, windows of 256, batch 32, lr 1.5e-4, bf16),
   dev F1 before (fresh QA head) and after; it must end at least 15 F1 points above where it started.

It writes one JSON (`--out`) and prints one table; the exit status is 1 if a check failed. `--tiny`:
the same code on tiny random models and a few steps (nothing is checked against a bar but the
attention errors), in well under a minute on CPU; tests/test_platforms.py runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import platform as host_platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from memory_check import rss_bytes  # noqa: E402
from train_throughput import BERT_BASE, host_batch  # noqa: E402

from jaxqa import sharding  # noqa: E402
from jaxqa.config import RunConfig  # noqa: E402
from jaxqa.data import batching  # noqa: E402
from jaxqa.data.examples import load_examples  # noqa: E402
from jaxqa.data.features import load_tokenizer, tokenize  # noqa: E402
from jaxqa.models.attention import attention  # noqa: E402
from jaxqa.models.encoder import EncoderConfig, plan_attention  # noqa: E402
from jaxqa.models.weights import packaged_model_dir  # noqa: E402
from jaxqa.scoring import decode, metrics  # noqa: E402
from jaxqa.training import compilation, throughput  # noqa: E402
from jaxqa.training.train_state import create_train_state, eval_step, train_step  # noqa: E402

BERT_LARGE = {**BERT_BASE, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
              "intermediate_size": 4096}
TINY = {**BERT_BASE, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
SAMPLE = ROOT / "jaxqa" / "sample_data"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

# Sizes per mode: (model config, batch, seq) of each throughput model (the first one's first step is
# the memory check; eval runs on the first model); the attention shapes are [batch, seq, heads, head_dim]; timing is `rounds` x `steps` after a warm-up.
FULL = dict(train=[("bert-base", 32, 384), ("bert-large", 16, 384)],
            eval=("bert-base", 128, 384), attention=[(16, 384, 12, 64), (16, 384, 16, 64), (32, 384, 12, 32),
                                                     (32, 256, 12, 32)],
            rounds=3, steps=10, finetune=dict(epochs=2.0, seq=256, stride=128, query=64, batch=32, lr=1.5e-4,
                                              warmup=0.1, schedule_steps=None, train_samples=None, eval_samples=None,
                                              eval_batch=64))
# Tiny: the fine-tune uses the throughput runs' settings and shapes (and the eval check's), so the
# persistent cache serves it their compiled programs (a train step takes ~8 s of CPU to compile).
SMALL = dict(train=[("tiny", 4, 64)], eval=("tiny", 8, 64), attention=[(2, 64, 4, 16)],
             rounds=1, steps=2, finetune=dict(epochs=1.0, seq=64, stride=16, query=24, batch=4, lr=5e-5, warmup=0.0,
                                              schedule_steps=10_000, train_samples=12, eval_samples=8, eval_batch=8))
MODELS = {"bert-base": BERT_BASE, "bert-large": BERT_LARGE, "tiny": TINY}
F1_GAIN = 15.0  # full mode: dev F1 after fine-tuning at least this far above the untrained model's

log = logging.getLogger("jaxqa")


def model_dir_of(name: str, root: Path) -> Path:
    """A directory holding only config.json (random initialisation) for `name`."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(MODELS[name]))
    return path


def timed(fn) -> dict:
    start = time.perf_counter()
    try:
        return {**fn(), "seconds": round(time.perf_counter() - start, 1)}
    except Exception as err:  # a part that breaks is a failed check, and the others still run
        log.exception("device check part failed")
        return {"ok": False, "error": f"{type(err).__name__}: {str(err)[:2000]}",
                "seconds": round(time.perf_counter() - start, 1)}


def environment() -> dict:
    device = jax.devices()[0]
    out = {"date": datetime.date.today().isoformat(), "jax": jax.__version__, "backend": jax.default_backend(),
           "device_kind": device.device_kind, "devices": jax.device_count(), "host": host_platform.machine(),
           "platform_version": device.client.platform_version,
           "compute_capability": getattr(device, "compute_capability", None)}
    with contextlib.suppress(Exception):
        from jax._src.lib import cuda_versions

        out["cudnn"] = cuda_versions.cudnn_get_version() if cuda_versions else None
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_cuda"] = torch.cuda.is_available()
    except ImportError:
        out["torch"] = None
    return out


# --- 1, 3. train steps: memory and throughput -------------------------------------------------------

THROUGHPUT_SETTINGS = dict(learning_rate=5e-5, weight_decay=0.01, dtype="bfloat16")


def compiled_train_step(state, batch: dict, mesh):
    """The train step as the trainer builds it (explicit shardings, donated state), compiled for `batch`'s shapes."""
    shardings = sharding.state_shardings(state, mesh)
    step = sharding.jit(train_step, mesh, in_shardings=(shardings, sharding.batch_sharding(mesh)),
                        out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=0)
    spec = sharding.batch_sharding(mesh)
    return step.compile(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state),
                        {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype, sharding=spec)
                         for k, v in batch.items()})


class JaxqaTrain:
    """A bf16 train state and its compiled step on one batch; the first step runs here (warm-up),
    with `measure` its memory: XLA's prediction (what --dry_run prints) and the measured peak.
    Calling it times `steps` more steps."""

    def __init__(self, model_dir: Path, batch: dict, overrides: dict, measure: bool = False):
        config = RunConfig(**{**THROUGHPUT_SETTINGS, **overrides})
        self.state = create_train_state(config, model_dir, total_steps=10_000, from_pretrained=False)
        mesh = sharding.make_mesh()
        self.step = compiled_train_step(self.state, batch, mesh)
        self.batch = sharding.put_batch(batch, mesh)
        self.memory = self._first_step(measure)

    def _first_step(self, measure: bool) -> dict | None:
        device = jax.devices()[0]
        stats = device.memory_stats() if measure and hasattr(device, "memory_stats") else None
        live = sum(x.nbytes for x in jax.live_arrays())
        samples, done, before = [], threading.Event(), rss_bytes()
        sampler = None
        if measure and not stats:  # CPU: live arrays + RSS growth during the step (benchmarks/memory_check.py)
            def sample():
                while not done.is_set():
                    samples.append(rss_bytes())
                    time.sleep(0.001)

            sampler = threading.Thread(target=sample)
            sampler.start()
        self.state, step_metrics = self.step(self.state, self.batch)
        jax.block_until_ready((self.state, step_metrics))
        if not measure:
            return None
        if stats:
            measured, how = device.memory_stats()["peak_bytes_in_use"], "device allocator peak"
        else:
            done.set()
            sampler.join()
            measured, how = live + max(samples + [before]) - before, "live arrays + RSS growth"
        predicted = compilation.memory_needed(self.step)
        return {"predicted_bytes": predicted.get("total_bytes"), "measured_bytes": measured, "measured_as": how,
                "accelerator": bool(stats), "loss": float(step_metrics["loss"])}

    def __call__(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.state, step_metrics = self.step(self.state, self.batch)
        jax.block_until_ready(step_metrics)
        return time.perf_counter() - start


def memory_report(runner: JaxqaTrain, name: str, batch: int, seq: int, tiny: bool) -> dict:
    """`--dry_run`'s figure against the measured peak: checked (0.75-1.33) on an accelerator's
    allocator; on CPU, or for the tiny model, reported only (RSS is too coarse for it)."""
    m = runner.memory
    ratio = m["predicted_bytes"] / m["measured_bytes"] if m["predicted_bytes"] and m["measured_bytes"] else None
    checked = m["accelerator"] and not tiny
    return {"ok": (ratio is not None and 0.75 <= ratio <= 1.33) if checked else None, "model": name, "batch": batch,
            "seq": seq, **m, "predicted_over_measured": round(ratio, 3) if ratio else None}


# --- 2. attention ----------------------------------------------------------------------------------

def _attention_grads(kind: str, dtype, q, k, v, cotangent, lengths) -> list[np.ndarray]:
    """Output and the gradients of q, k, v of one attention kernel, as float32 arrays."""
    seq = q.shape[1]

    def fn(q, k, v):
        if kind == "blocked":
            qkv = jnp.stack([q, k, v], axis=1).transpose(0, 1, 3, 2, 4)
            bias = jnp.where(jnp.arange(seq)[None] < lengths[:, None], 0.0, -1e9)[:, None, None, :]
            return attention(qkv, bias.astype(jnp.float32)).transpose(0, 2, 1, 3)
        return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=jnp.asarray(lengths), implementation=kind)

    def fwd_bwd(q, k, v, cotangent):
        out, vjp = jax.vjp(fn, q, k, v)
        return (out, *vjp(cotangent))

    results = jax.jit(fwd_bwd)(*(jnp.asarray(x, dtype) for x in (q, k, v, cotangent)))
    return [np.asarray(x, np.float32) for x in results]


def attention_check(shapes) -> dict:
    """cuDNN (or, without it, the blocked kernel) and XLA in bf16, each against XLA in float32."""
    flash = jax.default_backend() == "gpu" and "cuda" in jax.devices()[0].client.platform_version.lower()
    candidate = "cudnn" if flash else "blocked"
    rows, ok = [], True
    for b, s, h, d in shapes:
        rng = np.random.default_rng(0)
        q, k, v, cotangent = (rng.standard_normal((b, s, h, d)).astype(np.float32) for _ in range(4))
        lengths = rng.integers(s // 2, s + 1, b).astype(np.int32)
        lengths[0] = s
        arrays = (q, k, v, cotangent, lengths)

        def run(kind, dtype, arrays=arrays):
            return _attention_grads(kind, dtype, *arrays)

        reference = run("xla", jnp.float32)
        errors = {}
        for kind in ("xla", candidate):
            got = run(kind, jnp.bfloat16)
            errors[kind] = [float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-6)) for g, r in zip(got, reference)]
        within = all(c <= 2 * x + 1e-3 for c, x in zip(errors[candidate], errors["xla"]))
        ok &= within
        rows.append({"shape": [b, s, h, d], "kernel": candidate, "ok": within,
                     **{f"{kind}_error": dict(zip(("out", "dq", "dk", "dv"), (round(e, 5) for e in errs)))
                        for kind, errs in errors.items()}})
    return {"ok": ok, "kernel": candidate, "stand_in": None if flash else "no cuDNN here: the blocked kernel instead",
            "shapes": rows}


# --- 3, 4. throughput ------------------------------------------------------------------------------

def torch_runner(config: dict, batch: dict, train: bool = True):
    """`transformers`' BertForQuestionAnswering under bf16 autocast: run(steps) -> seconds."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(**config)).to(device)
    model.train(train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    tensors = {k: torch.tensor(v).long().to(device) for k, v in batch.items() if k != "weights"}
    if not train:
        tensors = {k: v for k, v in tensors.items() if k not in ("start_positions", "end_positions")}

    def one_step():
        with torch.autocast(device, dtype=torch.bfloat16):
            if not train:
                with torch.no_grad():
                    return model(**tensors).start_logits
            loss = model(**tensors).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    one_step()
    sync()

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        sync()
        return time.perf_counter() - start

    run.release = lambda: (model.to("cpu"), torch.cuda.empty_cache() if device == "cuda" else None)
    return run


def eval_runner(state, batch: dict):
    step = jax.jit(eval_step)
    inputs = jax.device_put({k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
    jax.block_until_ready(step(state, inputs))

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            out = step(state, inputs)
        jax.block_until_ready(out)
        return time.perf_counter() - start

    return run


def _torch_missing() -> str | None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        return f"torch comparison skipped: {err}"
    return None


def _medians(runners: dict, rounds: int, steps: int) -> dict[str, float]:
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):  # interleaved: every configuration sees the same machine state
        for name, run in runners.items():
            seconds[name].append(run(steps) / steps)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def train_check(models, rounds: int, steps: int, root: Path, tiny: bool) -> tuple[dict, dict, object]:
    """Throughput rows of every model (and, from the first model's first default step, the memory
    check); also returns the first model's default state, for the eval check."""
    device = jax.devices()[0]
    peak, peak_source = throughput.device_peak(device, "bfloat16")
    skipped, rows, memory, kept = _torch_missing(), [], None, None
    for name, batch_size, seq in models:
        model_dir = model_dir_of(name, root)
        config = EncoderConfig.from_dict(MODELS[name])
        batch = host_batch(batch_size, seq)
        flops = throughput.train_flops(config, batch_size, seq)
        runners = {"jaxqa default": JaxqaTrain(model_dir, batch, {"dtype": "bfloat16"}, measure=memory is None)}
        if memory is None:
            memory = memory_report(runners["jaxqa default"], name, batch_size, seq, tiny)
        if not tiny:  # the same code with another setting: on CPU its kernel is the default's, without dropout
            runners["jaxqa flash"] = JaxqaTrain(model_dir, batch, {"dtype": "bfloat16", "attention_dropout": False})
        if not skipped:
            runners["pytorch autocast"] = torch_runner(MODELS[name], batch)
        medians = _medians(runners, rounds, steps)
        torch_step = medians.get("pytorch autocast")
        for label, step in medians.items():
            plan = None
            if label.startswith("jaxqa"):
                plan = plan_attention(config, jnp.bfloat16, fused=label == "jaxqa flash").describe()
            rows.append({"model": name, "batch": batch_size, "seq": seq, "run": label, "plan": plan,
                         "s_per_step": round(step, 5), "examples_per_s": round(batch_size / step, 1),
                         "tflops": round(flops / step / 1e12, 3),
                         "mfu": round(flops / step / peak, 4) if peak else None,
                         "vs_pytorch": round(torch_step / step, 2) if torch_step else None})
        if "pytorch autocast" in runners:
            runners["pytorch autocast"].release()
        if kept is None:
            kept = (name, runners["jaxqa default"].state)
        del runners
    return ({"ok": True, "peak_tflops": peak / 1e12 if peak else None, "peak_source": peak_source,
             "torch": skipped or "ran", "rows": rows}, memory, kept)


def eval_check(kept, batch_size: int, seq: int, rounds: int, steps: int) -> dict:
    """Eval-step throughput of the train check's first model (its state as trained there)."""
    name, state = kept
    batch = host_batch(batch_size, seq)
    runners = {"jaxqa eval": eval_runner(state, batch)}
    skipped = _torch_missing()
    if not skipped:
        runners["pytorch eval"] = torch_runner(MODELS[name], batch, train=False)
    medians = _medians(runners, rounds, steps)
    plan = plan_attention(EncoderConfig.from_dict(MODELS[name]), jnp.bfloat16).eval
    return {"ok": True, "torch": skipped or "ran", "rows": [
        {"model": name, "batch": batch_size, "seq": seq, "run": label, "s_per_step": round(step, 5),
         "examples_per_s": round(batch_size / step, 1), "plan": str(plan) if label.startswith("jaxqa") else None}
        for label, step in medians.items()]}


# --- 5. fine-tune ------------------------------------------------------------------------------------

def _subset(examples, n: int | None):
    if n is None:
        return examples
    import dataclasses

    return dataclasses.replace(examples, ids=examples.ids[:n], questions=examples.questions[:n],
                               contexts=examples.contexts[:n], answer_texts=examples.answer_texts[:n],
                               answer_starts=examples.answer_starts[:n], is_impossible=examples.is_impossible[:n])


def _dev_f1(state, examples, features, seq: int, batch_size: int) -> dict:
    evaluate = jax.jit(eval_step)
    plan = batching.plan_batches(features.lengths, batch_size, max_seq_length=seq, bucket_width=None)
    start = np.zeros((len(features), seq), np.float32)
    end = np.zeros_like(start)
    for batch_plan in plan:
        batch = batching.gather(features.model_inputs(), batch_plan)
        logits = evaluate(state, {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
        rows = batch_plan.rows >= 0
        start[batch_plan.rows[rows]], end[batch_plan.rows[rows]] = (np.asarray(x)[rows] for x in logits)
    answers = decode.decode(examples.contexts, start, end, features.offsets, features.example_index)
    scores = metrics.squad_v1(dict(zip(examples.ids, answers.texts)), dict(zip(examples.ids, examples.answer_texts)))
    return {k: round(float(v), 2) for k, v in scores.items() if k in ("exact_match", "f1")}


def finetune_check(model_dir: Path | None, tokenizer_dir: Path, settings: dict, tiny: bool, root: Path) -> dict:
    """MiniLM (or, tiny, a random tiny BERT) fine-tuned on the bundled sample; dev EM/F1 before and after."""
    s = settings
    pretrained = model_dir is not None
    model_dir = model_dir or model_dir_of("tiny", root)
    tokenizer = load_tokenizer(tokenizer_dir)
    train_examples = _subset(load_examples(SAMPLE / "squad_sample_train.json"), s["train_samples"])
    dev_examples = _subset(load_examples(SAMPLE / "squad_sample_dev.json"), s["eval_samples"])
    windows = dict(max_seq_length=s["seq"], doc_stride=s["stride"], max_query_length=s["query"])
    train_features = tokenize(train_examples, tokenizer, **windows)
    dev_features = tokenize(dev_examples, tokenizer, **windows)
    steps_per_epoch = len(batching.plan_batches(train_features.lengths, s["batch"], max_seq_length=s["seq"],
                                                bucket_width=None))
    total = max(1, int(round(s["epochs"] * steps_per_epoch)))
    config = RunConfig(**{**THROUGHPUT_SETTINGS, "learning_rate": s["lr"], "warmup_ratio": s["warmup"]})
    state = create_train_state(config, model_dir, total_steps=s["schedule_steps"] or total, from_pretrained=pretrained)
    before = _dev_f1(state, dev_examples, dev_features, s["seq"], s["eval_batch"])
    arrays, done, losses, epoch = train_features.train_arrays(), 0, [], 0
    mesh = sharding.make_mesh()
    step = compiled_train_step(state, batching.gather(arrays, batching.Batch(np.zeros(s["batch"], np.int64), s["seq"])),
                               mesh)
    start = time.perf_counter()
    while done < total:
        for batch_plan in batching.plan_batches(train_features.lengths, s["batch"], max_seq_length=s["seq"],
                                                bucket_width=None, rng=np.random.default_rng(epoch)):
            if done == total:
                break
            state, step_metrics = step(state, sharding.put_batch(batching.gather(arrays, batch_plan), mesh))
            losses.append(step_metrics["loss"])
            done += 1
        epoch += 1
    losses = [float(x) for x in losses]
    train_seconds = time.perf_counter() - start
    after = _dev_f1(state, dev_examples, dev_features, s["seq"], s["eval_batch"])
    gain = after["f1"] - before["f1"]
    return {"ok": None if tiny else gain >= F1_GAIN, "model": "tiny random BERT" if tiny else str(model_dir),
            "train_questions": len(train_examples), "dev_questions": len(dev_examples), "steps": total,
            "seq": s["seq"], "batch": s["batch"], "train_seconds": round(train_seconds, 1),
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4), "before": before, "after": after,
            "f1_gain": round(gain, 2), "f1_gain_required": None if tiny else F1_GAIN,
            "plan": plan_attention(EncoderConfig.from_dict(json.loads((Path(model_dir) / "config.json").read_text())),
                                   jnp.bfloat16).describe()}


# --- packing, the table, main --------------------------------------------------------------------------

def pack(out: Path, source: Path | None = None) -> Path:
    """MiniLM as float16 (numpy reads it; jaxqa loads it as float32) with its tokenizer, into out/minilm."""
    from safetensors.numpy import load_file, save_file

    source = Path(source or packaged_model_dir())
    target = out / "minilm"
    target.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "model.safetensors"))
    save_file({k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in tensors.items()},
              str(target / "model.safetensors"))
    for name in ("config.json", *TOKENIZER_FILES):
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    size = sum(f.stat().st_size for f in target.iterdir())
    print(f"packed {source} -> {target}: {size / 2**20:.1f} MiB")
    return target


def table(report: dict) -> str:
    lines = [f"device check ({report['mode']}): {report['environment']['device_kind']} "
             f"({report['environment']['backend']}), jax {report['environment']['jax']}, "
             f"{report['environment']['date']}", "", f"{'part':10s} {'what':58s} {'result':40s} ok"]

    def add(part, what, result, ok):
        lines.append(f"{part:10s} {what:58s} {result:40s} {'-' if ok is None else 'yes' if ok else 'NO'}")

    for part in ("memory", "attention", "train", "eval", "finetune"):
        r = report[part]
        if "error" in r:
            add(part, "failed", r["error"].splitlines()[0][:40], False)
        elif part == "memory":
            add(part, f"{r['model']} {r['batch']}x{r['seq']} bf16: --dry_run / measured peak",
                f"{r['predicted_bytes'] / 2**30:.3f} / {r['measured_bytes'] / 2**30:.3f} GiB = "
                f"{r['predicted_over_measured']}", r["ok"])
        elif part == "attention":
            for row in r["shapes"]:
                add(part, f"{row['kernel']} vs xla bf16 {row['shape']} (max rel err vs f32)",
                    f"{max(row[r['kernel'] + '_error'].values()):.4f} vs {max(row['xla_error'].values()):.4f}",
                    row["ok"])
        elif part in ("train", "eval"):
            for row in r["rows"]:
                mfu = f", mfu {100 * row['mfu']:.1f}%" if row.get("mfu") is not None else ""
                ratio = f", {row['vs_pytorch']}x pt" if row.get("vs_pytorch") else ""
                add(part, f"{row['model']} {row['batch']}x{row['seq']} {row['run']}",
                    f"{row['examples_per_s']} ex/s{mfu}{ratio}", r["ok"])
            if r["torch"] != "ran":
                add(part, r["torch"][:58], "", None)
        else:
            add(part, f"{r['steps']} steps, {r['train_questions']} q, dev {r['dev_questions']} q: F1 before -> after",
                f"{r['before']['f1']} -> {r['after']['f1']} (loss {r['first_loss']} -> {r['last_loss']})", r["ok"])
    lines.append(f"\n{'all checks passed' if report['ok'] else 'SOME CHECKS FAILED'} in {report['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random models, a few steps (CI, on CPU)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "device_check.json"), help="the JSON report")
    parser.add_argument("--minilm_dir", default=None, help="MiniLM directory (default: .device_pack/minilm if "
                        "there, else the installed package)")
    parser.add_argument("--pack", metavar="DIR", help="write MiniLM as float16 into DIR/minilm and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.pack:
        pack(Path(args.pack))
        return 0
    minilm = Path(args.minilm_dir) if args.minilm_dir else ROOT / ".device_pack" / "minilm"
    if not minilm.is_dir():
        minilm = packaged_model_dir()
    sizes = SMALL if args.tiny else FULL
    start = time.perf_counter()
    report = {"mode": "tiny" if args.tiny else "full", "environment": environment()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # A fresh persistent cache: the programs the parts share (parameter and optimizer initialisation of
        # the same model and seed, the tiny mode's eval step) compile once.
        compilation.enable_cache(root / "jax_cache")
        # The first train step measures the device's peak memory: it runs before anything else allocates.
        kept = None

        def train_part():
            nonlocal kept
            result, report["memory"], kept = train_check(sizes["train"], sizes["rounds"], sizes["steps"], root,
                                                         args.tiny)
            return result

        report["train"] = timed(train_part)
        report.setdefault("memory", {"ok": False, "error": "the train check failed before its first step"})
        report["attention"] = timed(lambda: attention_check(sizes["attention"]))
        report["eval"] = timed(lambda: eval_check(kept, *sizes["eval"][1:], sizes["rounds"], sizes["steps"])) \
            if kept else {"ok": False, "error": "no train state: the train check failed"}
        report["finetune"] = timed(lambda: finetune_check(None if args.tiny else minilm, minilm, sizes["finetune"],
                                                          args.tiny, root))
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["ok"] = all(report[part].get("ok") is not False for part in ("memory", "attention", "train", "eval",
                                                                        "finetune"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(report))
    print(f"report: {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Train-step throughput at equal work: jaxqa float32 and bf16 against `transformers`' PyTorch
BertForQuestionAnswering in float32 and under bf16 autocast (`torch.autocast("cpu", torch.bfloat16)`
around forward and loss, PyTorch's fast CPU setting where the chip has AVX512-BF16 or AMX), on the same
model, the same batch shape and the same optimizer (AdamW + clipping), rounds interleaved in one
process, medians reported. Prints the CPU model, its bf16 features (/proc/cpuinfo) and the XLA_FLAGS in
effect; the model FLOP/s (analytic count, `jaxqa.training.throughput`) and their share of this machine's
2048^3 matmul peak in each configuration's dtype; and the ratios jaxqa bf16 / jaxqa float32 and jaxqa /
PyTorch's faster setting (whichever of float32 and bf16 autocast wins in this run).

    python benchmarks/train_throughput.py [--batch 16] [--seq 384] [--steps 6] [--rounds 3]
        [--configs f32,bf16] [--torch f32,bf16] [--model minilm|bert-base]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxqa.config import RunConfig  # noqa: E402
from jaxqa.models import precision  # noqa: E402
from jaxqa.models.weights import load_config, packaged_model_dir  # noqa: E402
from jaxqa.training import throughput  # noqa: E402
from jaxqa.training.train_state import create_train_state, train_step  # noqa: E402

BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, model_type="bert")
# jaxqa setting name -> RunConfig overrides
CONFIGS = {"f32": {}, "f32-fused": {"attention_dropout": False}, "bf16": {"dtype": "bfloat16"},
           "f32-whole": {"whole": True}, "bf16-whole": {"dtype": "bfloat16", "whole": True}}
# "-whole" (f32-whole, bf16-whole): the batch as one micro-batch, as before jaxqa cut it on CPU into pieces of
# ~1,536 tokens (`jaxqa.training.steps.cache_split`)
# PyTorch setting -> (name in the table, whether forward and loss run under bf16 autocast)
TORCH = {"f32": ("pytorch f32", False), "bf16": ("pytorch bf16 autocast", True)}


def host_batch(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    question = seq // 6
    return {"input_ids": rng.integers(1000, 20000, (batch, seq)).astype(np.int32),
            "token_type_ids": (np.arange(seq) > question).astype(np.int32)[None].repeat(batch, 0),
            "attention_mask": np.ones((batch, seq), np.int32),
            "start_positions": rng.integers(question + 1, seq, batch).astype(np.int32),
            "end_positions": rng.integers(question + 1, seq, batch).astype(np.int32),
            "weights": np.ones(batch, np.float32)}


def timed(one_step, wait=lambda result: result):
    """run(steps) -> seconds for `steps` calls of `one_step`, `wait` on the last result included (JAX
    dispatches asynchronously: the clock stops when the device is done)."""
    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            result = one_step()
        wait(result)
        return time.perf_counter() - start

    return run


def jaxqa_runner(model_dir: Path, pretrained: bool, batch: dict, overrides: dict):
    whole = overrides.pop("whole", False)
    config = RunConfig(learning_rate=5e-5, weight_decay=0.01, **overrides)
    state = create_train_state(config, model_dir, total_steps=10_000, from_pretrained=pretrained)
    state = state.replace(micro_batch_tokens=0) if whole else state
    step = jax.jit(train_step, donate_argnums=0)
    device_batch = jax.device_put(batch)
    holder = {"state": step(state, device_batch)[0]}  # compiled here, not timed
    jax.block_until_ready(holder["state"])

    def one_step():
        holder["state"], metrics = step(holder["state"], device_batch)
        return metrics

    return timed(one_step, jax.block_until_ready)


def torch_runners(model_dir: Path, batch: dict, settings: list[str]) -> dict:
    """{name: run} for each PyTorch setting of TORCH asked for; they share one model and optimizer (the
    work of a step is the same whatever the weights hold)."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    model = BertForQuestionAnswering.from_pretrained(str(model_dir)) if (model_dir / "model.safetensors").exists() \
        else BertForQuestionAnswering(BertConfig(**json.loads((model_dir / "config.json").read_text())))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    tensors = {k: torch.tensor(v).long() for k, v in batch.items() if k != "weights"}

    def step_of(autocast: bool):
        def one_step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):  # forward and loss only
                loss = model(**tensors).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()

        one_step()  # warm-up
        return timed(one_step)

    return {TORCH[setting][0]: step_of(TORCH[setting][1]) for setting in settings}


def cpu_description() -> str:
    """The CPU's model name and which of the bf16 instruction sets jaxqa's --dtype auto looks for it has."""
    text = precision.read_cpuinfo()
    if text is None:
        return f"CPU {platform.processor() or platform.machine()} (no /proc/cpuinfo: bf16 features unknown)"
    names = [line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("model name")]
    features = precision.cpu_bf16_features(text)
    return (f"CPU {names[0] if names else platform.machine()} x {os.cpu_count()} cores; bf16 features: "
            f"{', '.join(features) or 'none'} (of {', '.join(precision.CPU_BF16_FLAGS)})")


def report(args, seconds: dict[str, list[float]], flops: float, peaks: dict) -> None:
    """The table (markdown, for benchmarks/README.md) and the ratios the issue asks for."""
    medians = {name: float(np.median(values)) for name, values in seconds.items()}
    print("| configuration | s/step | examples/s | tokens/s | model TFLOP/s | share of its dtype's matmul peak |")
    print("|---|---|---|---|---|---|")
    for name, step in medians.items():
        peak = peaks["bfloat16" if "bf16" in name else "float32"][0]
        share = f"{100 * flops / step / peak:.1f}%" if peak else "(no peak known)"
        print(f"| {name} | {step:.3f} | {args.batch / step:.2f} | {args.batch * args.seq / step:.0f} | "
              f"{flops / step / 1e12:.3f} | {share} |")
    if {"jaxqa f32", "jaxqa bf16"} <= medians.keys():
        print(f"jaxqa bf16 vs jaxqa f32: {medians['jaxqa f32'] / medians['jaxqa bf16']:.2f}x steps/s")
    torch_steps = {name: step for name, step in medians.items() if name.startswith("pytorch")}
    if torch_steps:
        faster = min(torch_steps, key=torch_steps.get)
        print(f"PyTorch's faster setting here: {faster} ({torch_steps[faster]:.3f} s/step)")
        for name, step in medians.items():
            if name.startswith("jaxqa"):
                print(f"{name} vs {faster}: {torch_steps[faster] / step:.2f}x steps/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default="f32,bf16", help=f"jaxqa settings, of {', '.join(CONFIGS)}")
    parser.add_argument("--torch", default="f32,bf16", help="PyTorch settings, of f32, bf16 (autocast); '' for none")
    parser.add_argument("--model", choices=["minilm", "bert-base"], default="minilm")
    args = parser.parse_args()
    if args.model == "minilm":
        model_dir, pretrained = packaged_model_dir(), True
    else:
        model_dir, pretrained = Path(tempfile.mkdtemp()), False
        (model_dir / "config.json").write_text(json.dumps(BERT_BASE))
    batch = host_batch(args.batch, args.seq)
    device = jax.devices()[0]
    peaks = {dtype: throughput.device_peak(device, dtype) for dtype in ("float32", "bfloat16")}
    flops = throughput.train_flops(load_config(model_dir), args.batch, args.seq)
    runners = {f"jaxqa {name}": jaxqa_runner(model_dir, pretrained, batch, dict(CONFIGS[name]))
               for name in args.configs.split(",")}
    runners.update(torch_runners(model_dir, batch, [s for s in args.torch.split(",") if s]))
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            seconds[name].append(run(args.steps) / args.steps)
    print(f"{args.model}, batch {args.batch} x {args.seq}, {device.device_kind}; medians of {args.rounds} "
          f"interleaved rounds x {args.steps} steps; {flops / 1e12:.3f} TFLOP per step (analytic)")
    print(cpu_description())
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}; jax {jax.__version__}"
          + (f", torch {sys.modules['torch'].__version__}" if "torch" in sys.modules else ""))
    for dtype, (peak, source) in peaks.items():
        print(f"matmul peak {dtype}: " + (f"{peak / 1e12:.3f} TFLOP/s ({source})" if peak else source))
    report(args, seconds, flops, peaks)


if __name__ == "__main__":
    main()

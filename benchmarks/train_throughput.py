"""Train-step throughput at equal work: jaxqa against `transformers`' PyTorch BertForQuestionAnswering
on the same model, the same batch shape and the same optimizer (AdamW + clipping), rounds interleaved
in one process, medians reported. Also the model FLOP/s (analytic count, `jaxqa.training.throughput`) and their
share of this machine's measured 2048^3 float32 matmul peak.

    python benchmarks/train_throughput.py [--batch 16] [--seq 384] [--steps 6] [--rounds 3]
        [--configs f32,f32-fused,bf16] [--model minilm|bert-base]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxqa.config import RunConfig  # noqa: E402
from jaxqa.models.weights import load_config, packaged_model_dir  # noqa: E402
from jaxqa.training import throughput  # noqa: E402
from jaxqa.training.train_state import create_train_state, train_step  # noqa: E402

BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, model_type="bert")
# jaxqa setting name -> RunConfig overrides
CONFIGS = {"f32": {}, "f32-fused": {"attention_dropout": False}, "bf16": {"dtype": "bfloat16"}}


def host_batch(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    question = seq // 6
    return {"input_ids": rng.integers(1000, 20000, (batch, seq)).astype(np.int32),
            "token_type_ids": (np.arange(seq) > question).astype(np.int32)[None].repeat(batch, 0),
            "attention_mask": np.ones((batch, seq), np.int32),
            "start_positions": rng.integers(question + 1, seq, batch).astype(np.int32),
            "end_positions": rng.integers(question + 1, seq, batch).astype(np.int32),
            "weights": np.ones(batch, np.float32)}


def jaxqa_runner(model_dir: Path, pretrained: bool, batch: dict, overrides: dict):
    config = RunConfig(learning_rate=5e-5, weight_decay=0.01, **overrides)
    state = create_train_state(config, model_dir, total_steps=10_000, from_pretrained=pretrained)
    step = jax.jit(train_step, donate_argnums=0)
    device_batch = jax.device_put(batch)
    holder = {"state": step(state, device_batch)[0]}  # compiled here, not timed
    jax.block_until_ready(holder["state"])

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            holder["state"], metrics = step(holder["state"], device_batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start

    return run


def torch_runner(model_dir: Path, batch: dict):
    import torch
    from transformers import BertForQuestionAnswering

    torch.manual_seed(0)
    model = BertForQuestionAnswering.from_pretrained(str(model_dir)) if (model_dir / "model.safetensors").exists() \
        else BertForQuestionAnswering(__import__("transformers").BertConfig(**json.loads((model_dir / "config.json").read_text())))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    tensors = {k: torch.tensor(v).long() for k, v in batch.items() if k != "weights"}

    def one_step():
        loss = model(**tensors).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    one_step()  # warm-up

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        return time.perf_counter() - start

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default="f32,f32-fused,bf16")
    parser.add_argument("--model", choices=["minilm", "bert-base"], default="minilm")
    parser.add_argument("--no_torch", action="store_true")
    args = parser.parse_args()
    if args.model == "minilm":
        model_dir, pretrained = packaged_model_dir(), True
    else:
        model_dir, pretrained = Path(tempfile.mkdtemp()), False
        (model_dir / "config.json").write_text(json.dumps(BERT_BASE))
    batch = host_batch(args.batch, args.seq)
    device = jax.devices()[0]
    peak, source = throughput.device_peak(device, "float32")
    flops = throughput.train_flops(load_config(model_dir), args.batch, args.seq)
    runners = {f"jaxqa {name}": jaxqa_runner(model_dir, pretrained, batch, CONFIGS[name])
               for name in args.configs.split(",")}
    if not args.no_torch:
        runners["pytorch f32"] = torch_runner(model_dir, batch)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            seconds[name].append(run(args.steps) / args.steps)
    print(f"{args.model}, batch {args.batch} x {args.seq}, {device.device_kind}; peak {peak / 1e12:.3f} TFLOP/s "
          f"({source}); {flops / 1e12:.3f} TFLOP per step; medians of {args.rounds} rounds x {args.steps} steps")
    torch_step = np.median(seconds["pytorch f32"]) if "pytorch f32" in seconds else None
    for name, values in seconds.items():
        step = float(np.median(values))
        ratio = f", {torch_step / step:.2f}x PyTorch's steps/s" if torch_step else ""
        print(f"  {name:18s} {step:6.3f} s/step  {args.batch / step:6.1f} ex/s  {args.batch * args.seq / step:8.0f} "
              f"tok/s  {flops / step / 1e12:.3f} TFLOP/s = {100 * flops / step / peak:5.1f}% of peak{ratio}")


if __name__ == "__main__":
    main()

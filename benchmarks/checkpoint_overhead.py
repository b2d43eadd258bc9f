"""What checkpointing costs a training run: MiniLM train steps with and without an Orbax checkpoint
of the full state (parameters + AdamW moments, ~270 MB) every few steps, asynchronous (jaxqa's
default) and synchronous for contrast. Rounds are interleaved; the medians are reported.

    python benchmarks/checkpoint_overhead.py [--steps 20] [--every 5] [--seq 256] [--batch 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxqa.config import RunConfig  # noqa: E402
from jaxqa.models.weights import packaged_model_dir  # noqa: E402
from jaxqa.training.checkpoint import Checkpointer  # noqa: E402
from jaxqa.training.train_state import create_train_state, train_step  # noqa: E402


def random_batch(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(1000, 20000, (batch, seq)).astype(np.int32),
            "token_type_ids": (np.arange(seq) >= seq // 4).astype(np.int32)[None].repeat(batch, 0),
            "attention_mask": np.ones((batch, seq), np.int32),
            "start_positions": rng.integers(seq // 4, seq, batch).astype(np.int32),
            "end_positions": rng.integers(seq // 4, seq, batch).astype(np.int32),
            "weights": np.ones(batch, np.float32)}


def timed_run(step_fn, state, batch, steps: int, checkpointer: Checkpointer | None, every: int):
    """Seconds for `steps` steps (checkpoints included, the last one's write waited for)."""
    start = time.perf_counter()
    for i in range(1, steps + 1):
        state, metrics = step_fn(state, batch)
        if checkpointer and i % every == 0:
            checkpointer.save(state, {"step": int(state.step)})
    jax.block_until_ready(metrics)
    if checkpointer:
        checkpointer.wait()
    return time.perf_counter() - start, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    state = create_train_state(RunConfig(), packaged_model_dir(), total_steps=10_000)
    n_bytes = sum(x.nbytes for x in jax.tree.leaves((state.params, state.opt_state)))
    step_fn = jax.jit(train_step, donate_argnums=0)
    batch = jax.device_put(random_batch(args.batch, args.seq))
    state, _ = step_fn(state, batch)  # compile
    times: dict[str, list[float]] = {"none": [], "async": [], "sync": []}
    for _ in range(args.rounds):
        for mode in times:
            directory = Path(tempfile.mkdtemp(prefix="jaxqa_ckpt_bench_"))
            checkpointer = None if mode == "none" else Checkpointer(directory, keep=2, best_metric=None,
                                                                    asynchronous=mode == "async")
            seconds, state = timed_run(step_fn, state, batch, args.steps, checkpointer, args.every)
            times[mode].append(seconds)
            if checkpointer:
                checkpointer.close()
            shutil.rmtree(directory, ignore_errors=True)
    base = np.median(times["none"])
    print(f"MiniLM, batch {args.batch} x {args.seq}, {args.steps} steps, a checkpoint of "
          f"{n_bytes / 1e6:.0f} MB every {args.every} steps, medians of {args.rounds} interleaved rounds:")
    for mode, values in times.items():
        median = np.median(values)
        print(f"  {mode:5s}: {median:6.1f} s ({median / args.steps:.2f} s/step), overhead "
              f"{100 * (median / base - 1):+.1f}%")


if __name__ == "__main__":
    main()

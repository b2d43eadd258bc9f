"""Does `--dry_run`'s memory figure match what a real step uses? On CPU, device memory is host
memory. Each configuration runs in a fresh process: it creates the state and a batch, compiles the
train step (XLA's memory_analysis: what `--dry_run` prints), then runs one step while a thread samples
the process's RSS every millisecond. Measured peak = bytes of the live JAX arrays before the step
(state + batch) + (peak RSS during the step - RSS just before it): what the step holds at its peak,
without the interpreter, libraries and compiler memory that RSS also counts.

    python benchmarks/memory_check.py [--configs minilm,bert-large] [--batch 4] [--seq 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BERT_LARGE = dict(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, max_position_embeddings=512, type_vocab_size=2, model_type="bert",
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, layer_norm_eps=1e-12)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))


def measure(name: str, batch: int, seq: int) -> dict:
    """Runs in the child process."""
    sys.path.insert(0, str(ROOT))
    import tempfile

    import jax
    import numpy as np

    from jaxqa import sharding
    from jaxqa.config import RunConfig
    from jaxqa.models.weights import packaged_model_dir
    from jaxqa.training import compilation
    from jaxqa.training.train_state import create_train_state, train_step

    if name == "minilm":
        model_dir, pretrained = packaged_model_dir(), True
    else:
        model_dir, pretrained = Path(tempfile.mkdtemp()), False
        (model_dir / "config.json").write_text(json.dumps(BERT_LARGE))
    state = create_train_state(RunConfig(), model_dir, total_steps=100, from_pretrained=pretrained)
    mesh = sharding.make_mesh()
    shardings = sharding.state_shardings(state, mesh)
    step = sharding.jit(train_step, mesh, in_shardings=(shardings, sharding.batch_sharding(mesh)),
                        out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=0)
    rng = np.random.default_rng(0)
    host_batch = {"input_ids": rng.integers(1000, 20000, (batch, seq)).astype(np.int32),
                  "token_type_ids": np.zeros((batch, seq), np.int32), "attention_mask": np.ones((batch, seq), np.int32),
                  "start_positions": np.full(batch, 5, np.int32), "end_positions": np.full(batch, 9, np.int32),
                  "weights": np.ones(batch, np.float32)}
    device_batch = sharding.put_batch(host_batch, mesh)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            (state, device_batch))
    compiled = step.compile(*abstract)
    predicted = compilation.memory_needed(compiled)
    live = sum(x.nbytes for x in jax.live_arrays())
    before, samples, done = rss_bytes(), [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    state, metrics = compiled(state, device_batch)
    jax.block_until_ready((state, metrics))
    done.set()
    sampler.join()
    return {"config": name, "batch": batch, "seq": seq, "predicted_bytes": predicted["total_bytes"],
            "state_bytes": predicted["argument_bytes"], "temp_bytes": predicted["temp_bytes"], "live_bytes": live,
            "measured_bytes": live + max(samples) - before, "loss": float(metrics["loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="minilm,bert-large")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.seq)))
        return
    gib = 2**30
    for name in args.configs.split(","):
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--batch", str(args.batch), "--seq",
                               str(args.seq)], capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        ratio = r["predicted_bytes"] / r["measured_bytes"]
        print(f"{name:10s} batch {r['batch']} x {r['seq']}: dry run {r['predicted_bytes'] / gib:.2f} GiB "
              f"(arguments {r['state_bytes'] / gib:.2f}, temporaries {r['temp_bytes'] / gib:.2f}); measured "
              f"{r['measured_bytes'] / gib:.2f} GiB (live arrays {r['live_bytes'] / gib:.2f} + RSS growth during "
              f"the step); dry run / measured = {ratio:.2f}")


if __name__ == "__main__":
    main()

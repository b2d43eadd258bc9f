"""Per-device bytes of parameters + AdamW state under each mesh, on 8 fake CPU devices.

    python benchmarks/sharding_memory.py            # MiniLM (packaged) and a BERT-large-sized config

Figures come from the shardings jaxqa gives the train state (abstract arrays: nothing of BERT-large
is allocated); for MiniLM the state is also really created on each mesh and device 0's shards are
summed, which must give the same number.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")  # before JAX starts

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from jaxqa import sharding  # noqa: E402
from jaxqa.config import RunConfig
from jaxqa.models import weights
from jaxqa.models.encoder import EncoderConfig  # noqa: E402
from jaxqa.training import train_state

OPT = RunConfig(seed=0, dtype="float32", learning_rate=5e-5, weight_decay=0.01, adam_beta1=0.9,
                  adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, warmup_ratio=0.1, warmup_steps=0)
BERT_LARGE = EncoderConfig(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096)
MESHES = ["data=8", "fsdp=8", "tensor=8", "data=2,fsdp=2,tensor=2"]


def abstract_state(model_config: EncoderConfig):
    """The TrainState as shape structs (with parameter metadata): what create_train_state would build."""
    graphdef, params = nnx.split(nnx.eval_shape(lambda: train_state.build_model(model_config)), nnx.Param)
    tx, schedule = train_state.make_optimizer(OPT, 100)
    return train_state.TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                                  opt_state=jax.eval_shape(tx.init, params),
                                  dropout_key=jax.ShapeDtypeStruct((4,), jnp.uint32),
                                  graphdef=graphdef, tx=tx, lr_schedule=schedule)


def per_device_bytes(tree, shardings) -> int:
    """Bytes one device holds: every leaf's shard shape under its sharding (all shards are equal)."""
    return sum(math.prod(s.shard_shape(a.shape)) * a.dtype.itemsize
               for a, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))


def measured_bytes(tree) -> int:
    device = jax.devices()[0]
    return sum(s.data.nbytes for a in jax.tree.leaves(tree) for s in a.addressable_shards if s.device == device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    assert jax.device_count() == 8, f"needs 8 devices, JAX sees {jax.device_count()} (set XLA_FLAGS before running)"
    minilm_dir = weights.packaged_model_dir()
    models = {"MiniLM-L6-H384": weights.load_config(minilm_dir), "BERT-large (random)": BERT_LARGE}
    results = []
    for name, config in models.items():
        state = abstract_state(config)
        total_params = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state.params))
        total_opt = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state.opt_state))
        for spec in MESHES:
            mesh = sharding.make_mesh(spec=spec)
            shardings = sharding.state_shardings(state, mesh)
            row = {"model": name, "mesh": spec, "total_bytes": total_params + total_opt,
                   "param_bytes": per_device_bytes(state.params, shardings.params),
                   "opt_bytes": per_device_bytes(state.opt_state, shardings.opt_state)}
            row["device_bytes"] = row["param_bytes"] + row["opt_bytes"]
            if name.startswith("MiniLM"):  # cheap enough to build for real
                real = train_state.create_train_state(OPT, minilm_dir, total_steps=100, mesh=mesh)
                row["measured_device_bytes"] = measured_bytes(real.params) + measured_bytes(real.opt_state)
                del real
            results.append(row)
    base = {r["model"]: r["device_bytes"] for r in results if r["mesh"] == "data=8"}
    print(f"{'model':<22}{'mesh':<24}{'params+Adam per device':>24}{'vs data=8':>11}{'measured':>14}")
    for r in results:
        measured = f"{r['measured_device_bytes'] / 2**20:.2f} MiB" if "measured_device_bytes" in r else "-"
        print(f"{r['model']:<22}{r['mesh']:<24}{r['device_bytes'] / 2**20:>20.2f} MiB"
              f"{r['device_bytes'] / base[r['model']]:>11.3f}{measured:>14}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

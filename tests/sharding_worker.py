"""Run by tests/test_sharding.py in a fresh process with fake CPU devices (the test process's JAX
already has one device). Prints one JSON object on its last stdout line.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/sharding_worker.py meshes MODEL_DIR DATA_FILE [MESH ...]
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from flax import nnx

from jaxqa import sharding
from jaxqa.cli import keep_pytorch_out
from jaxqa.config import RunConfig
from jaxqa.data import batching
from jaxqa.data.examples import load_examples
from jaxqa.data.features import load_tokenizer, tokenize
from jaxqa.training import train_state

OPT = RunConfig(seed=0, dtype="float32", learning_rate=1e-3, weight_decay=0.01, adam_beta1=0.9,
                  adam_beta2=0.999, adam_epsilon=1e-5, max_grad_norm=1.0, warmup_ratio=0.0, warmup_steps=0)
# adam_epsilon 1e-5, not 1e-8: some gradients are exactly 0 in exact arithmetic (the QA head bias:
# softmax ignores a shift; the key bias likewise) and only rounding noise (~1e-9) in float32. Adam's
# first step divides noise by its own size, so at eps 1e-8 those entries move by up to lr
# whatever the reduction order; eps 1e-5 keeps the comparison about the math, not the noise.
keep_pytorch_out()  # the tokenizer's `transformers` import then skips PyTorch (~4 s)
MESHES = ["data=8", "fsdp=8", "tensor=8", "data=2,fsdp=2,tensor=2"]


def _batch(model_dir, data_file, rows=16):
    feats = tokenize(load_examples(data_file), load_tokenizer(model_dir), max_seq_length=128, doc_stride=32)
    plan = batching.plan_batches(feats.lengths, rows, max_seq_length=128, bucket_width=None)[0]
    return batching.gather(feats.train_arrays(), plan)


def _step(mesh, model_dir, batch):
    """State created on `mesh`, one train step and one eval forward: host values of everything."""
    state = train_state.create_train_state(OPT, model_dir, total_steps=10, mesh=mesh)
    shardings = sharding.state_shardings(state, mesh)
    step = sharding.jit(train_state.train_step, mesh, in_shardings=(shardings, sharding.batch_sharding(mesh)),
                        out_shardings=(shardings, sharding.replicated(mesh)))
    evaluate = sharding.jit(train_state.eval_step, mesh, in_shardings=(shardings, sharding.batch_sharding(mesh)),
                            out_shardings=sharding.replicated(mesh))
    device_batch = sharding.put_batch(batch, mesh)
    logits = evaluate(state, device_batch)
    new_state, metrics = step(state, device_batch)
    return state, new_state, {"loss": float(metrics["loss"]), "logits": np.asarray(logits),
                              "params": jax.tree.leaves(sharding.to_host(new_state.params)),
                              "opt": jax.tree.leaves(sharding.to_host(new_state.opt_state))}


def _layout(state, mesh) -> dict:
    """Per-parameter spec and device-0 shard shape, and device-0 bytes of params and Adam moments."""
    device = mesh.devices.flat[0]

    def on_device(tree) -> int:
        return sum(s.data.nbytes for leaf in jax.tree.leaves(tree) for s in leaf.addressable_shards
                   if s.device == device)

    layout = {}
    for path, var in nnx.to_flat_state(state.params):
        array = var.get_value()
        layout["/".join(map(str, path))] = {"shape": list(array.shape), "spec": str(array.sharding.spec),
                                            "shard": list(array.addressable_shards[0].data.shape)}
    total = lambda tree: sum(leaf.nbytes for leaf in jax.tree.leaves(tree))  # noqa: E731
    return {"params": layout, "param_bytes": total(state.params), "param_bytes_device0": on_device(state.params),
            "opt_bytes": total(state.opt_state), "opt_bytes_device0": on_device(state.opt_state)}


def meshes(model_dir: str, data_file: str, *specs: str) -> dict:
    """The step on each mesh of `specs` (default MESHES) against the step on one device."""
    batch = _batch(model_dir, data_file)
    _, _, ref = _step(sharding.make_mesh(jax.devices()[:1]), model_dir, batch)
    out = {"n_devices": jax.device_count(), "ref_loss": ref["loss"], "meshes": {}}
    for spec in specs or MESHES:
        mesh = sharding.make_mesh(spec=spec)
        state, new_state, got = _step(mesh, model_dir, batch)
        out["meshes"][spec] = {
            "loss": got["loss"], "loss_diff": abs(got["loss"] - ref["loss"]),
            "logits_diff": float(max(np.abs(a - b).max() for a, b in zip(got["logits"], ref["logits"]))),
            "param_diff": float(max(np.abs(a - b).max() for a, b in zip(got["params"], ref["params"]))),
            "param_diff_worst": max(zip((float(np.abs(a - b).max()) for a, b in zip(got["params"], ref["params"])),
                                        ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(state.params)]))[1],
            "opt_diff": float(max(np.abs(np.asarray(a, np.float64) - b).max()
                                  for a, b in zip(got["opt"], ref["opt"]))),
            **_layout(new_state, mesh),
        }
    return out


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    print(json.dumps({"meshes": meshes}[mode](*args)))

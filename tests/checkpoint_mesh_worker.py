"""Run by tests/test_checkpoint.py with 8 fake CPU devices: save a trained state under one mesh,
restore it under another, print whether every array matches and how the restored one is laid out.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/checkpoint_mesh_worker.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from jaxqa import sharding
from jaxqa.config import RunConfig
from jaxqa.training.checkpoint import Checkpointer
from jaxqa.training.train_state import create_train_state


def main(model_dir: str, out_dir: str) -> None:
    config = RunConfig(seed=3)
    saved_mesh, restore_mesh = sharding.make_mesh(spec="data=2,fsdp=2,tensor=2"), sharding.make_mesh(spec="data=8")
    state = create_train_state(config, model_dir, total_steps=10, mesh=saved_mesh)
    # Values a fresh state does not have (Adam moments and counts are zeros at creation).
    state = state.replace(step=state.step + 5, opt_state=jax.tree.map(lambda x: x + np.array(3, x.dtype), state.opt_state),
                          params=jax.tree.map(lambda x: x * 1.5 + 0.25, state.params))
    checkpointer = Checkpointer(out_dir, keep=2)
    checkpointer.save(state, {"step": 5})
    checkpointer.wait()
    target = create_train_state(config, model_dir, total_steps=10, mesh=restore_mesh)
    restored, meta = Checkpointer(out_dir, keep=2).restore(target)
    pairs = list(zip(jax.tree.leaves(sharding.to_host(state)), jax.tree.leaves(sharding.to_host(restored))))
    qkv = restored.params["encoder"]["layers"][0]["attention"]["qkv"]["kernel"].value
    print(json.dumps({
        "step": int(restored.step), "meta_step": meta["step"], "arrays": len(pairs),
        "all_equal": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in pairs),
        "saved_spec": str(state.params["encoder"]["layers"][0]["attention"]["qkv"]["kernel"].value.sharding.spec),
        "restored_spec": str(qkv.sharding.spec), "restored_mesh": dict(qkv.sharding.mesh.shape),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""The device mesh and where arrays live on it.

One named axis, `data`, spans all devices: parameters and optimizer state are replicated and
every batch is split along its first dimension. Wider meshes change this module only.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
    devices = list(devices) if devices is not None else jax.devices()
    return Mesh(np.array(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def state_shardings(state, mesh: Mesh):
    """A sharding for every array of the train state (all replicated on a data-only mesh)."""
    return jax.tree_util.tree_map(lambda _: replicated(mesh), state)


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Host batch -> device arrays split over the data axis (asynchronous: returns at once)."""
    return jax.device_put(batch, batch_sharding(mesh))

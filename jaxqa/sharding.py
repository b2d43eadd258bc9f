"""The device mesh, the logical-axis rules, and where every array lives on the mesh.

The mesh has three named axes: `data` (batch split, parameters replicated), `fsdp` (batch split
*and* parameters/optimizer state split, gathered per layer when used) and `tensor` (heads and MLP
columns split inside a layer). Parameters carry logical axis names (`embed`, `mlp`, `vocab`, ...)
as Flax metadata; `RULES` is the one table that maps them to mesh axes. A dimension that does not
divide its mesh axes stays whole (replicated), so odd shapes (a 2-wide QA head, a 30522 vocab)
work on any mesh.

Multi-host: every process runs the same program on a global mesh; `put_batch` builds global
batches from the rows each process holds (`local_rows`), `to_host` gathers sharded arrays back.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxqa import atomic
from jaxqa.errors import ConfigError

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical axis -> mesh axes (MaxText style). Parameters: vocab/embed/mlp/heads/qkv/...; activations
# use `batch` plus the parameter names of the dimension they carry.
RULES: dict[str, tuple[str, ...]] = {
    "batch": BATCH_AXES,
    "vocab": ("tensor",),
    "embed": ("fsdp",),
    "mlp": ("tensor",),
    "heads": ("tensor",),
    "qkv": ("tensor",),  # the fused [3 x heads x head_dim] output of the QKV projection
    "positions": (),
    "types": (),
    "norm": (),
    "classes": (),
    "length": (),
}


# --- the mesh ---------------------------------------------------------------------------------

def parse_mesh(spec: str, n_devices: int | None) -> dict[str, int]:
    """`"data=2,fsdp=-1"` -> {"data": 2, "fsdp": n/2, "tensor": 1}; empty: all devices on `data`.
    With `n_devices` None only the syntax is checked (-1 stays)."""
    if not spec or not spec.strip():
        return {"data": n_devices, "fsdp": 1, "tensor": 1}
    sizes: dict[str, int] = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in AXES:
            raise ConfigError(f"--mesh {spec}: unknown axis {name!r}; use {', '.join(AXES)} as in data=2,fsdp=2,tensor=2")
        if name in sizes:
            raise ConfigError(f"--mesh {spec}: axis {name} is given twice")
        try:
            sizes[name] = int(value)
        except ValueError:
            raise ConfigError(f"--mesh {spec}: {name} needs an integer size (-1: the rest of the devices)") from None
        if sizes[name] == 0 or sizes[name] < -1:
            raise ConfigError(f"--mesh {spec}: {name}={sizes[name]}; sizes are positive, or -1 for the rest")
    rest = [name for name, size in sizes.items() if size == -1]
    if len(rest) > 1:
        raise ConfigError(f"--mesh {spec}: only one axis can be -1 (the rest of the devices)")
    known = math.prod(size for size in sizes.values() if size != -1)
    if n_devices is None:
        return {name: sizes.get(name, 1) for name in AXES}
    if rest:
        if n_devices % known:
            raise ConfigError(f"--mesh {spec}: {n_devices} devices do not divide by {known}; "
                              f"choose sizes whose product divides {n_devices}")
        sizes[rest[0]] = n_devices // known
    sizes = {name: sizes.get(name, 1) for name in AXES}
    if math.prod(sizes.values()) != n_devices:
        raise ConfigError(f"--mesh {spec}: the sizes multiply to {math.prod(sizes.values())} but there are "
                          f"{n_devices} devices; make the product {n_devices} (or give one axis -1)")
    return sizes


def make_mesh(devices=None, spec: str = "") -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (all of them by default) shaped by `spec`
    (the --mesh flag). Devices are laid out process-major, so a process's devices are adjacent
    on the batch axes and each process reads a contiguous slice of every batch."""
    devices = list(devices) if devices is not None else jax.devices()
    devices.sort(key=lambda d: (d.process_index, d.id))
    sizes = parse_mesh(spec, len(devices))
    grid = np.array(devices, dtype=object).reshape(tuple(sizes.values()))
    return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def batch_size_multiplier(mesh: Mesh) -> int:
    """Devices a batch is split over: global batch = per-device batch x this."""
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


# --- logical axes -> shardings -----------------------------------------------------------------

def logical_to_spec(names, shape, mesh_shape) -> P:
    """PartitionSpec for an array of `shape` whose dimensions have logical `names`: each dimension
    goes to its RULES mesh axes unless it does not divide them (or they are already used)."""
    used: set[str] = set()
    spec = []
    for name, dim in zip(names, shape):
        axes = tuple(a for a in RULES.get(name, ()) if a in mesh_shape and mesh_shape[a] > 1) if name else ()
        if not axes or used & set(axes) or dim % math.prod(mesh_shape[a] for a in axes):
            spec.append(None)
            continue
        used |= set(axes)
        spec.append(axes[0] if len(axes) == 1 else axes)
    return P(*spec)


class MeshJit:
    """`jax.jit(fn, **jit_kwargs)` traced under `mesh`, so the model's `constrain` calls apply;
    `compile(*args)` builds the program ahead of time for arrays shaped like `args` (`lower(*args)`
    traces it, for compiling later)."""

    def __init__(self, fn, mesh: Mesh, **jit_kwargs):
        self.jitted, self.mesh = jax.jit(fn, **jit_kwargs), mesh
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        with jax.set_mesh(self.mesh):
            return self.jitted(*args)

    def lower(self, *args):
        with jax.set_mesh(self.mesh):
            return self.jitted.lower(*args)

    def compile(self, *args):
        return self.lower(*args).compile()


def jit(fn, mesh: Mesh, **jit_kwargs) -> MeshJit:
    return MeshJit(fn, mesh, **jit_kwargs)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def param_shardings(params, mesh: Mesh):
    """NamedSharding of every parameter from the logical names in its `out_sharding` metadata
    (same tree as `params`: works for concrete and for abstract `nnx.eval_shape` parameters)."""
    from flax import nnx

    def one(variable):
        shape = variable.get_value().shape
        names = tuple(variable.get_metadata().get("out_sharding") or ())
        names += (None,) * (len(shape) - len(names))
        return variable.replace(NamedSharding(mesh, logical_to_spec(names, shape, mesh.shape)))

    return jax.tree.map(one, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_shardings(state, mesh: Mesh):
    """A sharding for every array of the train state: parameters by their logical axes, each
    optimizer moment and the moving average like its parameter, scalars (step, counts, key) replicated,
    and so are statistics not shaped like their parameter (Adafactor's row and column second moments:
    vectors, small)."""
    import optax

    params = param_shardings(state.params, mesh)
    like_param = lambda leaf, s, p: s if leaf.shape == p.shape else replicated(mesh)  # noqa: E731
    opt = optax.tree_map_params(state.tx, like_param, state.opt_state, params, state.params,
                                transform_non_params=lambda _: replicated(mesh),
                                is_leaf=lambda x: isinstance(x, NamedSharding))
    return state.replace(step=replicated(mesh), params=params, opt_state=opt, dropout_key=replicated(mesh),
                         ema_params=None if state.ema_params is None else params)


# --- activations -------------------------------------------------------------------------------

def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
    """Pin an activation's layout by logical names under the current mesh (`jax.set_mesh`);
    a no-op outside one, so the model also runs unsharded (tests, QuestionAnswerer)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not set(AXES) <= set(mesh.axis_names):
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(names, x.shape, dict(mesh.shape)))


def batch_split(batch: int) -> int:
    """How many devices the current mesh splits a `batch`-row activation over (1 outside a mesh)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not set(AXES) <= set(mesh.axis_names):
        return 1
    axes = logical_to_spec(("batch",), (batch,), dict(mesh.shape))[0]
    axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


# --- batches and multi-host ----------------------------------------------------------------------

def local_rows(mesh: Mesh, global_batch: int) -> np.ndarray:
    """Indices of the rows of a `global_batch`-row batch that this process's devices hold (all rows
    on a single host): the only rows this process needs to read."""
    index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
    spans = sorted({(s[0].start or 0, global_batch if s[0].stop is None else s[0].stop) for s in index_map.values()})
    return np.concatenate([np.arange(a, b) for a, b in spans])


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh, global_batch: int | None = None) -> dict[str, jax.Array]:
    """This process's rows (`local_rows`) -> global device arrays split over (data, fsdp).
    `global_batch` defaults to the local rows (the single-host case)."""
    sharding = batch_sharding(mesh)
    out = {}
    for name, local in batch.items():
        rows = global_batch if global_batch is not None else local.shape[0]
        out[name] = jax.make_array_from_process_local_data(sharding, local, (rows, *local.shape[1:]))
    return out


def put_global(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array (the same on every process) -> a global array; each device gets only its shard."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(tree):
    """Full NumPy values of (possibly sharded, possibly multi-host) arrays, on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def is_main_process() -> bool:
    """Process 0 logs, shows progress and writes files; the others compute the same values."""
    return jax.process_index() == 0


def write_json(path: str | Path, obj) -> None:
    """Write then rename (a reader never sees half a file), on process 0 only: in a multi-host run every
    process computes the same outputs, and two writers would race."""
    if is_main_process():
        atomic.write_json(path, obj)


def write_text(path: str | Path, text: str) -> None:
    """`write_json`'s gate for a text file."""
    if is_main_process():
        atomic.write_text(path, text)


_LAUNCHER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """Join a multi-process run: with the flags when given, else when a launcher (SLURM, Open MPI,
    PMI) started several processes. Must run before JAX uses any device. True when distributed."""
    if jax.distributed.is_initialized():
        return True
    explicit = coordinator_address is not None or num_processes is not None or process_id is not None
    launched = any(int(os.environ.get(v, "1") or 1) > 1 for v in _LAUNCHER_ENV)
    if not (explicit or launched):
        return False
    if explicit and (coordinator_address is None or num_processes is None or process_id is None):
        raise ConfigError("--coordinator_address, --num_processes and --process_id go together: give all three "
                          "(or none, under a launcher such as SLURM or mpirun)")
    if explicit and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process_id {process_id} must be in [0, --num_processes {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only runs need a collective backend
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True


def wait_for_all_processes(name: str, timeout_s: int = 3600) -> None:
    """A barrier through the coordination service, not a device collective: processes that finished
    compiling (or read their programs from the cache) wait here for slower ones, so the first train
    step's collectives do not hit gloo's 30 s rendezvous deadline."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    distributed.global_state.client.wait_at_barrier(f"jaxqa_{name}", timeout_in_ms=timeout_s * 1000)

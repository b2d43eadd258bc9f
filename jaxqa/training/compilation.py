"""Compiling the train step: ahead of time for every batch shape, through JAX's persistent cache,
with XLA's own account of the memory each device will need.

Compiling every length bucket before the first step means no step ever compiles mid-run (the step
clock stays honest, and a run too big for the device stops before training, not at step 1); the
persistent cache makes a repeated or resumed run with the same shapes skip compilation.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import time
from pathlib import Path

import jax
import jaxlib

from jaxqa.errors import ConfigError

log = logging.getLogger("jaxqa")

_cache_events = {"hits": 0, "misses": 0}


def _count_cache_event(name: str, **_kwargs) -> None:
    if name == "/jax/compilation_cache/cache_hits":
        _cache_events["hits"] += 1
    elif name == "/jax/compilation_cache/cache_misses":
        _cache_events["misses"] += 1


def enable_cache(directory: str | Path) -> None:
    """JAX's persistent compilation cache in `directory`, for every program (CPU ones included)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if not getattr(enable_cache, "listening", False):
        jax.monitoring.register_event_listener(_count_cache_event)
        enable_cache.listening = True


def compile_all(step, state, batches: dict[int, dict], program_dir: Path | None = None,
                identity: str = "") -> tuple[dict, dict]:
    """({seq_len: compiled step}, report) for abstract `batches` keyed by sequence length. With
    `program_dir`, traced programs are kept there (see SavedPrograms) so a repeated run skips tracing.

    Tracing is Python and runs one shape after another, the longest first; XLA compiles each program in a
    thread as soon as it is traced, side by side with the next tracing and the other compilations (it
    releases the GIL, and one compilation keeps only part of a host busy: ~1.4 of 2 cores here), a thread
    per core: the default job's four programs 56.0 s -> 45.2 s on 2 cores."""
    before = dict(_cache_events)
    start = time.perf_counter()
    saved = SavedPrograms(program_dir, identity) if program_dir and jax.process_count() == 1 else None
    with concurrent.futures.ThreadPoolExecutor(max_workers=compile_threads(len(batches))) as pool:
        pending = {seq_len: pool.submit(saved.lower(step, state, batch) if saved else step.lower(state, batch).compile)
                   for seq_len, batch in sorted(batches.items(), reverse=True)}
        compiled = {seq_len: pending[seq_len].result() for seq_len in sorted(pending)}
    report = {"programs": len(compiled), "seconds": round(time.perf_counter() - start, 2),
              "cache_hits": _cache_events["hits"] - before["hits"],
              "cache_misses": _cache_events["misses"] - before["misses"],
              "traced": saved.traced if saved else len(compiled)}
    return compiled, report


def compile_threads(programs: int) -> int:
    """Threads compiling `programs` programs at once: one per core this process may use, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(programs, cores, 8))


class FlatStep:
    """A compiled step over flat leaves, called like the original step(state, batch)."""

    def __init__(self, compiled, state_tree):
        self.compiled, self.state_tree = compiled, state_tree

    def __call__(self, state, batch):
        *state_leaves, metrics = self.compiled(*jax.tree.leaves((state, batch)))
        return jax.tree.unflatten(self.state_tree, state_leaves), metrics

    def memory_analysis(self):
        return self.compiled.memory_analysis()


class SavedPrograms:
    """Traced train steps kept on disk as serialized `jax.export` programs.

    JAX's persistent cache skips XLA compilation, but finding the cache entry needs the lowered
    program, so every shape is still traced through the model (~0.5 s each for MiniLM on CPU). A
    saved program is the lowered StableHLO itself: a repeated run loads it and goes straight to the
    (cached) compilation. The file name hashes everything that shapes the program: the whole run
    config, the model's config.json, jaxqa's source, the JAX versions, the devices and the argument
    structure, shapes, dtypes and shardings; any doubt (a load error, other shapes) means tracing anew.
    The step must return (state of the input's structure, dict of metrics).
    """

    def __init__(self, directory: Path, identity: str):
        self.directory, self.identity, self.traced = Path(directory), identity, 0

    def lower(self, step, state, batch):
        """The step for this shape, loaded or traced: a function that compiles it (see compile_all)."""
        try:
            return self._lower(step, state, batch)
        except Exception as err:  # saving programs is an optimisation: the plain path reports real errors
            log.warning("saved programs unavailable (%s: %s); compiling the usual way", type(err).__name__, err)
            self.traced += 1
            return step.lower(state, batch).compile

    def _lower(self, step, state, batch):
        leaves, in_tree = jax.tree.flatten((state, batch))
        state_tree = jax.tree.structure(state)
        n_state = state_tree.num_leaves
        in_shardings = tuple(leaf.sharding for leaf in leaves)
        out_shardings = (*in_shardings[:n_state], jax.sharding.NamedSharding(step.mesh, jax.sharding.PartitionSpec()))
        path = self.directory / f"{self._key(leaves, in_tree, step.mesh)}.jaxexport"
        exported = self._load(path, leaves, n_state)
        if exported is None:
            exported = self._trace(step.__wrapped__, step.mesh, leaves, in_tree, state_tree, in_shardings,
                                   out_shardings, path)
        with jax.set_mesh(step.mesh):
            program = jax.jit(exported.call, in_shardings=in_shardings, out_shardings=out_shardings,
                              donate_argnums=tuple(range(n_state)))
            lowered = program.lower(*leaves)
        return lambda: FlatStep(lowered.compile(), state_tree)

    def _key(self, leaves, in_tree, mesh) -> str:
        import hashlib

        digest = hashlib.sha256(self.identity.encode())
        for source in sorted(Path(__file__).parents[1].rglob("*.py")):  # jaxqa's sources
            digest.update(source.read_bytes())
        devices = [(d.platform, d.device_kind, d.id) for d in mesh.devices.flat]
        structure = re.sub(r" at 0x[0-9a-f]+", "", str(in_tree))  # static functions: named, not by address
        digest.update(repr((jax.__version__, jaxlib.__version__, structure, dict(mesh.shape), devices,
                            [(leaf.shape, str(leaf.dtype), str(leaf.sharding)) for leaf in leaves])).encode())
        return digest.hexdigest()[:32]

    @staticmethod
    def _load(path: Path, leaves, n_state: int):
        if not path.is_file():
            return None
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
            if [(a.shape, a.dtype) for a in exported.in_avals] != [(x.shape, x.dtype) for x in leaves] \
                    or exported.out_tree.num_leaves <= n_state:
                raise ValueError("argument or result shapes differ")
            return exported
        except Exception as err:  # a stale or broken file costs a trace, never a wrong program
            log.warning("%s: saved program not usable (%s); tracing the step again", path, err)
            return None

    def _trace(self, fn, mesh, leaves, in_tree, state_tree, in_shardings, out_shardings, path: Path):
        from jaxqa import atomic
        self.traced += 1

        def flat_step(*flat):
            new_state, metrics = fn(*jax.tree.unflatten(in_tree, flat))
            if jax.tree.structure(new_state) != state_tree or not isinstance(metrics, dict):
                raise TypeError("the train step must return (state of the same structure, dict of metrics)")
            return (*jax.tree.leaves(new_state), metrics)

        with jax.set_mesh(mesh):
            exported = jax.export.export(jax.jit(flat_step, in_shardings=in_shardings,
                                                 out_shardings=out_shardings))(*leaves)
        try:
            atomic.write_bytes(path, bytes(exported.serialize()))
        except OSError as err:
            log.warning("%s: cannot save the traced program (%s); the next run traces again", path, err)
        return exported


def device_capacity(device) -> int | None:
    """Bytes of memory the device can use: the accelerator's limit, or the host's RAM for a CPU."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform == "cpu":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def memory_needed(compiled) -> dict:
    """Per-device bytes XLA plans for one step: inputs, outputs (less the donated ones), temporaries."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    arguments, outputs = stats.argument_size_in_bytes, stats.output_size_in_bytes
    aliased, temp = stats.alias_size_in_bytes, stats.temp_size_in_bytes
    code = stats.generated_code_size_in_bytes
    return {"argument_bytes": arguments, "output_bytes": outputs, "aliased_bytes": aliased, "temp_bytes": temp,
            "code_bytes": code, "total_bytes": arguments + outputs - aliased + temp + code}


def check_fits(needed: dict, capacity: int | None, what: str) -> None:
    """Stop before training when the step would not fit, saying what to change."""
    if not needed or not capacity or needed["total_bytes"] <= capacity:
        return
    raise ConfigError(f"{what} needs {needed['total_bytes'] / 2**30:.2f} GiB per device but the device has "
                      f"{capacity / 2**30:.2f} GiB; lower --per_device_train_batch_size or --max_seq_length, "
                      "shard the parameters with --mesh fsdp=-1, or use --dtype bfloat16")


def format_memory(needed: dict, capacity: int | None) -> str:
    gib = 2**30
    parts = ", ".join(f"{k.removesuffix('_bytes')} {v / gib:.3f}" for k, v in needed.items() if k != "total_bytes")
    share = f" of {capacity / gib:.2f} GiB ({100 * needed['total_bytes'] / capacity:.1f}%)" if capacity else ""
    return f"{needed['total_bytes'] / gib:.3f} GiB per device{share} [{parts} GiB]"

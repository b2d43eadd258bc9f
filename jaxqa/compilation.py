"""Compiling the train step: ahead of time for every batch shape, through JAX's persistent cache,
with XLA's own account of the memory each device will need.

Compiling every length bucket before the first step means no step ever compiles mid-run (the step
clock stays honest, and a run too big for the device stops before training, not at step 1); the
persistent cache makes a repeated or resumed run with the same shapes skip compilation.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import jax

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


def cache_dir_for(config) -> str | None:
    if (config.compilation_cache_dir or "").lower() == "none":
        return None
    return config.compilation_cache_dir or str(Path(config.output_dir).absolute().parent / ".jax_cache")


def compile_all(step, state, batches: dict[int, dict]) -> tuple[dict, dict]:
    """({seq_len: compiled step}, report) for abstract `batches` keyed by sequence length."""
    before = dict(_cache_events)
    start = time.perf_counter()
    compiled = {seq_len: step.compile(state, batch) for seq_len, batch in sorted(batches.items())}
    report = {"programs": len(compiled), "seconds": round(time.perf_counter() - start, 2),
              "cache_hits": _cache_events["hits"] - before["hits"],
              "cache_misses": _cache_events["misses"] - before["misses"]}
    return compiled, report


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

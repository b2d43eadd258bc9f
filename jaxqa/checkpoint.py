"""Orbax checkpoints of the whole training state, so a run killed at any moment resumes exactly.

A checkpoint is `output_dir/checkpoints/<step>/` with two items: `state` (parameters, optimizer
state, step and dropout key, saved sharded as they live on the mesh) and `meta` (the data-order
position, the run's identity and any eval metrics, as JSON). Batches come from (seed, epoch) and the
position in the epoch, and dropout keys from (key, step), so the step alone puts a resumed run back
on the same batches and keys; `meta` records the position so a changed data setup is caught.
Saving is asynchronous: `save` returns once the arrays are copied off the step's buffers.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import shutil
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxqa.errors import ConfigError

log = logging.getLogger("jaxqa")

CHECKPOINT_SUBDIR = "checkpoints"
# Settings that make two runs different runs: resuming with any of these changed would not continue
# the same training, so it is refused (and `--overwrite_output_dir` is the way to start afresh).
IDENTITY_FIELDS = ("model_name_or_path", "config_name", "train_file", "max_train_samples", "max_seq_length",
                   "doc_stride", "max_query_length", "pad_to_max_length", "bucket_width", "per_device_train_batch_size",
                   "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
                   "num_train_epochs", "warmup_ratio", "warmup_steps", "seed", "dtype", "adafactor",
                   "gradient_accumulation_steps", "attention_dropout")


def run_identity(config) -> dict:
    return {name: getattr(config, name) for name in IDENTITY_FIELDS}


def _pytree(state) -> dict:
    """The arrays of a TrainState (its static fields are rebuilt from the config, not saved)."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
            "dropout_key": state.dropout_key}


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


@contextlib.contextmanager
def _quiet_unraisable():
    """A damaged checkpoint makes Orbax's pending reads each print an ignored-exception traceback;
    the one warning we log says it all."""
    previous, sys.unraisablehook = sys.unraisablehook, lambda _info: None
    try:
        yield
    finally:
        gc.collect()  # the abandoned reads are finalised here, while quiet
        sys.unraisablehook = previous


class Checkpointer:
    """Keeps the last `keep` checkpoints plus the best one by `best_metric` (when evals ran)."""

    def __init__(self, output_dir: str | Path, *, keep: int | None, best_metric: str | None = "f1",
                 asynchronous: bool = True):
        self.directory = Path(output_dir).absolute() / CHECKPOINT_SUBDIR
        self.best_metric = best_metric
        keep_policies = [policies.LatestN(n=keep)]
        if best_metric:
            keep_policies.append(policies.BestN(get_metric_fn=lambda m: m[best_metric], n=1,
                                                keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep_policies),
            enable_async_checkpointing=asynchronous, create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, state, meta: dict, metrics: dict | None = None) -> None:
        step = int(meta["step"])
        if step in self.manager.all_steps():  # left by a run that was resumed from an earlier step
            self.manager.delete(step)
        metrics = metrics if metrics and self.best_metric in metrics else None
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_pytree(state)),
                                                        meta=ocp.args.JsonSave({**meta, "metrics": metrics})),
                          metrics=metrics, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, state, step: int | None = None):
        """(state, meta) of `step`, or of the newest checkpoint that reads back whole, onto the shardings
        of `state` (which may be on another mesh). A damaged checkpoint is skipped with a warning."""
        candidates = [step] if step is not None else self.steps()[::-1]
        for candidate in candidates:
            try:
                with _quiet_unraisable():
                    restored = self._read(state, candidate)
            except Exception as err:  # noqa: BLE001 - any read failure means this checkpoint is unusable
                if step is not None:
                    raise ConfigError(f"checkpoint {self.directory / str(step)} cannot be read ({err})") from None
                log.warning("checkpoint %s is damaged or incomplete (%s); trying the previous one",
                            self.directory / str(candidate), str(err).split(" See full")[0][:200])
                continue
            return state.replace(**restored["state"]), dict(restored["meta"])
        return None, None

    def _read(self, state, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(_pytree(state))), meta=ocp.args.JsonRestore()))
        jax.block_until_ready(restored["state"])
        return restored

    def read_meta(self, step: int) -> dict:
        return dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def best(self) -> tuple[int, float] | None:
        """(step, value) of the kept checkpoint with the highest `best_metric`, if any recorded one."""
        scored = [(step, (self.read_meta(step).get("metrics") or {}).get(self.best_metric)) for step in self.steps()]
        scored = [(step, value) for step, value in scored if value is not None]
        return max(scored, key=lambda item: item[1]) if scored else None

    def close(self) -> None:
        self.manager.close()

    def delete_all(self) -> None:
        self.manager.close()
        shutil.rmtree(self.directory, ignore_errors=True)

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
import dataclasses
import gc
import logging
import math
import shutil
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxqa.errors import ConfigError, Interrupted, TrainingError
from jaxqa.training.periodic import itstime
from jaxqa.training.selection import ModelSelection

log = logging.getLogger("jaxqa")

CHECKPOINT_SUBDIR = "checkpoints"
def _pytree(state) -> dict:
    """The arrays of a TrainState (its static fields are rebuilt from the config, not saved)."""
    arrays = {"step": state.step, "params": state.params, "opt_state": state.opt_state,
              "dropout_key": state.dropout_key}
    return arrays if state.ema_params is None else {**arrays, "ema_params": state.ema_params}


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
            # Of equal scores the earliest is best (a later one is no improvement: early stopping agrees).
            keep_policies.append(policies.BestN(get_metric_fn=lambda m: (m[best_metric], -m.get("step", 0)), n=1,
                                                keep_checkpoints_without_metrics=False))
        self.options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep_policies),
            enable_async_checkpointing=asynchronous, create=True,
        )
        self.manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.directory, options=self.options, item_names=("state", "meta"))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, state, meta: dict, metrics: dict | None = None) -> None:
        step = int(meta["step"])
        if step in self.manager.all_steps():  # left by a run that was resumed from an earlier step
            self.manager.delete(step)
        metrics = {**metrics, "step": step} if metrics and self.best_metric in metrics else None
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_pytree(state)),
                                                        meta=ocp.args.JsonSave({**meta, "metrics": metrics})),
                          metrics=metrics, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, state, step: int | None = None):
        """(state, meta) of `step`, or of the newest checkpoint that reads back whole, onto the shardings
        of `state` (which may be on another mesh). A damaged checkpoint is skipped with a warning and
        listed in `self.damaged`: (None, None) with `damaged` empty means there is no checkpoint yet."""
        candidates = [step] if step is not None else self.steps()[::-1]
        self.damaged: list[int] = []
        for candidate in candidates:
            try:
                with _quiet_unraisable():
                    restored = self._read(state, candidate)
            except Exception as err:  # noqa: BLE001 - any read failure means this checkpoint is unusable
                if step is not None:
                    raise ConfigError(f"checkpoint {self.directory / str(step)} cannot be read ({err})") from None
                log.warning("checkpoint %s is damaged or incomplete (%s); trying the previous one",
                            self.directory / str(candidate), str(err).split(" See full")[0][:200])
                self.damaged.append(candidate)
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
        """(step, value) of the kept checkpoint with the highest `best_metric` (the earliest of equals), if any."""
        scored = [(step, (self.read_meta(step).get("metrics") or {}).get(self.best_metric)) for step in self.steps()]
        scored = [(step, value) for step, value in scored if value is not None]
        return max(scored, key=lambda item: item[1]) if scored else None

    def close(self) -> None:
        self.manager.close()

    def delete_all(self) -> None:
        """Remove every checkpoint (--overwrite_output_dir) and go on with an empty directory."""
        self.manager.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.manager = self._open()


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where a run is in its data: what a checkpoint must agree on to resume the same run."""

    steps_per_epoch: int
    global_batch: int  # rows per optimizer step: per-device batch x data x fsdp x accumulation
    num_train_features: int
    devices: int  # data x fsdp: how many the global batch is split over
    per_device_batch: int
    accumulation: int

    def meta(self, step: int) -> dict:
        return {"step": step, "epoch": step // self.steps_per_epoch, "batch_in_epoch": step % self.steps_per_epoch,
                "steps_per_epoch": self.steps_per_epoch, "global_train_batch": self.global_batch,
                "num_train_features": self.num_train_features}


class CheckpointPolicy:
    """Everything the loop asks of checkpoints, in one place: `open` (resume, or refuse to clobber or to
    resume another run), `due` (when to save), `save` (never a diverged state), `check_finite`,
    `best` and `restore_best`, and the messages that name what was kept. `selection` (the evaluations
    so far, early stopping) is saved with each checkpoint and restored with it."""

    def __init__(self, config, out_dir: Path, position: DataPosition):
        self.config, self.out_dir, self.position = config, Path(out_dir), position
        self.checkpointer = Checkpointer(out_dir, keep=config.save_total_limit, best_metric=config.metric_for_best_model)
        self.directory = self.checkpointer.directory
        self.selection = ModelSelection.from_config(config)
        self.evaluation_owed = False  # the restored step's evaluation was given up when the run stopped

    # --- opening: resume or start -------------------------------------------------------------
    def open(self, state, total_steps: int):
        """The state to train from: restored when resuming, else `state`; refuses what would mix two runs."""
        c, own = self.config, self.checkpointer
        if not c.resume_from_checkpoint:
            if own.steps():
                if not c.overwrite_output_dir:
                    raise ConfigError(f"--output_dir {self.out_dir} already holds checkpoints of a run (newest: "
                                      f"step {own.steps()[-1]}); pass --resume_from_checkpoint auto to continue it, "
                                      "--overwrite_output_dir to start afresh, or choose another --output_dir")
                own.delete_all()
            return state
        source, step = self._resume_source()
        replaced = source is not own and bool(own.steps())  # resuming another run here would mix the two
        if replaced and not c.overwrite_output_dir:
            raise ConfigError(f"--output_dir {self.out_dir} already holds checkpoints of a run (newest: step "
                              f"{own.steps()[-1]}); resuming {c.resume_from_checkpoint} there would mix the two "
                              "runs: choose another --output_dir, pass --resume_from_checkpoint auto to continue "
                              "that run, or --overwrite_output_dir to delete its checkpoints")
        restored, meta = source.restore(state, step)
        if source is not own:
            source.close()
        if restored is None and source.damaged:
            damaged = ", ".join(map(str, sorted(source.damaged)))
            if not c.overwrite_output_dir or source is not own:
                raise ConfigError(f"--resume_from_checkpoint {c.resume_from_checkpoint}: every checkpoint in "
                                  f"{source.directory} is damaged or incomplete (step(s) {damaged}); nothing to "
                                  "resume from. Pass --overwrite_output_dir to start afresh (deleting them), or "
                                  "restore them from a copy")
            log.warning("every checkpoint in %s is damaged (step(s) %s): --overwrite_output_dir, starting afresh",
                        source.directory, damaged)
            own.delete_all()
            return state
        if restored is not None:
            self._check_resumable(meta, source.directory, own=source is own)
        if replaced:  # --overwrite_output_dir: this directory's checkpoints go only once the resume is sound
            own.delete_all()
        if restored is None:
            log.warning("--resume_from_checkpoint %s: no checkpoint in %s yet; starting from step 0",
                        c.resume_from_checkpoint, source.directory)
            return state
        self.selection = ModelSelection.from_config(c, meta.get("evaluations"))
        self.evaluation_owed = bool(meta.get("evaluation_owed"))
        log.info("resumed from %s/%d: step %d of %d (epoch %d, batch %d)", source.directory, meta["step"],
                 meta["step"], total_steps, meta["epoch"], meta["batch_in_epoch"])
        return restored

    def _resume_source(self) -> tuple[Checkpointer, int | None]:
        """(manager, step or None for the newest) named by --resume_from_checkpoint."""
        value = self.config.resume_from_checkpoint
        if value == "auto":
            return self.checkpointer, None
        path = Path(value).absolute()
        if path.name.isdigit() and path.parent.name == CHECKPOINT_SUBDIR and path.is_dir():
            run_dir, step = path.parent.parent, int(path.name)
        elif (path / CHECKPOINT_SUBDIR).is_dir():
            run_dir, step = path, None
        else:
            raise ConfigError(f"--resume_from_checkpoint {value}: not a checkpoint (expected 'auto', "
                              f"OUTPUT_DIR/{CHECKPOINT_SUBDIR}/STEP or an output dir holding {CHECKPOINT_SUBDIR}/)")
        if run_dir.resolve() == self.out_dir.resolve():
            return self.checkpointer, step
        return Checkpointer(run_dir, keep=None, best_metric=None), step

    def _check_resumable(self, meta: dict, where: Path, *, own: bool) -> None:
        # A setting the checkpoint does not record came after it was written: that run had its default.
        defaults = {f.name: f.default for f in dataclasses.fields(self.config)}
        saved, now = meta.get("identity", {}), self.config.identity()
        changed = [f"--{k} {saved.get(k, defaults[k])!r} -> {now[k]!r}" for k in now
                   if saved.get(k, defaults[k]) != now[k]]
        if changed:
            fresh = "pass --overwrite_output_dir to start afresh" if own else "choose a checkpoint of these settings"
            # --dtype auto resolves by device (set-up logs which): another machine, or a new default, may differ
            dtype = saved.get("dtype", defaults["dtype"])
            same = f" (--dtype {dtype}: that run's compute dtype)" if dtype != now["dtype"] else ""
            raise ConfigError(f"cannot resume from {where}: settings differ from that run ({'; '.join(changed[:4])}); "
                              f"rerun with the same settings{same}, or {fresh}")
        p = self.position
        if meta.get("num_train_features") != p.num_train_features:
            raise ConfigError(f"cannot resume from {where}: that run had {meta.get('num_train_features')} training "
                              f"features, this one {p.num_train_features} (the training data or tokenizer "
                              "changed); use the same data, or --overwrite_output_dir to start afresh")
        self._check_same_global_batch(meta, where)

    def _check_same_global_batch(self, meta: dict, where: Path) -> None:
        """The data order, the position in the epoch and the schedule all follow from the global batch:
        a resumed run must keep it (on another number of devices, by another per-device batch)."""
        p = self.position
        saved = meta.get("global_train_batch")
        if saved is None:  # a checkpoint from before the global batch was recorded: same per-device batch
            same = meta.get("identity", {}).get("per_device_train_batch_size") == p.per_device_batch
            saved = p.global_batch if same else None
        if saved == p.global_batch and meta.get("steps_per_epoch") == p.steps_per_epoch:
            return
        was = f"{saved} rows per step" if saved else f"{meta.get('steps_per_epoch')} steps per epoch"
        now = (f"{p.global_batch} rows per step (--per_device_train_batch_size {p.per_device_batch} x "
               f"{p.devices} device(s) x --gradient_accumulation_steps {p.accumulation}, {p.steps_per_epoch} steps "
               "per epoch)")
        if saved and saved % (p.devices * p.accumulation) == 0:
            fix = f"pass --per_device_train_batch_size {saved // (p.devices * p.accumulation)} to keep it on this mesh"
        else:
            fix = (f"run on a mesh whose data x fsdp size divides {saved}" if saved
                   else "resume with the devices and batch flags of that run")
        raise ConfigError(f"cannot resume from {where}: that run's global batch was {was}, this one's is {now}; "
                          f"the data order and schedule depend on it: {fix}, or --overwrite_output_dir to start afresh")

    # --- during training ----------------------------------------------------------------------
    def due(self, step: int, total_steps: int, *, evaluated: bool, stopping: bool) -> bool:
        """Save as --save_strategy says (steps: every --save_steps and at the last step; epoch: at each
        epoch's end and the last step; no: never on a schedule), and always after an evaluation (its metrics
        pick the best) and when stopping."""
        strategy = self.config.save_strategy
        every = self.config.save_steps if strategy == "steps" else self.position.steps_per_epoch
        return evaluated or stopping or (strategy != "no" and itstime(step, every, total_steps))

    def save(self, step: int, state, step_metrics, evaluation: dict | None, *, evaluation_owed: bool = False) -> None:
        """An asynchronous checkpoint of this step, never of a diverged state (the one host sync at saves;
        `step_metrics` None: a restored state, saved again). `evaluation_owed`: this step's evaluation was
        given up by a stop signal, so the resumed run does it first."""
        if step_metrics is not None:
            loss, params_finite = jax.device_get((step_metrics["loss"], step_metrics["params_finite"]))
            self.check_finite(step, float(loss), bool(params_finite))
        meta = {**self.position.meta(step), "identity": self.config.identity(), "eval": evaluation,
                "evaluations": self.selection.meta(), "evaluation_owed": evaluation_owed}
        self.checkpointer.save(state, meta, metrics=evaluation)

    def check_finite(self, step: int, loss: float, params_finite: bool) -> None:
        """TrainingError naming the step and the last good checkpoint when the loss or the parameters
        are NaN/inf (a diverged state is never saved)."""
        if math.isfinite(loss) and params_finite:
            return
        self.checkpointer.wait()
        steps = self.checkpointer.steps()
        kept = f"the last good checkpoint is {self.directory}/{steps[-1]}" if steps else "no checkpoint was written"
        what = f"the loss is {loss}" if not math.isfinite(loss) else "the parameters became NaN/inf"
        raise TrainingError(f"step {step}: {what}; training stopped ({kept}). Lower --learning_rate "
                            "(or raise --warmup_ratio) and check the data")

    def stopped(self, step: int, total_steps: int, by: str) -> Interrupted:
        self.checkpointer.wait()
        return Interrupted(f"stopped by {by} at step {step}/{total_steps}; checkpoint saved in {self.directory}/{step}. "
                           "To continue, run the same command with --resume_from_checkpoint auto")

    def wait(self) -> None:
        self.checkpointer.wait()

    def best(self) -> tuple[int, float] | None:
        return self.checkpointer.best()

    def restore_best(self, state):
        """`state` replaced by the best kept checkpoint by --metric_for_best_model (--load_best_model_at_end);
        `state` itself when no evaluation was recorded or it is the best."""
        self.checkpointer.wait()
        best = self.best()
        if best is None:
            log.warning("--load_best_model_at_end: no checkpoint has eval metrics (pass --eval_steps N); keeping "
                        "the last step's model")
            return state
        step, value = best
        log.info("--load_best_model_at_end: the model of step %d (eval %s %.2f)", step, self.config.metric_for_best_model,
                 value)
        if step == int(state.step):
            return state
        restored, _ = self.checkpointer.restore(state, step)
        return restored

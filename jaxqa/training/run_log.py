"""What a run tells and records as it goes, and when: `Reporter` (progress bar, the log line,
`metrics.jsonl` and TensorBoard through `RunLog`, throughput rates, every --logging_steps), the
profiler trace. Output files are written by process 0 alone (`sharding.write_json`); the run's
`training_curves.png` is drawn from these records by `jaxqa.report.plots`, above this layer.

On resume the records past the restored step are dropped (they are trained again), from the JSON log
and, through TensorBoard's `purge_step`, from the event files' view. A new run starts both afresh, and
`clear_previous_run` removes a previous run's outputs that it does not write again.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxqa import atomic, sharding
from jaxqa.training.periodic import itstime

log = logging.getLogger("jaxqa")

TENSORBOARD_SUBDIR = "tensorboard"
SCALARS = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm",
           "examples_per_s": "train/examples_per_s"}


class RunLog:
    def __init__(self, out_dir: Path, start_step: int, enabled: bool = True, tensorboard: bool = True):
        """`tensorboard` False (--report_to none): metrics.jsonl only, no event files."""
        self.out_dir, self.enabled = out_dir, enabled
        self.path = out_dir / "metrics.jsonl"
        self.file = self.tensorboard = None
        if not enabled:  # processes other than 0 write nothing
            return
        kept = []
        if start_step and self.path.exists():  # (a final evaluation of a kept earlier step is made again)
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True)
                    if (record := _parse(line)) and record.get("step", 0) <= start_step and not record.get("kept")]
        atomic.write_text(self.path, "".join(kept))
        self.file = open(self.path, "a", encoding="utf-8")
        if not tensorboard:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # an optional extra: the JSON log is always written
            log.warning("tensorboardX is not installed: no TensorBoard event files (pip install tensorboardX)")
        else:
            if not start_step:  # a new run: a previous run's events would be drawn as this one's
                shutil.rmtree(out_dir / TENSORBOARD_SUBDIR, ignore_errors=True)
            self.tensorboard = SummaryWriter(str(out_dir / TENSORBOARD_SUBDIR), purge_step=start_step or None,
                                             flush_secs=30)

    def train(self, record: dict) -> None:
        self._write(record)
        if self.tensorboard:
            for key, tag in SCALARS.items():
                if key in record:
                    self.tensorboard.add_scalar(tag, record[key], record["step"])

    def eval(self, step: int, result: dict) -> None:
        """An evaluation at `step`. The final one of a model restored from an earlier step (its result
        carries "trained_steps", see `Evaluator.kept`) is written after later steps' records: it says
        so ("kept": true), and TensorBoard, which already holds that step's evaluation, gets nothing."""
        if "trained_steps" in result:
            self._write({"step": step, "kept": True, "trained_steps": result["trained_steps"], "eval": result})
            return
        self._write({"step": step, "eval": result})
        if self.tensorboard:
            for key, value in result.items():
                if isinstance(value, (int, float)) and key not in ("step", "num_examples", "num_features"):
                    self.tensorboard.add_scalar(f"eval/{key}", value, step)

    def _write(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def flush(self) -> None:
        if self.tensorboard:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tensorboard:
            self.tensorboard.close()


def _parse(line: str) -> dict | None:
    """A record of the log, or None for a blank line or the torn last line of a killed run."""
    try:
        return json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        return None


def read_json(path: Path) -> dict | None:
    """A JSON object a run wrote, or None when the file is absent, unreadable or no object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def kept_note(result: dict) -> str | None:
    """"trained N steps, kept step K (f1 x)" for the results of a model that --load_best_model_at_end
    took back to an earlier step (they carry "trained_steps", `Evaluator.kept`); None for any other."""
    if not isinstance(result.get("trained_steps"), int):
        return None
    metric = result.get("kept_best_by")
    value = f" ({metric} {result[metric]:.2f})" if isinstance(result.get(metric), (int, float)) else ""
    return f"trained {result['trained_steps']} steps, kept step {result.get('step')}{value}"


def read_records(path: Path) -> list[dict]:
    """Every record of a metrics.jsonl (none when it is absent), the torn last line of a killed run left out."""
    if not path.is_file():
        return []
    return [r for line in path.read_text(encoding="utf-8").splitlines() if isinstance(r := _parse(line), dict)]


# What a run writes in --output_dir that readers (the report page, training_curves.png) take as the
# run's own, by the part of the run that writes it; "always": derived later (`python -m jaxqa report
# --split before_training`), from files a new run replaces. The input model (model/), checkpoints/
# (`CheckpointPolicy`) and the set-up's own files (data_report.json) are not among them.
_SPLIT_FILES = ("predictions.json", "nbest_predictions.json", "null_odds.json", "span_predictions.json")
RUN_OUTPUTS = {
    "before_training": tuple(f"before_training_{name}" for name in _SPLIT_FILES) + ("before_training_results.json",),
    "eval": _SPLIT_FILES + ("eval_results.json", "eval_report.html", "windows.json"),
    "predict": tuple(f"predict_{name}" for name in _SPLIT_FILES) + ("predict_results.json",),
    "train": ("metrics.jsonl", "goodput.json", "training_curves.png", TENSORBOARD_SUBDIR),
    "always": ("before_training_report.html",),
}


def clear_previous_run(out_dir: Path, rewritten: set[str]) -> list[str]:
    """Remove from `out_dir` a previous run's RUN_OUTPUTS of the parts that this new run does not have
    (`rewritten`: the parts it has, whose files it writes again), so that its report and curves show what
    it wrote and nothing else; those it rewrites keep their content until replaced, so a run killed early
    leaves the previous run's whole. Process 0 removes; returns the names removed."""
    names = [n for part, files in RUN_OUTPUTS.items() if part not in rewritten for n in files]
    removed = []
    for name in names if sharding.is_main_process() else ():
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        log.info("--output_dir %s held a previous run's outputs that this run does not write; removed (its report "
                 "and curves show this run only): %s", out_dir, ", ".join(removed))
    return removed


class Reporter:
    """What a training run tells, and when: a progress bar, and every --logging_steps (and at the last
    step) one record of the loss averaged over those steps, the learning rate, gradient norm and the
    throughput window's rates, to the log line, metrics.jsonl and TensorBoard. Process 0 alone shows
    and writes anything. Between log lines no value leaves the device."""

    def __init__(self, out_dir: Path, *, start_step: int, total_steps: int, logging_steps: int,
                 steps_per_epoch: int, window, tensorboard: bool = True):
        self.main = sharding.is_main_process()
        self.total_steps, self.logging_steps, self.steps_per_epoch = total_steps, logging_steps, steps_per_epoch
        self.window, self.window_losses = window, []  # device scalars of the steps since the last record
        self.run_log = RunLog(out_dir, start_step, enabled=self.main, tensorboard=tensorboard)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                        disable=None if self.main else True)

    def step_done(self, step: int, batch_plan, lengths, step_metrics) -> bool:
        """Count a finished step (its loss stays on the device); True when a record is due."""
        self.window_losses.append(step_metrics["loss"])
        self.window.add(batch_plan, lengths)
        self.bar.update(1)
        return itstime(step, self.logging_steps, self.total_steps)

    def fetch(self, step: int, step_metrics) -> dict:
        """The loop's one device->host transfer: the latest step's metrics, the window's mean loss."""
        record = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        record["loss"] = float(np.mean(jax.device_get(self.window_losses)))
        self.window_losses = []
        return record

    def report(self, step: int, record: dict) -> dict:
        """Write a fetched (and checked) record everywhere; returns it as logged."""
        record = {k: v for k, v in record.items() if k != "params_finite"}
        record.update(step=step, epoch=round(step / self.steps_per_epoch, 3), **self.window.rates())
        self.run_log.train(record)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['learning_rate']:.2e}",
                             ex_s=f"{record['examples_per_s']:.1f}")
        if self.bar.disable:  # no terminal: the log carries the progress
            mfu = f" mfu {100 * record['mfu']:.1f}%" if "mfu" in record else ""
            log.info("step %d/%d loss %.4f lr %.3g %.1f ex/s %.0f tok/s %.3f TFLOP/s%s", step, self.total_steps,
                     record["loss"], record["learning_rate"], record["examples_per_s"], record["tokens_per_s"],
                     record["model_tflops"], mfu)
        return record

    def eval(self, step: int, result: dict) -> None:
        self.run_log.eval(step, result)

    def exclude(self, seconds: float) -> None:
        """Time inside the window that was no train step (evaluation, checkpoints): not in the rates."""
        self.window.exclude(seconds)

    def pause(self) -> None:
        """The train loop is left (done, stopped or failed): close the bar, flush the events."""
        self.bar.close()
        self.run_log.flush()


class Profiler:
    """A JAX profiler trace of steps START..END (`--profile_steps START:END`), for TensorBoard/Perfetto."""

    def __init__(self, steps: str | None, directory: Path):
        self.start, self.end = map(int, steps.split(":")) if steps else (-1, -1)
        self.directory, self.active = directory, False

    def before(self, step: int) -> None:
        if step == self.start:
            jax.profiler.start_trace(str(self.directory))
            self.active = True
        elif step == self.end:
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
            log.info("profile of steps %d-%d written to %s", self.start, self.end, self.directory)

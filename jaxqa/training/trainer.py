"""The training loop, and evaluation with the same compiled steps.

The loop only loops: `run_setup` builds its parts, each policy it asks lives in one place — when to
log and what a record holds (`run_log.Reporter`), when to save and what a checkpoint holds
(`checkpoint.CheckpointPolicy`), when to evaluate (`Trainer._evaluate_if_due`), how a batch reaches
the device (`inference`), when to stop (`preemption.StopRequest`) — and one clock, `goodput`, times
it all. Evaluating a state (`evaluator.Evaluator`) and saving or pushing its model (`export.Exporter`)
are objects of their own that the Trainer holds. Device work is dispatched asynchronously: the loop
waits on the device only when it logs or saves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import jax

from jaxqa import sharding
from jaxqa.config import RunConfig
from jaxqa.data.examples import Examples
from jaxqa.data.features import Features
from jaxqa.scoring.answer import QuestionAnswerer
from jaxqa.scoring.decode import Answers
from jaxqa.scoring.inference import GivenUp, device_batches
from jaxqa.training import run_setup, throughput
from jaxqa.training.evaluator import Evaluator
from jaxqa.training.export import Exporter
from jaxqa.training.preemption import StopRequest
from jaxqa.training.run_log import Profiler, Reporter

log = logging.getLogger("jaxqa")


class Trainer:
    """One run: `fit` fine-tunes, `evaluate` scores; both reuse the compiled steps."""

    def __init__(self, config: RunConfig, *, mesh=None):
        self.parts = parts = run_setup.set_up_run(config, mesh=mesh)
        self.config, self.mesh, self.state, self.goodput = parts.config, parts.mesh, parts.state, parts.goodput
        self.out_dir = Path(self.config.output_dir)
        self.train_steps: dict[int, object] = {}  # compiled train step per batch length
        self.reporter: Reporter | None = None  # from the start of training to `finish`
        self.trained_steps: int | None = None  # the last step trained (`fit`); the model may be an earlier one's
        self.evaluator = Evaluator(parts)  # evaluations, under the run's no-answer threshold
        self.exporter = Exporter(parts)  # models saved and pushed
        self.exported_dir: Path | None = None  # the trained model, once `fit` saved it

    # --- the loop -----------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train for the configured epochs (from the restored step when resuming); returns the records logged."""
        p, history, step = self.parts, [], self.state_step
        reporter, profile = self._start_training(step)
        train, checkpoints = p.splits["train"], p.checkpoints
        t_start, side_before = time.perf_counter(), self._side_seconds()
        try:
            with StopRequest() as stop, jax.transfer_guard("disallow"):  # no implicit host<->device copies
                self.evaluator.give_up = stop.cuts_short
                # Stopped during this step's evaluation, the run owes it: done first, as the unstopped run did.
                owed, checkpoints.evaluation_owed = checkpoints.evaluation_owed, False
                ended = owed and self._after_step(step, None, stop)
                for batch_plan, batch in () if ended else self._train_batches(step):
                    profile.before(step)
                    self.state, step_metrics = self.train_steps[batch_plan.seq_len](self.state, batch)
                    step += 1
                    if reporter.step_done(step, batch_plan, train.features.lengths, step_metrics):
                        history.append(self._report(step, step_metrics))
                    if self._after_step(step, step_metrics, stop):  # --early_stopping_patience spent
                        break
        finally:
            self.evaluator.give_up = None
            profile.stop()
            reporter.pause()
            with self.goodput.timer("checkpoint"):
                checkpoints.wait()
        self.train_seconds = time.perf_counter() - t_start
        self.goodput.seconds["train_steps"] += self.train_seconds - (self._side_seconds() - side_before)
        self.trained_steps = step
        if self.config.load_best_model_at_end:
            self.state = checkpoints.restore_best(self.state)
        self._export(step)
        return history

    def _after_step(self, step: int, step_metrics, stop: StopRequest) -> bool:
        """Evaluate, checkpoint and stop as due after `step`; whether early stopping ends training. A stop
        signal during the evaluation gives it up (a preemption's grace is shorter than an evaluation): the
        step's checkpoint is written at once and records it as owed, for the resumed run to do first."""
        checkpoints, total = self.parts.checkpoints, self.parts.total_steps
        try:
            evaluated, given_up = self._evaluate_if_due(step), False
        except GivenUp:
            evaluated, given_up = None, True
            log.warning("step %d: evaluation given up to stop; the resumed run does it first", step)
        no_better = evaluated is not None and checkpoints.selection.record(step, evaluated)
        stopping = stop.requested(step)
        if checkpoints.due(step, total, evaluated=evaluated is not None, stopping=stopping):
            with self._aside("checkpoint"):
                checkpoints.save(step, self.state, step_metrics, evaluated, evaluation_owed=given_up)
        if stopping:
            raise checkpoints.stopped(step, total, stop.signal or "preemption")
        return no_better

    def _start_training(self, step: int) -> tuple[Reporter, Profiler]:
        p, c = self.parts, self.config
        log.info("training: %d features, global batch %d, %d steps/epoch, %d steps", len(p.splits["train"].features),
                 p.train_batch, p.steps_per_epoch, p.total_steps)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self.train_steps:
            self.compile_train_steps()
        peak, source = throughput.device_peak(run_setup.local_device(self.mesh), c.dtype)
        if peak:
            log.info("utilisation (mfu) against %.3g TFLOP/s per device (%s)", peak / 1e12, source)
        window = throughput.Window(p.model_config, peak, self.mesh.size)
        self.reporter = Reporter(self.out_dir, start_step=step, total_steps=p.total_steps, logging_steps=c.logging_steps,
                                 steps_per_epoch=p.steps_per_epoch, window=window,
                                 tensorboard=c.report_to != "none")
        log.info("first train step at %.1fs after launch", time.perf_counter() - self.goodput.launched)
        return self.reporter, Profiler(c.profile_steps, self.out_dir / "profile")

    def _train_batches(self, step: int):
        """(batch plan, device batch) from `step` to the last step: each epoch shuffled by (seed, epoch) and
        entered at the position `step` gives, so a resumed run sees the batches it would have seen. None
        when the run already stopped early (resumed after that)."""
        p = self.parts
        if p.checkpoints.selection.stopped:
            log.info("this run stopped early at step %d (--early_stopping_patience); nothing left to train", step)
            return
        features = p.splits["train"].features
        for epoch in range(step // p.steps_per_epoch, math.ceil(p.total_steps / p.steps_per_epoch)):
            plan = run_setup.plan(self.config, features, p.train_batch, epoch)[step % p.steps_per_epoch:]
            plan = plan[: p.total_steps - step]
            yield from zip(plan, self._timed(device_batches(features.train_arrays(), plan, self.mesh)))
            step += len(plan)

    def _report(self, step: int, step_metrics) -> dict:
        record = self.reporter.fetch(step, step_metrics)
        self.parts.checkpoints.check_finite(step, record["loss"], bool(record["params_finite"]))
        return self.reporter.report(step, record)

    def _evaluate_if_due(self, step: int) -> dict | None:
        """With --do_eval, the metrics when --eval_strategy and --eval_steps say (`RunConfig.evaluation_due`; the last
        step's evaluation is the final one, after the loop, unless --load_best_model_at_end needs it to choose)."""
        p, last = self.parts, self.config.load_best_model_at_end
        due = self.config.evaluation_due(step, p.steps_per_epoch) if step < p.total_steps else last
        if not (self.config.do_eval and due):
            return None
        with self._aside():  # evaluate() times itself
            return self.evaluate(write_files=False)

    def _export(self, step: int) -> None:
        """The trained model in Hugging Face layout (uploaded by `finish` with --push_to_hub)."""
        best = self.parts.checkpoints.best()
        if best:
            log.info("best checkpoint by eval %s: step %d (%.2f)", self.config.metric_for_best_model, *best)
        self.exported_dir = self.save_model(self.config.export_hf_dir)
        log.info("training done: %d steps in %.1fs; model saved to %s", step, self.train_seconds, self.exported_dir)

    def _side_seconds(self) -> float:
        return sum(self.goodput.seconds[k] for k in ("data_wait", "eval", "checkpoint"))

    @contextlib.contextmanager
    def _aside(self, kind: str | None = None):
        """Work inside the step loop that is not a train step: timed as `kind`, left out of the throughput
        window, and allowed to move data between host and device. The steps already dispatched finish
        first (dispatch runs ahead of the device): they are train time, not this work's."""
        jax.block_until_ready(self.state)
        start = time.perf_counter()
        with jax.transfer_guard("allow"), (self.goodput.timer(kind) if kind else contextlib.nullcontext()):
            yield
        self.reporter.exclude(time.perf_counter() - start)

    def _timed(self, batches):
        """`batches`, the time spent waiting for each counted as data wait."""
        iterator = iter(batches)
        while True:
            with self.goodput.timer("data_wait"):
                item = next(iterator, None)
            if item is None:
                return
            yield item

    def compile_train_steps(self, seq_lens=None) -> dict:
        """Compile the train step for every batch length of the run (or `seq_lens`); the report."""
        compiled, report = run_setup.compile_train_steps(self.parts, seq_lens)
        self.train_steps.update(compiled)
        return report

    # --- evaluation (`evaluator.Evaluator`) ------------------------------------------------------
    def evaluate(self, split: str = "eval", write_files: bool = True) -> dict:
        """Predict and score a split of the current state: "eval" (validation file), "before_training" or
        "predict" (test file, not scored); see `Evaluator.evaluate`. Inside the train loop, the metrics only."""
        return self.evaluator.evaluate(self.state, split, write_files, trained_steps=self.trained_steps,
                                       reporter=self.reporter)

    def evaluate_before_training(self) -> dict:
        """The "before_training" evaluation, of the weights training starts from (on a resumed run too)."""
        return self.evaluator.evaluate_before_training(self.state)

    def logits(self, features: Features):
        """Start/end logits of every window, [windows, max_seq_length], -inf past each batch's length (and the
        no-answer logits [windows] of an answerability head)."""
        return self.parts.predictor.logits(self.state, features)

    def predict(self, examples: Examples, features: Features, nbest: bool = True) -> Answers:
        """Answers for every example, decoded from all its windows (with n-best lists if `nbest`)."""
        return self.evaluator.predict(self.state, examples, features, nbest)

    def answerer(self) -> QuestionAnswerer:
        """Answer ad-hoc questions with the model as it is now (same window and decoding settings)."""
        return self.evaluator.answerer(self.state)

    # --- the run's other outputs -----------------------------------------------------------------
    def finish(self) -> bool:
        """Close the run's logs, write `goodput.json` and, with --push_to_hub, upload the model (after the
        final evaluation). True when this process closed a training run's logs, so that the caller may draw
        them (`jaxqa.report.plots.plot_training_curves`: the report layer, above this one)."""
        if not self.reporter:
            return False
        self.reporter.run_log.close()
        self.reporter = None
        if not sharding.is_main_process():  # process 0 writes the run's files; two writers would race
            return False
        sharding.write_json(self.out_dir / "goodput.json", self.goodput.summary())
        log.info("%s", self.goodput.table())
        self.exporter.push(self.exported_dir)
        return True

    def save_model(self, out_dir: str | Path | None = None) -> Path:
        """The current model in Hugging Face layout (default `output_dir/model`); see `Exporter.save_model`."""
        return self.exporter.save_model(self.state, out_dir)

    # --- what the parts hold, by the names users know ----------------------------------------------
    @property
    def state_step(self) -> int:
        return int(self.state.step)

    @property
    def total_steps(self) -> int:
        return self.parts.total_steps

    @property
    def train_batch(self) -> int:
        return self.parts.train_batch

    @property
    def eval_batch(self) -> int:
        return self.parts.eval_batch

    @property
    def tokenizer(self):
        return self.parts.tokenizer

    @property
    def model_dir(self) -> Path:
        return self.parts.model_dir

    @property
    def train_features(self) -> Features:
        return self.parts.splits["train"].features

    @property
    def eval_examples(self) -> Examples:
        return self.parts.splits["eval"].examples

    @property
    def eval_features(self) -> Features:
        return self.parts.splits["eval"].features

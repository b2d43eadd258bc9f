"""The training loop, and evaluation with the same compiled steps.

The loop only loops: `run_setup` builds its parts, each policy it asks lives in one place — when to
log and what a record holds (`run_log.Reporter`), when to save and what a checkpoint holds
(`checkpoint.CheckpointPolicy`), when to evaluate (`Trainer._evaluation_due`), how a batch reaches
the device (`inference`), when to stop (`preemption.StopRequest`) — and one clock, `goodput`, times
it all. Device work is dispatched asynchronously: the loop waits on the device only when it logs or
saves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path

import jax

from jaxqa import sharding
from jaxqa.config import RunConfig
from jaxqa.data import hub
from jaxqa.data.examples import Examples
from jaxqa.data.features import Features
from jaxqa.models import weights
from jaxqa.report.plots import plot_training_curves
from jaxqa.scoring import evaluation, metrics
from jaxqa.scoring.answer import QuestionAnswerer
from jaxqa.scoring.decode import Answers
from jaxqa.scoring.inference import GivenUp, device_batches
from jaxqa.training import run_setup, throughput
from jaxqa.training.preemption import StopRequest
from jaxqa.training.run_log import Profiler, Reporter, write_json
from jaxqa.training.steps import evaluated_params
from jaxqa.training.train_state import create_train_state

log = logging.getLogger("jaxqa")


class Trainer:
    """One run: `fit` fine-tunes, `evaluate` scores; both reuse the compiled steps."""

    def __init__(self, config: RunConfig, *, mesh=None):
        self.parts = parts = run_setup.set_up_run(config, mesh=mesh)
        self.config, self.mesh, self.state, self.goodput = parts.config, parts.mesh, parts.state, parts.goodput
        self.out_dir = Path(self.config.output_dir)
        self.train_steps: dict[int, object] = {}  # compiled train step per batch length
        self.reporter: Reporter | None = None  # from the start of training to `finish`
        self._give_up_evaluation = None  # in the train loop: whether a stop signal gives up an evaluation
        self.trained_steps: int | None = None  # the last step trained (`fit`); the model may be an earlier one's
        self.exported_dir: Path | None = None  # the trained model, once `fit` saved it
        # A model's saved threshold belongs to its weights: a training run finds its own (`evaluate`).
        self.null_threshold = evaluation.null_threshold(config.null_score_diff_threshold,
                                                        None if config.do_train else parts.model_dir)
        if self.null_threshold.abstains or config.version_2_with_negative or \
                any(split.examples.is_impossible.any() for split in parts.splits.values()):
            log.info("%s", self.null_threshold)

    # --- the loop -----------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train for the configured epochs (from the restored step when resuming); returns the records logged."""
        p, history, step = self.parts, [], self.state_step
        reporter, profile = self._start_training(step)
        train, checkpoints = p.splits["train"], p.checkpoints
        t_start, side_before = time.perf_counter(), self._side_seconds()
        try:
            with StopRequest() as stop, jax.transfer_guard("disallow"):  # no implicit host<->device copies
                self._give_up_evaluation = stop.cuts_short
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
            self._give_up_evaluation = None
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

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, split: str = "eval", write_files: bool = True) -> dict:
        """Predict and score a split: "eval" (validation file), "before_training" (the same, before
        fine-tuning) or "predict" (test file, not scored). With `write_files`, the predictions and
        results (`evaluation.write_outputs`); inside the train loop, the metrics only."""
        with self.goodput.timer("eval"), jax.transfer_guard("allow"):
            start = time.perf_counter()
            data = self.parts.splits["predict" if split == "predict" else "eval"]
            answers = self.predict(data.examples, data.features, nbest=write_files)
            result = {} if split == "predict" else evaluation.score(
                data.examples, answers, metric=self.config.metric, null_score_diff_threshold=self.null_threshold.value)
            if answers.null_odds is not None:  # what predictions.json abstains at
                result["null_score_diff_threshold"] = self.null_threshold.value
            result.update(num_examples=len(data.examples), num_features=len(data.features),
                          eval_seconds=round(time.perf_counter() - start, 2), step=self.state_step)
            if split != "before_training":
                result.update(self.kept())
            if self.reporter and split == "eval":
                self.reporter.eval(result["step"], result)
            if not write_files:
                log.info("step %d %s: %s", result["step"], split, metrics.summary(result))
                return result
            evaluation.write_outputs(self.out_dir, split, data.examples, answers, result)
            if split == "eval":
                evaluation.write_report_page(self.out_dir, data.examples, data.features, result, self.config)
        log.info("%s: %s (%d examples, %.1fs)", split, metrics.summary(result), len(data.examples), result["eval_seconds"])
        if split == "eval" and "best_f1_thresh" in result:
            self._keep_null_threshold(result)
        return result

    def kept(self) -> dict:
        """After --load_best_model_at_end took the model back to an earlier step: {"trained_steps": the
        last step trained, "kept_best_by": the metric that chose it}, which the results of its evaluations
        carry beside their "step" (the kept one), so no reader takes them for the last step's. Else {}."""
        if self.trained_steps is None or self.trained_steps == self.state_step:
            return {}
        return {"trained_steps": self.trained_steps, "kept_best_by": self.config.metric_for_best_model}

    def evaluate_before_training(self) -> dict:
        """The "before_training" evaluation, of the weights training starts from: on a resumed run, whose
        state is a later step's, those weights built again as the run built them (seeded alike)."""
        if self.state_step == 0:
            return self.evaluate("before_training")
        log.info("before training: evaluating the initial weights (the restored model is step %d's)", self.state_step)
        restored = self.state
        initial = create_train_state(self.config, self.model_dir, total_steps=self.total_steps, mesh=self.mesh,
                                     from_pretrained=self.parts.pretrained)
        # the weights only: the evaluation step is compiled for this state's static parts (optimizer, graph)
        self.state = restored.replace(step=initial.step, params=initial.params, ema_params=initial.ema_params)
        del initial
        try:
            return self.evaluate("before_training")
        finally:
            self.state = restored

    def _keep_null_threshold(self, result: dict) -> None:
        """After the final evaluation of a training run on data with unanswerable questions: its best-F1
        threshold saved with the exported model (which that evaluation scored), and used from now on
        (--do_predict) unless --null_score_diff_threshold is given."""
        model_dir = Path(self.config.export_hf_dir or self.out_dir / "model")
        if not self.config.do_train or (sharding.is_main_process() and not model_dir.is_dir()):
            return
        found = evaluation.save_null_threshold(model_dir, result, self.config.validation_file)
        if self.config.null_score_diff_threshold is None:
            self.null_threshold = found
            log.info("%s", found)
        else:
            self.null_threshold = dataclasses.replace(self.null_threshold, abstains=True)
            log.info("best no-answer threshold %g (%s); this run keeps the %s", found.value, found.origin,
                     self.null_threshold)

    def logits(self, features: Features):
        """Start/end logits of every window, [windows, max_seq_length], -inf past each batch's length."""
        return self.parts.predictor.logits(self.state, features)

    def predict(self, examples: Examples, features: Features, nbest: bool = True) -> Answers:
        """Answers for every example, decoded from all its windows (with n-best lists if `nbest`)."""
        return self.parts.predictor.answers(self.state, examples.contexts, features,
                                            null_score_diff_threshold=self._abstaining_threshold(
                                                bool(examples.is_impossible.any())),
                                            n_best_size=self.config.n_best_size if nbest else 0,
                                            give_up=self._give_up_evaluation)

    def _abstaining_threshold(self, unanswerable_data: bool) -> float | None:
        """The no-answer threshold where this run abstains (a v2.0 run, data with unanswerable questions, or
        a model with a saved threshold: evaluated on unanswerable questions, it abstains on any data); None
        (never abstain) otherwise."""
        abstains = self.config.version_2_with_negative or unanswerable_data or self.null_threshold.abstains
        return self.null_threshold.value if abstains else None

    # --- the run's other outputs -----------------------------------------------------------------
    def finish(self) -> Path | None:
        """Close the run's logs, write `goodput.json`, draw `training_curves.png` and, with --push_to_hub,
        upload the model (after the final evaluation); returns the plot's path."""
        if not self.reporter:
            return None
        self.reporter.run_log.close()
        self.reporter = None
        if not sharding.is_main_process():  # process 0 writes the run's files; two writers would race
            return None
        write_json(self.out_dir / "goodput.json", self.goodput.summary())
        log.info("%s", self.goodput.table())
        curves = plot_training_curves(self.out_dir)
        self._push()
        return curves

    def _push(self) -> None:
        """--push_to_hub: the exported model directory, uploaded once it is complete. The final evaluation
        (before `finish`) adds null_threshold.json to it; pushed before that, a SQuAD v2.0 model from the
        Hub would never abstain. Process 0 alone, the one that wrote the directory."""
        if self.parts.push_repo and self.exported_dir and sharding.is_main_process():
            log.info("model uploaded to %s", hub.push(self.config, self.exported_dir, self.parts.push_repo))

    def save_model(self, out_dir: str | Path | None = None) -> Path:
        """The current parameters (their moving average with --ema_decay) as a Hugging Face BertForQuestionAnswering directory (default
        `output_dir/model`): loadable by jaxqa, `QuestionAnswerer` and `transformers`; the run's window settings
        go with it (`weights.SETTINGS_FILE`): it answers in the windows it was trained in."""
        from flax import nnx

        params = nnx.to_pure_dict(sharding.to_host(evaluated_params(self.state)))  # every process takes part
        if not sharding.is_main_process():
            return Path(out_dir or self.out_dir / "model")
        return weights.save_pretrained(params, self.parts.model_config, out_dir or self.out_dir / "model",
                                       self.parts.tokenizer,
                                       {name: getattr(self.config, name) for name in weights.WINDOW_SETTINGS})

    def answerer(self) -> QuestionAnswerer:
        """Answer ad-hoc questions with the model as it is now (same window and decoding settings); it
        abstains as `predict` does on data with unanswerable questions (this run's no-answer threshold)."""
        c = self.config
        return QuestionAnswerer(self.state.graphdef, evaluated_params(self.state), self.parts.tokenizer,
                                max_seq_length=c.max_seq_length, doc_stride=c.doc_stride,
                                max_query_length=c.max_query_length, max_answer_length=c.max_answer_length,
                                batch_size=self.parts.eval_batch, n_best_size=c.n_best_size,
                                null_score_diff_threshold=self._abstaining_threshold(False), mesh=self.mesh)

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

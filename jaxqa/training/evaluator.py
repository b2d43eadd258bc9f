"""A run's evaluations: predict and score a split with the run's compiled evaluation step, for the state
the Trainer hands in, under the run's no-answer threshold (the final evaluation of a training run finds
its own and saves it with the exported model).

Apart from the loop so that the loop reads as a loop: the Trainer asks "evaluate this state" and gets
the metrics; what a result holds and which files an evaluation writes are decided here.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import jax

from jaxqa import sharding
from jaxqa.data.examples import Examples
from jaxqa.data.features import Features
from jaxqa.scoring import evaluation, metrics
from jaxqa.scoring.answer import QuestionAnswerer
from jaxqa.scoring.decode import Answers
from jaxqa.training.steps import evaluated_params
from jaxqa.training.train_state import create_train_state

log = logging.getLogger("jaxqa")


class Evaluator:
    """Predicts and scores the run's splits ("eval", "before_training", "predict") for a given state."""

    def __init__(self, parts):
        self.parts = parts
        self.config = config = parts.config
        self.give_up = None  # in the train loop: whether a stop signal gives up an evaluation
        self._last_step_answers = None  # (state, answers) of the loop's evaluation of the last step
        # A model's saved threshold belongs to its weights: a training run finds its own (`evaluate`).
        self.null_threshold = evaluation.null_threshold(config.null_score_diff_threshold,
                                                        None if config.do_train else parts.model_dir)
        if self.null_threshold.abstains or config.version_2_with_negative or \
                any(split.examples.is_impossible.any() for split in parts.splits.values()):
            log.info("%s", self.null_threshold)

    def evaluate(self, state, split: str = "eval", write_files: bool = True, *, trained_steps: int | None = None,
                 reporter=None) -> dict:
        """Predict and score a split: "eval" (validation file), "before_training" (the same, before
        fine-tuning) or "predict" (test file, not scored). With `write_files`, the predictions and
        results (`evaluation.write_outputs`); inside the train loop, the metrics only. An "eval" result
        goes to `reporter` (metrics.jsonl) when there is one."""
        out_dir = Path(self.config.output_dir)
        with self.parts.goodput.timer("eval"), jax.transfer_guard("allow"):
            start = time.perf_counter()
            data = self.parts.splits["predict" if split == "predict" else "eval"]
            answers = self._answers(state, split, data, write_files)
            result = {} if split == "predict" else evaluation.score(
                data.examples, answers, metric=self.config.metric, null_score_diff_threshold=self.null_threshold.value)
            if answers.null_odds is not None:  # what predictions.json abstains at
                result["null_score_diff_threshold"] = self.null_threshold.value
            result.update(num_examples=len(data.examples), num_features=len(data.features),
                          eval_seconds=round(time.perf_counter() - start, 2), step=int(state.step))
            if split != "before_training":
                result.update(self.kept(state, trained_steps))
            if reporter and split == "eval":
                reporter.eval(result["step"], result)
            if not write_files:
                log.info("step %d %s: %s", result["step"], split, metrics.summary(result))
                return result
            evaluation.write_outputs(out_dir, split, data.examples, answers, result)
            if split == "eval":
                evaluation.write_windows(out_dir, data.examples, data.features)  # eval_report.html: cli.run draws it
        log.info("%s: %s (%d examples, %.1fs)", split, metrics.summary(result), len(data.examples), result["eval_seconds"])
        if split == "eval" and "best_f1_thresh" in result:
            self._keep_null_threshold(result)
        return result

    def _answers(self, state, split: str, data, write_files: bool) -> Answers:
        """The split's answers. The loop's evaluation of the last step (--load_best_model_at_end has it) keeps
        them, n-best lists too, and the final evaluation of that same state writes them instead of predicting
        again: a recipe run evaluated its last step twice."""
        kept, self._last_step_answers = self._last_step_answers, None
        if split == "eval" and kept is not None and kept[0] is state:
            log.info("final evaluation: the answers of step %d's evaluation in the train loop", int(state.step))
            return kept[1]
        last_step = split == "eval" and not write_files and int(state.step) == self.parts.total_steps
        answers = self.predict(state, data.examples, data.features, nbest=write_files or last_step)
        if last_step:
            self._last_step_answers = (state, answers)
        return answers

    def kept(self, state, trained_steps: int | None) -> dict:
        """After --load_best_model_at_end took the model back to an earlier step: {"trained_steps": the
        last step trained, "kept_best_by": the metric that chose it}, which the results of its evaluations
        carry beside their "step" (the kept one), so no reader takes them for the last step's. Else {}."""
        if trained_steps is None or trained_steps == int(state.step):
            return {}
        return {"trained_steps": trained_steps, "kept_best_by": self.config.metric_for_best_model}

    def evaluate_before_training(self, state) -> dict:
        """The "before_training" evaluation, of the weights training starts from: on a resumed run, whose
        `state` is a later step's, those weights built again as the run built them (seeded alike)."""
        if int(state.step) == 0:
            return self.evaluate(state, "before_training")
        log.info("before training: evaluating the initial weights (the restored model is step %d's)", int(state.step))
        initial = create_train_state(self.config, self.parts.model_dir, total_steps=self.parts.total_steps,
                                     mesh=self.parts.mesh, from_pretrained=self.parts.pretrained)
        # the weights only: the evaluation step is compiled for this state's static parts (optimizer, graph)
        initial = state.replace(step=initial.step, params=initial.params, ema_params=initial.ema_params)
        return self.evaluate(initial, "before_training")

    def _keep_null_threshold(self, result: dict) -> None:
        """After the final evaluation of a training run on data with unanswerable questions: its best-F1
        threshold saved with the exported model (which that evaluation scored), and used from now on
        (--do_predict) unless --null_score_diff_threshold is given."""
        model_dir = Path(self.config.export_hf_dir or Path(self.config.output_dir) / "model")
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

    def predict(self, state, examples: Examples, features: Features, nbest: bool = True) -> Answers:
        """Answers for every example, decoded from all its windows (with n-best lists if `nbest`)."""
        return self.parts.predictor.answers(state, examples.contexts, features,
                                            null_score_diff_threshold=self._abstaining_threshold(
                                                bool(examples.is_impossible.any())),
                                            n_best_size=self.config.n_best_size if nbest else 0,
                                            give_up=self.give_up)

    def _abstaining_threshold(self, unanswerable_data: bool) -> float | None:
        """The no-answer threshold where this run abstains (a v2.0 run, data with unanswerable questions, or
        a model with a saved threshold: evaluated on unanswerable questions, it abstains on any data); None
        (never abstain) otherwise."""
        abstains = self.config.version_2_with_negative or unanswerable_data or self.null_threshold.abstains
        return self.null_threshold.value if abstains else None

    def answerer(self, state) -> QuestionAnswerer:
        """Answer ad-hoc questions with `state`'s model (same window and decoding settings); it abstains as
        `predict` does on data with unanswerable questions (this run's no-answer threshold)."""
        c = self.config
        return QuestionAnswerer(state.graphdef, evaluated_params(state), self.parts.tokenizer,
                                max_seq_length=c.max_seq_length, doc_stride=c.doc_stride,
                                max_query_length=c.max_query_length, max_answer_length=c.max_answer_length,
                                batch_size=self.parts.eval_batch, n_best_size=c.n_best_size,
                                null_score_diff_threshold=self._abstaining_threshold(False), mesh=self.parts.mesh)

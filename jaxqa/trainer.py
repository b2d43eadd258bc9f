"""The loop that wires data, state, steps, decoding and metrics into a run.

Everything with side effects lives here (I/O, progress, logging); the math is in `steps`.
Device work is dispatched asynchronously: the loop only waits on the device when it logs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxqa import batching, decode, metrics, sharding, weights
from jaxqa.config import RunConfig
from jaxqa.data import Examples, load_examples
from jaxqa.errors import ConfigError, DataError
from jaxqa.features import Features, check_window, load_tokenizer, tokenize
from jaxqa.train_state import TrainState, create_train_state, eval_step, train_step

log = logging.getLogger("jaxqa")


def select_devices(accelerator: str) -> list:
    """Devices of the requested backend, or a clear error when that backend is absent."""
    if accelerator == "auto":
        return jax.devices()
    try:
        return jax.devices(accelerator)
    except RuntimeError:
        available = sorted({d.platform for d in jax.devices()})
        hint = {"gpu": "install jax with CUDA support (pip install 'jaxqa[gpu]')",
                "tpu": "run on a TPU VM with jax[tpu] installed (pip install 'jaxqa[tpu]')"}.get(accelerator, "")
        raise ConfigError(f"--accelerator {accelerator}: no {accelerator.upper()} is available to JAX "
                          f"(found: {', '.join(available)}); {hint} or use --accelerator cpu") from None


def write_json(path: Path, obj) -> None:
    """Write then rename, so a reader never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def prefetch(items, size: int = 2):
    """Run the producer `items` (host gathering + device_put) in a thread, `size` batches ahead."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    done = object()

    def produce():
        try:
            for item in items:
                buffer.put(item)
        except BaseException as err:  # re-raised in the consumer
            buffer.put(err)
        buffer.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


class Trainer:
    """One run: `fit` fine-tunes, `evaluate` scores; both reuse the compiled steps."""

    def __init__(self, config: RunConfig, *, mesh=None):
        self.config = config.validate()
        self.mesh = mesh or sharding.make_mesh(select_devices(config.accelerator))
        self.out_dir = Path(config.output_dir)
        self.model_dir = weights.resolve_model_dir(config.model_name_or_path, config.cache_dir)
        self.tokenizer = load_tokenizer(config.tokenizer_name or self.model_dir, config.cache_dir)
        check_window(config.max_seq_length, config.doc_stride, config.max_query_length, self.tokenizer)
        self.n_data = self.mesh.shape["data"]
        self.train_batch = config.per_device_train_batch_size * self.n_data
        self.eval_batch = config.per_device_eval_batch_size * self.n_data
        self.train_examples = self.eval_examples = None
        # Load and tokenise every file before compiling anything: bad data fails in seconds.
        if config.do_train:
            self.train_examples, self.train_features = self._load(config.train_file, config.max_train_samples)
        if config.do_eval:
            self.eval_examples, self.eval_features = self._load(config.validation_file, config.max_eval_samples)
        self.total_steps = self._total_steps() if config.do_train else 1
        self.state: TrainState = create_train_state(config, self.model_dir, total_steps=self.total_steps,
                                                    mesh=self.mesh)
        state_sharding = sharding.state_shardings(self.state, self.mesh)
        batch_sharding = sharding.batch_sharding(self.mesh)
        self._train_step = jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                                   out_shardings=(state_sharding, sharding.replicated(self.mesh)),
                                   donate_argnums=0)
        self._eval_step = jax.jit(eval_step, in_shardings=(state_sharding, batch_sharding),
                                  out_shardings=batch_sharding)

    def _load(self, path: str, limit: int | None) -> tuple[Examples, Features]:
        t0 = time.perf_counter()
        examples = load_examples(path)
        if limit is not None:
            examples = examples.select(range(min(limit, len(examples))))
        c = self.config
        features = tokenize(examples, self.tokenizer, max_seq_length=c.max_seq_length,
                            doc_stride=c.doc_stride, max_query_length=c.max_query_length)
        log.info("%s: %d examples -> %d features (%.1fs)", path, len(examples), len(features),
                 time.perf_counter() - t0)
        return examples, features

    def _total_steps(self) -> int:
        per_epoch = len(self._plan(self.train_features, self.train_batch, epoch=0))
        return max(1, math.ceil(per_epoch * self.config.num_train_epochs))

    def _plan(self, features: Features, batch_size: int, epoch: int | None) -> list[batching.Batch]:
        rng = None if epoch is None else np.random.default_rng([self.config.seed, epoch])
        return batching.plan_batches(features.lengths, batch_size, max_seq_length=self.config.max_seq_length,
                                     bucket_width=self.config.bucket, rng=rng)

    def _device_batches(self, arrays: dict[str, np.ndarray], plan):
        return prefetch(sharding.put_batch(batching.gather(arrays, b), self.mesh) for b in plan)

    def fit(self) -> list[dict]:
        """Train for the configured epochs; returns the logged metrics."""
        c, history = self.config, []
        steps_per_epoch = len(self._plan(self.train_features, self.train_batch, epoch=0))
        log.info("training: %d features, global batch %d, %d steps/epoch, %d steps", len(self.train_features),
                 self.train_batch, steps_per_epoch, self.total_steps)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        step = int(self.state.step)
        bar = tqdm(total=self.total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                   disable=None)
        window_start, window_examples, t_start = time.perf_counter(), 0, time.perf_counter()
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as metrics_file:
            for epoch in range(step // steps_per_epoch, math.ceil(self.total_steps / steps_per_epoch)):
                plan = self._plan(self.train_features, self.train_batch, epoch)[step % steps_per_epoch:]
                plan = plan[: self.total_steps - step]
                for batch_plan, batch in zip(plan, self._device_batches(self.train_features.train_arrays(), plan)):
                    self.state, step_metrics = self._train_step(self.state, batch)
                    step += 1
                    window_examples += int((batch_plan.rows >= 0).sum())
                    bar.update(1)
                    if step % c.logging_steps == 0 or step == self.total_steps:
                        record = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
                        if not math.isfinite(record["loss"]):
                            raise FloatingPointError(f"step {step}: the loss is {record['loss']}; lower "
                                                     "--learning_rate or check the data")
                        now = time.perf_counter()
                        record.update(step=step, epoch=round(step / steps_per_epoch, 3),
                                      examples_per_s=window_examples / (now - window_start))
                        window_start, window_examples = now, 0
                        history.append(record)
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['learning_rate']:.2e}",
                                        ex_s=f"{record['examples_per_s']:.1f}")
                        if bar.disable:
                            log.info("step %d/%d loss %.4f lr %.3g %.1f ex/s", step, self.total_steps,
                                     record["loss"], record["learning_rate"], record["examples_per_s"])
        bar.close()
        jax.block_until_ready(self.state)
        self.train_seconds = time.perf_counter() - t_start
        log.info("training done: %d steps in %.1fs", step, self.train_seconds)
        return history

    def predict(self, examples: Examples, features: Features) -> dict[str, str]:
        """Answer text per example id, decoded from every window of every example."""
        plan = self._plan(features, self.eval_batch, epoch=None)
        outputs = [self._eval_step(self.state, batch)
                   for batch in self._device_batches(features.model_inputs(), plan)]
        seq = self.config.max_seq_length
        start = np.full((len(features), seq), -np.inf, np.float32)
        end = np.full((len(features), seq), -np.inf, np.float32)
        for batch_plan, (s, e) in zip(plan, outputs):
            real = batch_plan.rows >= 0
            rows = batch_plan.rows[real]
            start[rows, : batch_plan.seq_len] = np.asarray(s)[real]
            end[rows, : batch_plan.seq_len] = np.asarray(e)[real]
        texts = decode.decode(examples.contexts, start, end, features.offsets, features.example_index,
                              max_answer_length=self.config.max_answer_length)
        return dict(zip(examples.ids, texts))

    def evaluate(self, tag: str = "eval") -> dict:
        """Score the validation set; writes predictions.json and eval_results.json."""
        if self.eval_examples is None:
            raise DataError("evaluation needs --validation_file")
        t0 = time.perf_counter()
        predictions = self.predict(self.eval_examples, self.eval_features)
        gold = dict(zip(self.eval_examples.ids, self.eval_examples.answer_texts))
        result = metrics.squad_v1(predictions, gold)
        result.update(num_examples=len(self.eval_examples), num_features=len(self.eval_features),
                      eval_seconds=round(time.perf_counter() - t0, 2), step=int(self.state.step))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        suffix = "" if tag == "eval" else f"_{tag}"
        write_json(self.out_dir / f"predictions{suffix}.json", predictions)
        write_json(self.out_dir / f"eval_results{suffix}.json", result)
        log.info("%s: exact_match %.2f f1 %.2f (%d examples, %.1fs)", tag, result["exact_match"], result["f1"],
                 result["num_examples"], result["eval_seconds"])
        return result

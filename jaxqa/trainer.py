"""The loop that wires data, state, steps, decoding and metrics into a run.

Everything with side effects lives here (I/O, progress, logging); the math is in `steps`.
Device work is dispatched asynchronously: the loop only waits on the device when it logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import queue
import signal
import threading
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

import jaxqa
from jaxqa import (
    atomic,
    batching,
    checkpoint,
    compilation,
    decode,
    feature_cache,
    hub,
    metrics,
    sharding,
    throughput,
    weights,
)
from jaxqa.answer import QuestionAnswerer, scatter_logits
from jaxqa.config import RunConfig
from jaxqa.data import REPORT_IDS, Examples, describe, file_report, load_examples
from jaxqa.errors import ConfigError, Interrupted, TrainingError
from jaxqa.features import Features, check_window, checked_features, load_tokenizer
from jaxqa.run_log import RunLog, plot_curves
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


def write_text(path: Path, text: str) -> None:
    """Write then rename, so a reader never sees a half-written file. Process 0 only: in a
    multi-host run every process computes the same outputs."""
    if sharding.is_main_process():
        atomic.write_text(path, text)


def write_json(path: Path, obj) -> None:
    if sharding.is_main_process():
        atomic.write_json(path, obj)


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


class StopRequest:
    """SIGTERM/SIGINT set a flag that the loop checks after each step, so the step in flight finishes and
    a checkpoint is written before the process exits. A second signal acts at once, as usual."""

    def __enter__(self):
        self.signal, self.previous = None, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name
        signal.signal(signum, self.previous[signum])
        log.warning("%s received: finishing the current step and saving a checkpoint", self.signal)

    def requested(self, step: int) -> bool:
        if self.signal:
            return True
        if jax.process_count() > 1:  # all hosts stop at the same step when one is preempted
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return False

    def __exit__(self, *_exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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


class Trainer:
    """One run: `fit` fine-tunes, `evaluate` scores; both reuse the compiled steps."""

    def __init__(self, config: RunConfig, *, mesh=None):
        config.validate()
        self.goodput = throughput.Goodput(jaxqa.LAUNCHED)
        if compilation.cache_dir_for(config):
            compilation.enable_cache(compilation.cache_dir_for(config))
        sharding.initialize_distributed(config.coordinator_address, config.num_processes, config.process_id)
        if not sharding.is_main_process():
            log.setLevel(logging.WARNING)  # process 0 tells the story
        if config.dataset_name:
            config = dataclasses.replace(config, **hub.dataset_files(config, Path(config.output_dir)))
        self.config = config
        self.push_repo = hub.check_push(config) if config.push_to_hub else None
        for note in config.inert_flags():
            log.info("%s", note)
        self.mesh = mesh or sharding.make_mesh(select_devices(config.accelerator), config.mesh)
        self.out_dir = Path(config.output_dir)
        # --config_name without --model_name_or_path: a model of that shape, randomly initialised.
        self.pretrained = not (config.config_name and not config.model_name_or_path)
        source = config.model_name_or_path
        if not self.pretrained:
            config_path = Path(config.config_name)
            source = str(config_path.parent if config_path.is_file() else config_path)
        self.model_dir = weights.resolve_model_dir(source, config.cache_dir, revision=config.model_revision,
                                                   token=config.token)
        self.tokenizer = load_tokenizer(config.tokenizer_name or self.model_dir, config.cache_dir)
        check_window(config.max_seq_length, config.doc_stride, config.max_query_length, self.tokenizer,
                     weights.load_config(self.model_dir))
        # Global batch = per-device batch x the devices it is split over (data x fsdp).
        self.train_batch = (config.per_device_train_batch_size * sharding.batch_size_multiplier(self.mesh)
                            * config.gradient_accumulation_steps)
        self.eval_batch = config.per_device_eval_batch_size * sharding.batch_size_multiplier(self.mesh)
        self.train_examples = self.eval_examples = self.predict_examples = None
        self.skipped: list[dict] = []
        self.data_report: dict[str, dict] = {}  # per file: examples, skipped records by kind (data_report.json)
        # Load and tokenise every file before compiling anything: bad data fails in seconds.
        if config.do_train:
            self.train_examples, self.train_features = self._load(config.train_file, config.max_train_samples,
                                                                  training=True)
        if config.do_eval:
            self.eval_examples, self.eval_features = self._load(config.validation_file, config.max_eval_samples)
        if config.do_predict:
            self.predict_examples, self.predict_features = self._load(config.test_file, config.max_predict_samples,
                                                                      require_answers=False)
        if self.skipped or any(r["problems"] or "answers_in_no_window" in r for r in self.data_report.values()):
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / "data_report.json", self.data_report)
        if self.skipped:
            write_text(self.out_dir / "skipped_records.jsonl",
                       "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in self.skipped))
        self.total_steps = self._total_steps() if config.do_train else 1
        self.state: TrainState = create_train_state(config, self.model_dir, total_steps=self.total_steps,
                                                    mesh=self.mesh, from_pretrained=self.pretrained)
        state_sharding = sharding.state_shardings(self.state, self.mesh)
        batch_sharding = sharding.batch_sharding(self.mesh)
        self._train_step = sharding.jit(train_step, self.mesh, in_shardings=(state_sharding, batch_sharding),
                                        out_shardings=(state_sharding, sharding.replicated(self.mesh)),
                                        donate_argnums=0)
        # Logits come back whole on every process (decoding runs on the host of each).
        self._eval_step = sharding.jit(eval_step, self.mesh, in_shardings=(state_sharding, batch_sharding),
                                       out_shardings=sharding.replicated(self.mesh))
        self.checkpointer = self._open_checkpoints() if config.do_train and not config.dry_run else None
        self.run_log: RunLog | None = None
        self.train_steps: dict[int, object] = {}  # compiled train step per batch length
        self.goodput.seconds["startup"] = time.perf_counter() - self.goodput.launched

    def _abstract_batches(self, seq_lens) -> dict[int, dict]:
        """Shape/dtype/sharding of a global train batch of each length (what the step compiles for)."""
        arrays = self.train_features.train_arrays() if self.train_features is not None else None
        example = batching.gather(arrays, batching.Batch(np.zeros(1, np.int64), 1))
        batch_sharding = sharding.batch_sharding(self.mesh)
        return {n: {k: jax.ShapeDtypeStruct((self.train_batch, n)[:v.ndim], v.dtype, sharding=batch_sharding)
                    for k, v in example.items()} for n in seq_lens}

    # Settings that only say where outputs go and when to log or save: not part of the traced step.
    _NOT_IN_PROGRAM = ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "compilation_cache_dir",
                       "feature_cache_dir", "overwrite_cache", "logging_steps", "save_steps", "save_total_limit",
                       "eval_steps", "dry_run", "profile_steps")

    def _program_settings(self) -> dict:
        """The run config minus _NOT_IN_PROGRAM: what names a saved train-step program."""
        settings = dataclasses.asdict(self.config)
        return {k: v for k, v in settings.items() if k not in self._NOT_IN_PROGRAM}

    def compile_train_steps(self, seq_lens=None) -> dict:
        """Compile the train step ahead of time for every batch length of the run (or `seq_lens`) and
        check the largest fits the device; returns the compile and memory report."""
        if seq_lens is None:
            seq_lens = sorted({b.seq_len for b in self._plan(self.train_features, self.train_batch, epoch=0)})
        abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                                      self.state)
        with self.goodput.timer("compile"):
            cache_dir = compilation.cache_dir_for(self.config)
            compiled, report = compilation.compile_all(
                self._train_step, abstract_state, self._abstract_batches(seq_lens),
                program_dir=Path(cache_dir) / "programs" if cache_dir else None,
                identity=json.dumps([self._program_settings(), self.total_steps,  # (the LR schedule)
                                     (Path(self.model_dir) / "config.json").read_text(encoding="utf-8")],
                                    sort_keys=True, default=str))
        self.train_steps.update(compiled)
        device = self.local_device
        report.update(seq_lens=list(compiled), memory=compilation.memory_needed(compiled[max(compiled)]),
                      capacity_bytes=compilation.device_capacity(device))
        log.info("compiled the train step for %d batch shape(s) in %.1fs (persistent cache: %d hit(s), %d miss(es); "
                 "%d traced, the rest loaded from saved programs); largest step needs %s", report["programs"],
                 report["seconds"], report["cache_hits"], report["cache_misses"], report["traced"], compilation.format_memory(report["memory"], report["capacity_bytes"]))
        compilation.check_fits(report["memory"], report["capacity_bytes"],
                               f"a train step of {self.train_batch} x {max(compiled)} tokens")
        sharding.wait_for_all_processes("compiled")
        return report

    def _open_checkpoints(self) -> checkpoint.Checkpointer:
        """The run's checkpoint manager; restores the state when resuming, refuses to clobber another run."""
        c = self.config
        checkpointer = checkpoint.Checkpointer(self.out_dir, keep=c.save_total_limit,
                                               best_metric=c.metric_for_best_model)
        if c.resume_from_checkpoint:
            source, step = self._resume_source(checkpointer)
            state, meta = source.restore(self.state, step)
            if source is not checkpointer:
                source.close()
            if state is None:
                log.warning("--resume_from_checkpoint %s: no checkpoint in %s yet; starting from step 0",
                            c.resume_from_checkpoint, source.directory)
            else:
                self._check_resumable(meta, source.directory)
                self.state = state
                log.info("resumed from %s/%d: step %d of %d (epoch %d, batch %d)", source.directory, meta["step"],
                         meta["step"], self.total_steps, meta["epoch"], meta["batch_in_epoch"])
        elif checkpointer.steps():
            if not c.overwrite_output_dir:
                raise ConfigError(f"--output_dir {self.out_dir} already holds checkpoints of a run (newest: step "
                                  f"{checkpointer.steps()[-1]}); pass --resume_from_checkpoint auto to continue it, "
                                  "--overwrite_output_dir to start afresh, or choose another --output_dir")
            checkpointer.delete_all()
            checkpointer = checkpoint.Checkpointer(self.out_dir, keep=c.save_total_limit,
                                                   best_metric=c.metric_for_best_model)
        return checkpointer

    def _resume_source(self, own: checkpoint.Checkpointer) -> tuple[checkpoint.Checkpointer, int | None]:
        """(manager, step or None for the newest) named by --resume_from_checkpoint."""
        value = self.config.resume_from_checkpoint
        if value == "auto":
            return own, None
        path = Path(value).absolute()
        if path.name.isdigit() and path.parent.name == checkpoint.CHECKPOINT_SUBDIR and path.is_dir():
            run_dir, step = path.parent.parent, int(path.name)
        elif (path / checkpoint.CHECKPOINT_SUBDIR).is_dir():
            run_dir, step = path, None
        else:
            raise ConfigError(f"--resume_from_checkpoint {value}: not a checkpoint (expected 'auto', "
                              f"OUTPUT_DIR/{checkpoint.CHECKPOINT_SUBDIR}/STEP or an output dir holding "
                              f"{checkpoint.CHECKPOINT_SUBDIR}/)")
        if run_dir == self.out_dir.absolute():
            return own, step
        return checkpoint.Checkpointer(run_dir, keep=None, best_metric=None), step

    def _check_resumable(self, meta: dict, where: Path) -> None:
        saved, now = meta.get("identity", {}), checkpoint.run_identity(self.config)
        changed = [f"--{k} {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k]]
        if changed:
            raise ConfigError(f"cannot resume from {where}: settings differ from that run ({'; '.join(changed[:4])}); "
                              "rerun with the same settings, or pass --overwrite_output_dir to start afresh")
        if meta.get("num_train_features") != len(self.train_features):
            raise ConfigError(f"cannot resume from {where}: that run had {meta.get('num_train_features')} training "
                              f"features, this one {len(self.train_features)} (the training data or tokenizer "
                              "changed); use the same data, or --overwrite_output_dir to start afresh")

    def _load(self, path: str, limit: int | None, require_answers: bool = True,
              training: bool = False) -> tuple[Examples, Features]:
        t0 = time.perf_counter()
        c = self.config
        examples = load_examples(path, require_answers=require_answers, on_bad_record=c.on_bad_record)
        if limit is not None:
            examples = examples.select(range(min(limit, len(examples))))
        cache_dir = feature_cache.cache_dir_for(c)
        examples, features = checked_features(
            examples, self.tokenizer, training=training, on_bad_record=c.on_bad_record,
            max_seq_length=c.max_seq_length, doc_stride=c.doc_stride, max_query_length=c.max_query_length,
            tokenize_fn=lambda ex, tok, **window: feature_cache.cached_tokenize(
                ex, tok, cache_dir, overwrite=c.overwrite_cache, **window)[0])
        self.data_report[path] = report = file_report(examples)
        if examples.skipped:
            self.skipped += [{"file": path, **s} for s in examples.skipped]
            log.warning("%s: skipped %d bad record(s): %s (listed in %s), e.g. %s", path, len(examples.skipped),
                        describe(report["problems"]), self.out_dir / "skipped_records.jsonl",
                        examples.skipped[0]["problem"])
        if examples.unlabelled:
            log.warning("%s: %d answer(s) lie in no window whole and train as 'no answer' (e.g. %s); a larger "
                        "--max_seq_length would hold them", path, len(examples.unlabelled),
                        ", ".join(examples.unlabelled[:REPORT_IDS]))
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
        """Global device batches; each process gathers only the rows its devices hold."""
        def put(b: batching.Batch):
            mine = dataclasses.replace(b, rows=b.rows[sharding.local_rows(self.mesh, len(b.rows))])
            return sharding.put_batch(batching.gather(arrays, mine), self.mesh, len(b.rows))

        return prefetch(put(b) for b in plan)

    def fit(self) -> list[dict]:
        """Train for the configured epochs (from the restored step when resuming); returns the logged metrics."""
        c, history = self.config, []
        steps_per_epoch = len(self._plan(self.train_features, self.train_batch, epoch=0))
        log.info("training: %d features, global batch %d, %d steps/epoch, %d steps", len(self.train_features),
                 self.train_batch, steps_per_epoch, self.total_steps)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        step = int(self.state.step)
        if not self.train_steps:
            self.compile_train_steps()
        peak, source = throughput.device_peak(self.local_device, c.dtype)
        if peak:
            log.info("utilisation (mfu) against %.1f TFLOP/s per device (%s)", peak / 1e12, source)
        self.run_log = run_log = RunLog(self.out_dir, step, enabled=sharding.is_main_process())
        bar = tqdm(total=self.total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                   disable=None if sharding.is_main_process() else True)
        self.window = throughput.Window(weights.load_config(self.model_dir), peak, self.mesh.size)
        profile = Profiler(c.profile_steps, self.out_dir / "profile")
        t_start, side_before = time.perf_counter(), self._side_seconds()
        log.info("first train step at %.1fs after launch", t_start - self.goodput.launched)
        try:
            with StopRequest() as stop, jax.transfer_guard("disallow"):  # no implicit host<->device copies
                for epoch in range(step // steps_per_epoch, math.ceil(self.total_steps / steps_per_epoch)):
                    plan = self._plan(self.train_features, self.train_batch, epoch)[step % steps_per_epoch:]
                    plan = plan[: self.total_steps - step]
                    batches = self._timed(self._device_batches(self.train_features.train_arrays(), plan))
                    for batch_plan, batch in zip(plan, batches):
                        profile.before(step)
                        self.state, step_metrics = self.train_steps[batch_plan.seq_len](self.state, batch)
                        step += 1
                        self.window.add(batch_plan, self.train_features.lengths)
                        bar.update(1)
                        if step % c.logging_steps == 0 or step == self.total_steps:
                            history.append(self._log(step, step / steps_per_epoch, step_metrics, run_log, bar))
                        evaluation = None
                        if c.do_eval and c.eval_steps and step % c.eval_steps == 0 and step < self.total_steps:
                            with self._aside():  # evaluate() times itself
                                evaluation = self.evaluate(write_files=False)
                        with jax.transfer_guard("allow"):
                            stopping = stop.requested(step)
                        if evaluation or stopping or step % c.save_steps == 0 or step == self.total_steps:
                            with self._aside("checkpoint"):
                                self._save(step, steps_per_epoch, step_metrics, evaluation)
                        if stopping:
                            self.checkpointer.wait()
                            raise Interrupted(
                                f"stopped by {stop.signal or 'preemption'} at step {step}/{self.total_steps}; "
                                f"checkpoint saved in {self.checkpointer.directory}/{step}. To continue, run the "
                                "same command with --resume_from_checkpoint auto")
        finally:
            profile.stop()
            bar.close()
            run_log.flush()
            with self.goodput.timer("checkpoint"):
                self.checkpointer.wait()
        self.train_seconds = time.perf_counter() - t_start
        self.goodput.seconds["train_steps"] += self.train_seconds - (self._side_seconds() - side_before)
        best = self.checkpointer.best()
        if best:
            log.info("best checkpoint by eval %s: step %d (%.2f)", c.metric_for_best_model, *best)
        model_dir = self.save_model(c.export_hf_dir)
        log.info("training done: %d steps in %.1fs; model saved to %s", step, self.train_seconds, model_dir)
        if self.push_repo:
            log.info("model uploaded to %s", hub.push(c, model_dir, self.push_repo))
        return history

    def _side_seconds(self) -> float:
        return sum(self.goodput.seconds[k] for k in ("data_wait", "eval", "checkpoint"))

    @contextlib.contextmanager
    def _aside(self, kind: str | None = None):
        """Work inside the step loop that is not a train step: timed as `kind`, left out of the throughput
        window, and allowed to move data between host and device."""
        start = time.perf_counter()
        with jax.transfer_guard("allow"), (self.goodput.timer(kind) if kind else contextlib.nullcontext()):
            yield
        self.window.exclude(time.perf_counter() - start)

    def _timed(self, batches):
        """`batches`, the time spent waiting for each counted as data wait."""
        iterator = iter(batches)
        while True:
            with self.goodput.timer("data_wait"):
                item = next(iterator, None)
            if item is None:
                return
            yield item

    @property
    def local_device(self):
        """This process's first device on the mesh (on other hosts' devices nothing can be queried)."""
        return next(d for d in self.mesh.devices.flat if d.process_index == jax.process_index())

    @property
    def state_step(self) -> int:
        return int(self.state.step)

    def finish(self) -> Path | None:
        """Close the run's logs, write `goodput.json` and draw `training_curves.png` (after the final
        evaluation); returns the plot's path."""
        if not self.run_log:
            return None
        self.run_log.close()
        self.run_log = None
        if not sharding.is_main_process():  # process 0 writes the run's files; two writers would race
            return None
        write_json(self.out_dir / "goodput.json", self.goodput.summary())
        log.info("%s", self.goodput.table())
        return plot_curves(self.out_dir)

    def _save(self, step: int, steps_per_epoch: int, step_metrics, evaluation: dict | None) -> None:
        """An asynchronous checkpoint of this step, never of a diverged state (the one host sync at saves)."""
        loss, params_finite = jax.device_get((step_metrics["loss"], step_metrics["params_finite"]))
        if not (math.isfinite(loss) and params_finite):
            raise self._diverged(step, float(loss))
        meta = {"step": step, "epoch": step // steps_per_epoch, "batch_in_epoch": step % steps_per_epoch,
                "steps_per_epoch": steps_per_epoch, "num_train_features": len(self.train_features),
                "identity": checkpoint.run_identity(self.config), "eval": evaluation}
        self.checkpointer.save(self.state, meta, metrics=evaluation)

    def _diverged(self, step: int, loss: float) -> TrainingError:
        self.checkpointer.wait()
        steps = self.checkpointer.steps()
        kept = (f"the last good checkpoint is {self.checkpointer.directory}/{steps[-1]}" if steps
                else "no checkpoint was written")
        what = f"the loss is {loss}" if not math.isfinite(loss) else "the parameters became NaN/inf"
        return TrainingError(f"step {step}: {what}; training stopped ({kept}). Lower --learning_rate "
                             "(or raise --warmup_ratio) and check the data")

    def _log(self, step: int, epoch: float, step_metrics, run_log: RunLog, bar) -> dict:
        """The one device->host transfer of the loop: metrics of the latest step, every logging_steps."""
        record = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        params_finite = record.pop("params_finite")
        if not (math.isfinite(record["loss"]) and params_finite):
            raise self._diverged(step, record["loss"])
        record.update(step=step, epoch=round(epoch, 3), **self.window.rates())
        run_log.train(record)
        mfu = f" mfu {100 * record['mfu']:.1f}%" if "mfu" in record else ""
        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['learning_rate']:.2e}",
                        ex_s=f"{record['examples_per_s']:.1f}")
        if bar.disable:  # no terminal: the log carries the progress
            log.info("step %d/%d loss %.4f lr %.3g %.1f ex/s %.0f tok/s %.3f TFLOP/s%s", step, self.total_steps,
                     record["loss"], record["learning_rate"], record["examples_per_s"], record["tokens_per_s"],
                     record["model_tflops"], mfu)
        return record

    def save_model(self, out_dir: str | Path | None = None) -> Path:
        """The current parameters as a Hugging Face BertForQuestionAnswering directory (default
        `output_dir/model`): loadable by jaxqa, `QuestionAnswerer` and `transformers`."""
        from flax import nnx

        params = nnx.to_pure_dict(sharding.to_host(self.state.params))  # every process takes part
        if not sharding.is_main_process():
            return Path(out_dir or self.out_dir / "model")
        return weights.save_pretrained(params, weights.load_config(self.model_dir), out_dir or self.out_dir / "model",
                                       self.tokenizer)

    def answerer(self) -> QuestionAnswerer:
        """Answer ad-hoc questions with the model as it is now (same window and decoding settings)."""
        c = self.config
        return QuestionAnswerer(self.state.graphdef, self.state.params, self.tokenizer, max_seq_length=c.max_seq_length,
                                doc_stride=c.doc_stride, max_query_length=c.max_query_length,
                                max_answer_length=c.max_answer_length, batch_size=self.eval_batch)

    def logits(self, features: Features) -> tuple[np.ndarray, np.ndarray]:
        """Start/end logits of every window, [windows, max_seq_length], -inf past each batch's length."""
        plan = self._plan(features, self.eval_batch, epoch=None)
        outputs = [self._eval_step(self.state, batch) for batch in self._device_batches(features.model_inputs(), plan)]
        return scatter_logits(features, plan, outputs, self.config.max_seq_length)

    def predict(self, examples: Examples, features: Features, nbest: bool = True) -> decode.Answers:
        """Answers for every example, decoded from all its windows (with n-best lists if `nbest`)."""
        c = self.config
        start, end = self.logits(features)
        with_null = c.version_2_with_negative or bool(examples.is_impossible.any())
        return decode.decode(examples.contexts, start, end, features.offsets, features.example_index,
                             max_answer_length=c.max_answer_length, cls_index=features.cls_index,
                             null_score_diff_threshold=c.null_score_diff_threshold if with_null else None,
                             n_best_size=c.n_best_size if nbest else 0)

    def evaluate(self, split: str = "eval", write_files: bool = True) -> dict:
        """Predict and score a split: "eval" (validation file), "before_training" (the same, before
        fine-tuning) or "predict" (test file, not scored). Writes predictions.json,
        nbest_predictions.json, null_odds.json (v2) and eval_results.json, prefixed for other splits."""
        with self.goodput.timer("eval"), jax.transfer_guard("allow"):
            return self._evaluate(split, write_files)

    def _evaluate(self, split: str, write_files: bool) -> dict:
        if split == "predict":
            examples, features = self.predict_examples, self.predict_features
        else:
            examples, features = self.eval_examples, self.eval_features
        t0 = time.perf_counter()
        answers = self.predict(examples, features, nbest=write_files)
        predictions = dict(zip(examples.ids, answers.texts))
        null_odds = None if answers.null_odds is None else dict(zip(examples.ids, answers.null_odds.tolist()))
        result: dict = {}
        if split != "predict":
            gold = dict(zip(examples.ids, examples.answer_texts))
            metric = metrics.pick_metric(self.config.metric, bool(examples.is_impossible.any()), examples.contexts)
            if metric == "squad_v2" and null_odds is not None:
                # As the official v2.0 script intends: the best span of every question plus its
                # no-answer odds; abstaining above the threshold gives exactly predictions.json's
                # scores, and the threshold search sees what answering would have scored.
                spans = dict(zip(examples.ids, answers.span_texts))
                result = {"metric": metric, **metrics.squad_v2(spans, gold, null_odds,
                                                               self.config.null_score_diff_threshold)}
            else:
                result = metrics.score(metric, predictions, gold, null_odds)
        result.update(num_examples=len(examples), num_features=len(features),
                      eval_seconds=round(time.perf_counter() - t0, 2), step=int(self.state.step))
        if self.run_log and split == "eval":
            self.run_log.eval(result["step"], result)
        if not write_files:  # an evaluation during training: the metrics only
            log.info("step %d %s: %s", result["step"], split, metrics.summary(result))
            return result
        prefix = "" if split == "eval" else f"{split}_"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.out_dir / f"{prefix}predictions.json", predictions)
        if answers.nbest is not None:
            write_json(self.out_dir / f"{prefix}nbest_predictions.json",
                       dict(zip(examples.ids, answers.nbest.lists(examples.contexts))))
        if null_odds is not None:
            write_json(self.out_dir / f"{prefix}null_odds.json", null_odds)
        write_json(self.out_dir / ("eval_results.json" if split == "eval" else f"{split}_results.json"), result)
        log.info("%s: %s (%d examples, %.1fs)", split, metrics.summary(result), len(examples), result["eval_seconds"])
        return result

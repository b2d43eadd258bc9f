"""Everything a run needs, built before its first step: `set_up_run(config)` hands the loop ready parts.

In order: the compilation cache and the multi-host runtime, devices and mesh, model directory and
tokenizer, every data file loaded, checked and tokenised (bad data fails in seconds, before anything
compiles), the training state on the mesh, the jitted train and eval steps, and the checkpoints
opened (resumed, or refused when they belong to another run). The train step is compiled for every
batch shape by `compile_train_steps`, which the loop, `--dry_run` and tests call when they need it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from pathlib import Path

import jax
import numpy as np

from jaxqa import clock, sharding
from jaxqa.config import RunConfig, inert_flags
from jaxqa.data import batching, feature_cache, hub, overlap, repeats, window_share
from jaxqa.data.examples import REPORT_IDS, Examples, describe, file_report, load_examples
from jaxqa.data.features import Features, check_window, checked_features, load_tokenizer
from jaxqa.errors import ConfigError
from jaxqa.models import precision, weights
from jaxqa.scoring.inference import Predictor, program_rows
from jaxqa.training import checkpoint, compilation, throughput
from jaxqa.training.selection import check_metric
from jaxqa.training.train_state import TrainState, create_train_state, eval_step, train_step

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


@dataclasses.dataclass
class Split:
    """One data file, loaded and tokenised."""

    examples: Examples
    features: Features

    @classmethod
    def concatenate(cls, splits: list[Split]) -> Split:
        """Several files as one split, in order: columns joined, each window's example_index moved past the
        examples of the files before it."""
        if len(splits) == 1:
            return splits[0]
        examples, features = [s.examples for s in splits], [s.features for s in splits]

        def joined(name):
            return list(itertools.chain.from_iterable(getattr(e, name) for e in examples))

        lists = ("ids", "questions", "contexts", "answer_texts", "answer_starts", "skipped", "unlabelled",
                 "questions_cut")
        plausible = {name: None if any(getattr(e, name) is None for e in examples) else joined(name)
                     for name in ("plausible_texts", "plausible_starts")}
        merged = Examples(**{name: joined(name) for name in lists}, **plausible,
                          is_impossible=np.concatenate([e.is_impossible for e in examples]),
                          source=",".join(e.source for e in examples))
        first_example = np.cumsum([0] + [len(e) for e in examples[:-1]])
        columns = {f.name: [getattr(x, f.name) for x in features] for f in dataclasses.fields(Features)}
        columns["example_index"] = [(x + n).astype(np.int32) for x, n in zip(columns["example_index"], first_example)]
        if any(x is None for x in columns["question_cut"]):
            columns["question_cut"] = [np.zeros(len(x), bool) if c is None else c
                                       for x, c in zip(features, columns["question_cut"])]
        return cls(merged, Features(**{name: None if arrays[0] is None else np.concatenate(arrays)
                                       for name, arrays in columns.items()}))


@dataclasses.dataclass
class DataReport:
    """What loading found in each file: data_report.json (counts, problems by kind, answers no window
    holds, questions cut) and skipped_records.jsonl (every record left out, with its problem)."""

    files: dict[str, dict] = dataclasses.field(default_factory=dict)
    skipped: list[dict] = dataclasses.field(default_factory=list)
    windows: dict | None = None  # --no_answer_window_share: training windows by kind, before and after

    def add(self, path: str, examples: Examples) -> dict:
        self.files[path] = report = file_report(examples)
        self.skipped += [{"file": path, **s} for s in examples.skipped]
        return report

    def write(self, out_dir: Path, *, always: bool = False) -> None:
        """When there is something to report (or `always`: several training files, counted per file)."""
        notable = ("answers_in_no_window", "questions_cut", "eval_overlap")
        if always or self.skipped or self.windows or any(r["problems"] or any(k in r for k in notable)
                                                         for r in self.files.values()):
            out_dir.mkdir(parents=True, exist_ok=True)
            windows = {"no_answer_window_share": self.windows} if self.windows else {}
            sharding.write_json(out_dir / "data_report.json", {**self.files, **windows})
        if self.skipped:
            sharding.write_text(out_dir / "skipped_records.jsonl",
                                "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in self.skipped))


def load_split(config: RunConfig, path: str, limit: int | None, tokenizer, report: DataReport, *,
               require_answers: bool = True, training: bool = False, held_out: dict[str, Examples] | None = None,
               earlier: repeats.EarlierFiles | None = None) -> Split:
    """Load, check and tokenise one file (through the feature cache); what it found goes to `report`
    and the log, one line per kind. Questions that `earlier` training files hold are left out first (each
    trains once). Training examples on passages of the `held_out` files (those the run scores) are handled
    as --on_eval_overlap says, among the `limit` first (--max_train_samples picks the examples; overlap is
    counted, and dropped, among those the run would train on)."""
    t0, c = time.perf_counter(), config
    examples = load_examples(path, require_answers=require_answers, on_bad_record=c.on_bad_record,
                             plausible=training and c.plausible_answer_loss_weight > 0)
    examples, repeated = earlier.drop_repeats(path, examples) if earlier else (examples, {})
    if limit is not None:
        examples = examples.select(range(min(limit, len(examples))))
    examples, shared = overlap.apply(examples, held_out or {}, c.on_eval_overlap)
    if shared and shared["left_out"]:
        log.info("%s: left %d training examples out (--on_eval_overlap drop): %s", path, shared["left_out"],
                 overlap.describe(shared))
    elif shared:
        log.warning("%s: %s: scores there measure memory, not generalisation; --on_eval_overlap drop leaves "
                    "them out of training", path, overlap.describe(shared))
    examples, features = checked_features(
        examples, tokenizer, training=training, on_bad_record=c.on_bad_record,
        max_seq_length=c.max_seq_length, doc_stride=c.doc_stride, max_query_length=c.max_query_length,
        all_answers=training and c.train_on_all_answers, plausible=examples.plausible_texts is not None,
        tokenize_fn=lambda ex, tok, **window: feature_cache.cached_tokenize(
            ex, tok, c.feature_cache, overwrite=c.overwrite_cache, **window)[0])
    found = report.add(path, examples)
    if shared:
        found["eval_overlap"] = shared
    if repeated:
        found["already_in"] = repeated
        log.info("%s", repeats.describe(path, repeated))
    if examples.skipped:
        log.warning("%s: skipped %d bad record(s): %s (listed in %s), e.g. %s", path, len(examples.skipped),
                    describe(found["problems"]), Path(c.output_dir) / "skipped_records.jsonl",
                    examples.skipped[0]["problem"])
    if examples.unlabelled:
        log.warning("%s: %d answer(s) lie in no window whole and train as 'no answer' (e.g. %s); a larger "
                    "--max_seq_length would hold them", path, len(examples.unlabelled),
                    ", ".join(examples.unlabelled[:REPORT_IDS]))
    if examples.questions_cut:
        log.warning("%s: %d question(s) are longer than --max_query_length %d tokens and were cut to it (e.g. %s); "
                    "a larger --max_query_length would keep them whole", path, len(examples.questions_cut),
                    c.max_query_length, ", ".join(examples.questions_cut[:REPORT_IDS]))
    log.info("%s: %d examples -> %d features%s (%.1fs)", path, len(examples), len(features), _targets_note(features),
             time.perf_counter() - t0)
    return Split(examples, features)


def _targets_note(features: Features) -> str:
    """What the log line of a training file adds about the labels beyond the first answer's."""
    several = "" if features.start_targets is None else (
        f", {int(((features.start_targets > 0).sum(axis=1) > 1).sum())} of them with several answers' starts "
        "to learn (--train_on_all_answers)")
    if features.plausible_start_positions is None:
        return several
    tempting = (features.plausible_start_positions != features.start_positions).sum()
    return f"{several}, {int(tempting)} of them with a plausible answer for the auxiliary span head"


def plan(config: RunConfig, features: Features, batch_size: int, epoch: int | None) -> list[batching.Batch]:
    """The batches of one pass; shuffled by (seed, epoch) for training, in order for `epoch` None."""
    rng = None if epoch is None else np.random.default_rng([config.seed, epoch])
    return batching.plan_batches(features.lengths, batch_size, max_seq_length=config.max_seq_length,
                                 bucket_width=config.bucket, rng=rng)


@dataclasses.dataclass
class RunParts:
    """What `set_up_run` hands the loop."""

    config: RunConfig
    goodput: throughput.Goodput  # the run's one clock: wall time by what it was spent on
    mesh: object
    model_dir: Path
    pretrained: bool  # False: --config_name alone, random initialisation
    tokenizer: object
    splits: dict[str, Split]  # "train", "eval", "predict": those the run does
    train_batch: int  # global rows per optimizer step (per-device x data x fsdp x accumulation)
    eval_batch: int
    total_steps: int
    steps_per_epoch: int
    state: TrainState
    train_step: object  # jitted, sharded; compiled per batch length by compile_train_steps
    predictor: Predictor  # the jitted eval step and how features reach it
    checkpoints: checkpoint.CheckpointPolicy | None  # training runs only
    push_repo: str | None

    @property
    def model_config(self):
        return weights.load_config(self.model_dir)


def set_up_run(config: RunConfig, *, mesh=None) -> RunParts:
    config.validate()
    goodput = throughput.Goodput(clock.LAUNCHED)
    if config.compilation_cache:
        compilation.enable_cache(config.compilation_cache)
    sharding.initialize_distributed(config.coordinator_address, config.num_processes, config.process_id)
    if not sharding.is_main_process():
        log.setLevel(logging.WARNING)  # process 0 tells the story
    if config.dataset_name:
        config = dataclasses.replace(config, **hub.dataset_files(config, Path(config.output_dir)))
    push_repo = hub.check_push(config) if config.push_to_hub else None
    for note in inert_flags(config):
        log.info("%s", note)
    mesh = mesh or sharding.make_mesh(select_devices(config.accelerator), config.mesh)
    config = resolve_dtype(config, mesh)
    model_dir, pretrained = _model_source(config)
    tokenizer = load_tokenizer(config.tokenizer_name or model_dir, config.cache_dir)
    check_window(config.max_seq_length, config.doc_stride, config.max_query_length, tokenizer,
                 weights.load_config(model_dir))
    devices = sharding.batch_size_multiplier(mesh)  # the batch is split over data x fsdp
    train_batch = config.per_device_train_batch_size * devices * config.gradient_accumulation_steps
    eval_batch = config.per_device_eval_batch_size * devices
    splits = _load_splits(config, tokenizer)
    _check_cls_first(config, splits)
    steps_per_epoch = len(plan(config, splits["train"].features, train_batch, epoch=0)) if "train" in splits else 0
    total_steps = config.training_steps(steps_per_epoch) if "train" in splits else 1
    state = create_train_state(config, model_dir, total_steps=total_steps, mesh=mesh, from_pretrained=pretrained)
    state_sharding, batch_sharding = sharding.state_shardings(state, mesh), sharding.batch_sharding(mesh)
    jitted_train_step = sharding.jit(train_step, mesh, in_shardings=(state_sharding, batch_sharding),
                                     out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
    # Logits come back whole on every process (decoding runs on the host of each).
    jitted_eval_step = sharding.jit(eval_step, mesh, in_shardings=(state_sharding, batch_sharding),
                                    out_shardings=sharding.replicated(mesh))
    # On CPU in cache-sized programs, as QuestionAnswerer's: the same answers, faster (`program_rows`).
    predictor = Predictor(jitted_eval_step, mesh, program_rows(eval_batch, config.max_seq_length,
                                                               mesh.devices.flat[0].platform, devices),
                          config.max_seq_length, config.bucket, config.max_answer_length)
    checkpoints = None
    if config.do_train and not config.dry_run:
        position = checkpoint.DataPosition(steps_per_epoch, train_batch, len(splits["train"].features), devices,
                                           config.per_device_train_batch_size, config.gradient_accumulation_steps)
        checkpoints = checkpoint.CheckpointPolicy(config, Path(config.output_dir), position)
        state = checkpoints.open(state, total_steps)
    goodput.seconds["startup"] = time.perf_counter() - goodput.launched
    return RunParts(config, goodput, mesh, model_dir, pretrained, tokenizer, splits, train_batch, eval_batch,
                    total_steps, steps_per_epoch, state, jitted_train_step, predictor, checkpoints, push_repo)


def _check_cls_first(config: RunConfig, splits: dict[str, Split]) -> None:
    """--answerability_head reads [CLS] at position 0 and labels "no answer" by a label there
    (`jaxqa.training.steps.no_answer_cross_entropy`): a tokenizer that puts [CLS] elsewhere is refused."""
    if config.answerability_head and "train" in splits and splits["train"].features.cls_index.any():
        raise ConfigError("--answerability_head reads the [CLS] token at the start of each window, but this "
                          "tokenizer puts it elsewhere; train without --answerability_head")


def resolve_dtype(config: RunConfig, mesh) -> RunConfig:
    """`config` with --dtype auto resolved for the run's devices, and one log line saying which and why:
    everything after set-up (the model, the steps, the checkpoints' identity, the MFU peak, run_config.json)
    sees float32 or bfloat16, never auto."""
    dtype, why = precision.resolve_dtype(config.dtype, local_device(mesh))
    log.info("compute dtype %s (%s)", dtype, why)
    return dataclasses.replace(config, dtype=dtype)


def _model_source(config: RunConfig) -> tuple[Path, bool]:
    """(model directory, pretrained). --config_name without --model_name_or_path: a model of that shape,
    randomly initialised."""
    pretrained = not (config.config_name and not config.model_name_or_path)
    source = config.model_name_or_path
    if not pretrained:
        config_path = Path(config.config_name)
        source = str(config_path.parent if config_path.is_file() else config_path)
    model_dir = weights.resolve_model_dir(source, config.cache_dir, revision=config.model_revision, token=config.token)
    return Path(model_dir), pretrained


def _load_splits(config: RunConfig, tokenizer) -> dict[str, Split]:
    """Every file the run uses, loaded and tokenised before anything compiles: bad data fails in seconds."""
    c, report, splits = config, DataReport(), {}
    scored = DataReport()  # loaded first (training examples on their passages are found while loading), reported last
    if c.do_eval:
        splits["eval"] = load_split(c, c.validation_file, c.max_eval_samples, tokenizer, scored)
        if c.evaluates_during_training:  # evaluations during training choose the best model: by a score they have
            check_metric(c, splits["eval"].examples)
    if c.do_predict:
        splits["predict"] = load_split(c, c.test_file, c.max_predict_samples, tokenizer, scored, require_answers=False)
    if c.do_train:  # several files (v1.1 and v2.0 mixed, say): each loaded and checked alone, then joined
        held_out = {path: splits[name].examples for name, path in (("eval", c.validation_file), ("predict", c.test_file))
                    if name in splits}
        earlier = repeats.EarlierFiles()  # a question in several files trains once, from the first
        splits["train"] = Split.concatenate([load_split(c, path, c.max_train_samples, tokenizer, report, training=True,
                                                        held_out=held_out, earlier=earlier) for path in c.train_files])
        if len(c.train_files) > 1:
            train = splits["train"]
            log.info("training on %d files: %d examples (%d unanswerable) -> %d features", len(c.train_files),
                     len(train.examples), int(train.examples.is_impossible.sum()), len(train.features))
        if c.no_answer_window_share is not None:
            splits["train"], report.windows = _share_windows(c, splits["train"])
    report.files.update(scored.files)
    report.skipped += scored.skipped
    report.write(Path(c.output_dir), always=c.do_train and len(c.train_files) > 1)
    return splits


def _share_windows(config: RunConfig, train: Split) -> tuple[Split, dict]:
    """The training windows down-sampled to --no_answer_window_share (`window_share`), and their counts by
    kind before and after (logged, and written to data_report.json)."""
    share, is_impossible = config.no_answer_window_share, train.examples.is_impossible
    before = window_share.window_counts(train.features, is_impossible)
    rows = window_share.select_windows(train.features, is_impossible, share, config.seed)
    train = Split(train.examples, train.features.select(rows))
    after = window_share.window_counts(train.features, is_impossible)
    log.info("%s", window_share.describe(share, before, after))
    return train, {"share": share, "before": before, "after": after}


def compile_train_steps(parts: RunParts, seq_lens=None) -> tuple[dict, dict]:
    """The train step compiled ahead of time for every batch length of the run (or `seq_lens`), the
    largest checked to fit the device: ({seq_len: compiled step}, compile and memory report)."""
    c, train = parts.config, parts.splits["train"]
    if seq_lens is None:
        seq_lens = sorted({b.seq_len for b in plan(c, train.features, parts.train_batch, epoch=0)})
    abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), parts.state)
    with parts.goodput.timer("compile"):
        cache_dir = c.compilation_cache
        compiled, report = compilation.compile_all(
            parts.train_step, abstract_state, _abstract_batches(parts, train.features, seq_lens),
            program_dir=Path(cache_dir) / "programs" if cache_dir else None,
            identity=json.dumps([c.program_settings(), parts.total_steps,  # (the LR schedule)
                                 (parts.model_dir / "config.json").read_text(encoding="utf-8")],
                                sort_keys=True, default=str))
    report.update(seq_lens=list(compiled), memory=compilation.memory_needed(compiled[max(compiled)]),
                  capacity_bytes=compilation.device_capacity(local_device(parts.mesh)))
    log.info("compiled the train step for %d batch shape(s) in %.1fs (persistent cache: %d hit(s), %d miss(es); "
             "%d traced, the rest loaded from saved programs); largest step needs %s", report["programs"],
             report["seconds"], report["cache_hits"], report["cache_misses"], report["traced"],
             compilation.format_memory(report["memory"], report["capacity_bytes"]))
    compilation.check_fits(report["memory"], report["capacity_bytes"],
                           f"a train step of {parts.train_batch} x {max(compiled)} tokens")
    sharding.wait_for_all_processes("compiled")
    return compiled, report


def _abstract_batches(parts: RunParts, features: Features, seq_lens) -> dict[int, dict]:
    """Shape/dtype/sharding of a global train batch of each length (what the step compiles for)."""
    example = batching.gather(features.train_arrays(), batching.Batch(np.zeros(1, np.int64), 1))
    batch_sharding = sharding.batch_sharding(parts.mesh)
    return {n: {k: jax.ShapeDtypeStruct((parts.train_batch, n)[:v.ndim], v.dtype, sharding=batch_sharding)
                for k, v in example.items()} for n in seq_lens}


def local_device(mesh):
    """This process's first device on the mesh (on other hosts' devices nothing can be queried)."""
    return next(d for d in mesh.devices.flat if d.process_index == jax.process_index())

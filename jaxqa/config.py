"""The one typed configuration of a run. Flags, defaults and help text all come from here."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import field
from pathlib import Path
from typing import Literal

from jaxqa.errors import ConfigError

SAMPLE_DIR = Path(__file__).parent / "sample_data"


# The sections of `--help` (and of README's flag table), in this order: every setting names one.
GROUPS = {"data": "what to read and how it is cut into windows", "model": "which model and tokenizer",
          "training": "the optimizer, its schedule and the length of training",
          "evaluation": "scoring, decoding, and evaluations during training",
          "checkpoints": "saving and resuming", "speed": "precision, padding, compilation, devices",
          "output": "where results, logs and the model go", "multi-host": "several processes"}


def _f(default, help: str, *, group: str, identity: bool = False, in_program: bool = True, inert: str | None = None):
    """A setting, and its role. `group`: its section of --help (one of GROUPS). `identity`: part of what
    makes a training run that run (resuming with it changed is refused). `in_program=False`: says only where
    outputs go or when to log or save, so it is not part of the traced train step (a saved program is named
    by the others). `inert`: a Hugging Face flag accepted with no effect here, and why."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; one of {', '.join(GROUPS)}")
    if inert:
        help = f"accepted; changes nothing: {inert}"
    return field(default=default, metadata={"help": help, "identity": identity, "in_program": in_program,
                                            "inert": inert, "group": group})


@dataclasses.dataclass
class RunConfig:
    # Model
    model_name_or_path: str | None = _f(None, "Hugging Face checkpoint directory or Hub id "
                                        "(default: the packaged MiniLM-L6-H384)", identity=True, group="model")
    config_name: str | None = _f(None, "config.json (or its directory) of a model to train from random "
                                 "initialisation, when no --model_name_or_path is given", identity=True, group="model")
    tokenizer_name: str | None = _f(None, "tokenizer directory or Hub id, if not the model's", group="model")
    cache_dir: str | None = _f(None, "where Hub downloads are cached", group="model")
    dtype: Literal["float32", "bfloat16", "auto"] = _f(
        "auto", "compute dtype (parameters stay float32); auto: bfloat16 where the device computes it natively "
        "(a TPU, a CUDA GPU of compute capability 8.0+, an AMD MI200+, a CPU with AVX512-BF16 or AMX), else "
        "float32; the log says which and why; float32: the same numbers on every device", identity=True,
        group="speed")
    # Data
    train_file: str | None = _f(None, "SQuAD-format JSON (nested or flat) or JSON lines for training; several files "
                                "(v1.1 and v2.0 mixed) as a.json b.json or a.json,b.json", identity=True, group="data")
    validation_file: str | None = _f(None, "SQuAD-format file to evaluate on", group="data")
    test_file: str | None = _f(None, "SQuAD-format file to predict on (answers not needed)", group="data")
    max_train_samples: int | None = _f(None, "keep only the first N training examples (of each --train_file)",
                                       identity=True, group="data")
    max_eval_samples: int | None = _f(None, "keep only the first N evaluation examples", group="data")
    max_predict_samples: int | None = _f(None, "keep only the first N prediction examples", group="data")
    on_bad_record: Literal["error", "skip"] = _f("error", "a malformed record stops the run (error) or is left "
                                                 "out, counted by kind in data_report.json and listed in "
                                                 "skipped_records.jsonl (skip)", group="data")
    on_eval_overlap: Literal["warn", "drop", "error"] = _f(
        "warn", "training examples whose passage is also in --validation_file or --test_file: trained on and "
        "counted in the log and data_report.json (warn), left out of training (drop), or the run stops (error)",
        identity=True, group="data")
    max_seq_length: int = _f(384, "tokens per window (question + context + special tokens)",
                             identity=True, group="data")
    doc_stride: int = _f(128, "tokens of overlap between the windows of a long context", identity=True, group="data")
    max_query_length: int = _f(64, "questions are cut to this many tokens (counted per file in the log and "
                               "data_report.json)", identity=True, group="data")
    train_on_all_answers: bool = _f(False, "train on every gold answer listed (several annotators'), each position "
                                    "weighted by how many gave it (default: the first answer)", identity=True,
                                    group="data")
    no_answer_window_share: float | None = _f(None, "with --version_2_with_negative: drop training windows, chosen once "
                                              "by --seed, until S (0 < S < 1) of them are 'no answer', those of answerable "
                                              "questions first (counted in data_report.json)", identity=True, group="data")
    max_answer_length: int = _f(30, "longest answer span, in tokens, that decoding may return", group="evaluation")
    n_best_size: int = _f(20, "spans per question kept in nbest_predictions.json", group="evaluation")
    version_2_with_negative: bool = _f(False, "some questions have no answer (SQuAD v2.0): predict \"\" when "
                                       "the no-answer score wins; switched on by itself when the data has any",
                                       group="evaluation")
    null_score_diff_threshold: float | None = _f(None, "v2: answer \"\" when null score - best span score exceeds "
                                                 "this (default: the threshold saved with the model by its "
                                                 "evaluation, else 0.0; the log says which)", group="evaluation")
    metric: Literal["auto", "squad", "squad_v2", "cmrc"] = _f("auto", "scoring: auto picks squad_v2 for data with "
                                                              "unanswerable questions, cmrc for Chinese, else squad", group="evaluation")
    pad_to_max_length: bool = _f(False, "pad every batch to max_seq_length instead of length buckets",
                                 identity=True, group="speed")
    bucket_width: int = _f(64, "length buckets are multiples of this many tokens", identity=True, group="speed")
    # What to do
    do_train: bool = _f(False, "fine-tune on --train_file", group="training")
    do_eval: bool = _f(False, "evaluate on --validation_file", group="evaluation")
    do_predict: bool = _f(False, "write predictions for --test_file", group="evaluation")
    eval_before_training: bool = _f(False, "also evaluate the model before fine-tuning, for comparison",
                                    group="evaluation")
    output_dir: str = _f("jaxqa_output", "where predictions, metrics and logs are written",
                         in_program=False, group="output")
    # Optimisation (names and defaults as in Hugging Face TrainingArguments)
    per_device_train_batch_size: int = _f(8, "training examples per device per step", group="training")
    per_device_eval_batch_size: int = _f(32, "evaluation examples per device per step", group="evaluation")
    learning_rate: float = _f(5e-5, "peak AdamW learning rate", identity=True, group="training")
    weight_decay: float = _f(0.0, "AdamW weight decay (never on biases and LayerNorm)", identity=True, group="training")
    adam_beta1: float = _f(0.9, "AdamW beta1", identity=True, group="training")
    adam_beta2: float = _f(0.999, "AdamW beta2", identity=True, group="training")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon", identity=True, group="training")
    max_grad_norm: float = _f(1.0, "clip gradients to this global norm (0: no clipping)",
                              identity=True, group="training")
    num_train_epochs: float = _f(3.0, "passes over the training features (fractions allowed)",
                                 identity=True, group="training")
    max_steps: int = _f(-1, "total optimizer steps, as Hugging Face's Trainer: > 0 overrides --num_train_epochs "
                        "(the learning-rate schedule and the stop both use it; the data is passed over as often as "
                        "that takes); -1: --num_train_epochs decides", identity=True, group="training")
    warmup_ratio: float = _f(0.0, "share of steps with linearly rising learning rate (rounded up, as Hugging Face "
                             "does)", identity=True, group="training")
    warmup_steps: int = _f(0, "warmup steps (overrides --warmup_ratio when > 0)", identity=True, group="training")
    layerwise_lr_decay: float = _f(1.0, "layer l (0 at the bottom) of L gets the learning rate x D^(L - l), the "
                                   "embeddings x D^(L + 1), the QA head x 1 (ELECTRA's rule has one more factor "
                                   "D below the head; 1.0: one rate for all)", identity=True, group="training")
    ema_decay: float = _f(0.0, "keep an exponential moving average of the parameters (float32, decay min(D, (1 + "
                          "step) / (10 + step))) and evaluate and export it instead of the raw weights (0: off)",
                          identity=True, group="training")
    answerability_head: bool = _f(False, "SQuAD v2.0 training: also train a no-answer logit on the [CLS] vector (ELECTRA's "
                                  "head), added to each window's null score; kept beside the exported model "
                                  "(answerability_head.safetensors)", identity=True, group="training")
    answerability_loss_weight: float = _f(0.5, "--answerability_head's weight beside the span loss (ELECTRA's 0.5)",
                                          identity=True, group="training")
    plausible_answer_loss_weight: float = _f(0.0, "SQuAD v2.0 training: W > 0 also trains a span head (not exported) "
                                             "on unanswerable questions' plausible answers (and the others' answers), "
                                             "at weight W beside the span loss", identity=True, group="training")
    logging_steps: int = _f(50, "every N steps, log the loss (mean over those N steps), learning rate and "
                            "throughput", in_program=False, group="output")
    report_to: Literal["all", "tensorboard", "none"] = _f(
        "all", "where training metrics go besides metrics.jsonl, as Hugging Face's Trainer: tensorboard (event "
        "files in OUTPUT_DIR/tensorboard; all: the same, the one integration here) or none", in_program=False,
        group="output")
    seed: int = _f(42, "seed for initialisation, shuffling and dropout", identity=True, group="training")
    # Checkpoints and evaluation during training
    save_steps: int = _f(500, "save a checkpoint (Orbax, asynchronous) every N steps; also at the end and on "
                         "SIGTERM/SIGINT", in_program=False, group="checkpoints")
    save_strategy: Literal["steps", "epoch", "no"] = _f(
        "steps", "when to save a checkpoint, as Hugging Face's Trainer: steps (every --save_steps and at the end), "
        "epoch (at each epoch's end and at the end), no (none on a schedule); an evaluation during training and a "
        "stop by SIGTERM/SIGINT still save one (for --load_best_model_at_end and resuming)", in_program=False,
        group="checkpoints")
    save_total_limit: int | None = _f(2, "keep the newest N checkpoints (plus the best one by "
                                      "--metric_for_best_model); none: keep all", in_program=False, group="checkpoints")
    eval_steps: int | None = _f(None, "with --do_eval, also evaluate every N steps and at the end of every epoch "
                                "during training, as Hugging Face's run_qa.py (the checkpoint of that step records "
                                "the metrics; none: never)", in_program=False, group="evaluation")
    eval_strategy: Literal["auto", "steps", "epoch", "no"] = _f(
        "auto", "when --do_eval evaluates during training, as Hugging Face's Trainer: steps (every --eval_steps, "
        "else every --logging_steps), epoch (at each epoch's end), no (after training only); auto: as Hugging "
        "Face's Flax run_qa.py, every --eval_steps and at each epoch's end when --eval_steps is given "
        "(also spelt --evaluation_strategy)", in_program=False, group="evaluation")
    metric_for_best_model: str = _f("f1", "eval metric whose best checkpoint is kept beyond --save_total_limit: "
                                    "exact_match or f1; SQuAD v2.0: exact, f1, best_f1, HasAns_f1, ... (an eval_ "
                                    "prefix, as Hugging Face's, is dropped; checked before training)",
                                    group="evaluation")
    load_best_model_at_end: bool = _f(False, "with --do_eval --eval_steps N: the final evaluation and the exported "
                                      "model are those of the best checkpoint by --metric_for_best_model",
                                      group="evaluation")
    early_stopping_patience: int | None = _f(None, "with --do_eval --eval_steps N: stop after this many evaluations "
                                             "in a row without a better --metric_for_best_model (none: never)",
                                             identity=True, group="evaluation")
    resume_from_checkpoint: str | None = _f(None, "'auto': continue from the newest complete checkpoint in "
                                            "--output_dir; or a checkpoint directory (output_dir/checkpoints/STEP)",
                                            in_program=False, group="checkpoints")
    overwrite_output_dir: bool = _f(False, "start afresh in an --output_dir that holds another run's checkpoints "
                                    "(deletes them)", in_program=False, group="checkpoints")
    export_hf_dir: str | None = _f(None, "where the final model is written in Hugging Face format "
                                   "(default: output_dir/model)", group="output")
    # Speed and memory
    attention_dropout: bool = _f(True, "dropout on attention probabilities, as BERT was trained; false: none, "
                                 "and on a CUDA GPU in bf16/fp16 with a head size cuDNN takes, cuDNN flash "
                                 "attention (which has no such dropout); the log names the kernel",
                                 identity=True, group="training")
    gradient_checkpointing: bool = _f(False, "recompute each layer's activations in the backward pass: less memory, "
                                      "~1/3 more compute", group="speed")
    gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step (global batch = per-device batch x "
                                          "data x fsdp x this); the batch is split inside the jitted step",
                                          identity=True, group="training")
    # Hugging Face run_qa.py flags: accepted with the same meaning, or said to change nothing here
    dataset_name: str | None = _f(None, "a QA dataset on the Hugging Face Hub (e.g. squad, squad_v2), read through "
                                  "the optional `datasets` package; its splits replace --train_file etc.", group="data")
    dataset_config_name: str | None = _f(None, "configuration of --dataset_name", group="data")
    model_revision: str = _f("main", "branch, tag or commit of a Hub model", group="model")
    token: str | None = _f(None, "Hugging Face Hub token (private models, --push_to_hub)", group="model")
    use_auth_token: bool = _f(False, "use the token saved by `huggingface-cli login` (the default anyway)",
                              group="model")
    trust_remote_code: bool = _f(False, "", inert="jaxqa never runs model code from the Hub", group="model")
    overwrite_cache: bool = _f(False, "tokenise again instead of reading the feature cache",
                               in_program=False, group="data")
    preprocessing_num_workers: int | None = _f(None, "", inert="the fast tokenizer's batch call already uses "
                                               "every core", group="data")
    adafactor: bool = _f(False, "Adafactor instead of AdamW, as Hugging Face's Trainer builds it (factored second "
                         "moments, no scaling by the parameters' size): the same schedule, clipping, learning rate "
                         "and weight decay", identity=True, group="training")
    push_to_hub: bool = _f(False, "upload the final model to the Hugging Face Hub (needs network and a token: "
                           "checked before training starts)", group="output")
    hub_model_id: str | None = _f(None, "Hub repository for --push_to_hub (default: the output_dir's name)",
                                  group="output")
    hub_token: str | None = _f(None, "token for --push_to_hub (default: --token or the saved login)", group="output")
    # Watching and sizing a run
    compilation_cache_dir: str | None = _f(None, "JAX's persistent compilation cache, so a repeated or resumed run "
                                           "skips compiling (default: $JAX_COMPILATION_CACHE_DIR if set, else "
                                           ".jax_cache beside --output_dir; 'none': off)",
                                           in_program=False, group="speed")
    feature_cache_dir: str | None = _f(None, "where tokenised features are cached, keyed by data, tokenizer and "
                                       "window settings (default: .feature_cache beside --output_dir; 'none': off)",
                                       in_program=False, group="data")
    dry_run: bool = _f(False, "compile the train step for the largest batch shape, print the memory it needs per "
                       "device against the device's capacity, and exit", in_program=False, group="speed")
    profile_steps: str | None = _f(None, "START:END: write a JAX profiler trace of those steps to output_dir/profile "
                                   "(TensorBoard / Perfetto)", in_program=False, group="speed")
    # Where it runs
    accelerator: Literal["auto", "cpu", "gpu", "tpu"] = _f("auto", "JAX backend; fails if it is not present",
                                                           group="speed")
    mesh: str = _f("", "device mesh as axis=size over data, fsdp, tensor, e.g. data=2,fsdp=2,tensor=2 (-1: the "
                   "rest of the devices); default: all devices on data. The batch is split over data x fsdp",
                   group="speed")
    coordinator_address: str | None = _f(None, "multi-host: host:port of process 0 (with --num_processes and "
                                         "--process_id); not needed under SLURM or mpirun", group="multi-host")
    num_processes: int | None = _f(None, "multi-host: how many processes take part", group="multi-host")
    process_id: int | None = _f(None, "multi-host: this process's index, 0 .. num_processes-1", group="multi-host")

    def __post_init__(self):
        """Hugging Face's Trainer names eval metrics eval_f1 and takes either spelling: so does this."""
        self.metric_for_best_model = self.metric_for_best_model.removeprefix("eval_")

    def validate(self) -> RunConfig:
        """Reject inconsistent settings before any work starts: one error, the first found, naming the flag."""
        for check in (_check_tasks, _check_numbers, _check_schedule, _check_heads):
            check(self)
        return self

    @property
    def evaluates_during_training(self) -> bool:
        """Whether --do_eval also evaluates inside the train loop (--eval_steps, --eval_strategy)."""
        scheduled = self.eval_strategy in ("steps", "epoch") or (self.eval_strategy == "auto" and self.eval_steps)
        return bool(self.do_train and self.do_eval and scheduled)

    def evaluation_due(self, step: int, steps_per_epoch: int) -> bool:
        """Whether the train loop evaluates after `step`. --eval_strategy auto: --eval_steps N as Hugging Face's
        Flax run_qa.py means it, every N steps and at the end of every epoch, never without N; steps / epoch / no
        as Hugging Face's Trainer: every N steps (N: --eval_steps, else --logging_steps) / at each epoch's end /
        never."""
        strategy = self.eval_strategy
        every = self.eval_steps or (self.logging_steps if strategy == "steps" else None)
        every = every if strategy in ("auto", "steps") else None
        at_epoch_end = strategy == "epoch" or (strategy == "auto" and bool(every))
        due = bool(every) and step % every == 0 or at_epoch_end and step % steps_per_epoch == 0
        return self.evaluates_during_training and due

    def training_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the whole run: --max_steps when set, else --num_train_epochs passes."""
        return self.max_steps if self.max_steps > 0 else max(1, math.ceil(steps_per_epoch * self.num_train_epochs))

    def identity(self) -> dict:
        """The settings that make a training run that run (saved in checkpoints, compared on resume)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["identity"]}

    def program_settings(self) -> dict:
        """The settings that may shape the traced train step: what names a saved program."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["in_program"]}

    @property
    def compilation_cache(self) -> str | None:
        """JAX's persistent compilation cache: --compilation_cache_dir, else JAX's own JAX_COMPILATION_CACHE_DIR
        (one cache shared by every run that sets it), else .jax_cache beside --output_dir; None for 'none'."""
        return _cache_dir(self, self.compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR") or None,
                          ".jax_cache")

    @property
    def feature_cache(self) -> Path | None:
        """Tokenised features: --feature_cache_dir, .feature_cache beside --output_dir by default."""
        where = _cache_dir(self, self.feature_cache_dir, ".feature_cache")
        return Path(where) if where else None

    @property
    def train_files(self) -> list[str]:
        """--train_file as a list: several files are given as a.json b.json or a.json,b.json (one string)."""
        return [name.strip() for name in (self.train_file or "").split(",") if name.strip()]

    @property
    def bucket(self) -> int | None:
        return None if self.pad_to_max_length else self.bucket_width


def inert_flags(config: RunConfig) -> list[str]:
    """Hugging Face flags that were set but change nothing here, each with the reason."""
    return [f"--{f.name}: changes nothing: {f.metadata['inert']}" for f in dataclasses.fields(config)
            if f.metadata["inert"] and getattr(config, f.name) not in (None, False)]


def _cache_dir(c: RunConfig, value: str | None, default_name: str) -> str | None:
    """A cache directory flag's value: None for 'none', by default `default_name` beside --output_dir."""
    if (value or "").lower() == "none":
        return None
    return value or str(Path(c.output_dir).absolute().parent / default_name)


def _check_tasks(c: RunConfig) -> None:
    """Something to do, and the files each task reads."""
    if not (c.do_train or c.do_eval or c.do_predict):
        raise ConfigError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
    if c.do_predict and not c.test_file:
        raise ConfigError("--do_predict needs --test_file")
    if c.do_train and not (c.train_file or c.dataset_name):
        raise ConfigError("--do_train needs --train_file (or --dataset_name)")
    if c.do_eval and not (c.validation_file or c.dataset_name):
        raise ConfigError("--do_eval needs --validation_file (or --dataset_name)")


def _check_numbers(c: RunConfig) -> None:
    """Sizes, counts and rates in their ranges."""
    positive = ["max_seq_length", "max_query_length", "max_answer_length", "per_device_train_batch_size",
                "per_device_eval_batch_size", "logging_steps", "bucket_width", "n_best_size", "save_steps",
                "gradient_accumulation_steps"]
    for name in positive:
        if getattr(c, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(c, name)}")
    for name in ("learning_rate", "num_train_epochs"):
        if not getattr(c, name) > 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(c, name)}")
    for name in ("save_total_limit", "eval_steps", "max_train_samples", "max_eval_samples", "max_predict_samples"):
        if getattr(c, name) is not None and getattr(c, name) <= 0:
            raise ConfigError(f"--{name} must be positive (or none), got {getattr(c, name)}")
    if c.warmup_steps < 0:
        raise ConfigError(f"--warmup_steps must be >= 0 (0: --warmup_ratio decides), got {c.warmup_steps}")
    if not 0 < c.layerwise_lr_decay <= 1 or not 0 <= c.ema_decay < 1:
        raise ConfigError(f"--layerwise_lr_decay must be in (0, 1] (got {c.layerwise_lr_decay}) and --ema_decay "
                          f"in [0, 1) (got {c.ema_decay}); 1.0 and 0 switch them off")
    if c.early_stopping_patience is not None and c.early_stopping_patience <= 0:
        raise ConfigError(f"--early_stopping_patience must be positive, got {c.early_stopping_patience}")
    if c.max_steps == 0 or c.max_steps < -1:
        raise ConfigError(f"--max_steps must be positive (or -1: --num_train_epochs decides), got {c.max_steps}")
    share = c.no_answer_window_share
    if share is not None and not 0 < share < 1:
        raise ConfigError(f"--no_answer_window_share must be between 0 and 1 (exclusive), got {share}")
    if share is not None and not c.version_2_with_negative:
        raise ConfigError(f"--no_answer_window_share {share} sets the share of unanswerable windows of SQuAD v2.0 "
                          "training: pass --version_2_with_negative too (or leave the flag out)")


def _check_schedule(c: RunConfig) -> None:
    """What happens during training (evaluations, dry run, profile) and where (window, mesh)."""
    if c.eval_strategy in ("steps", "epoch") and not (c.do_train and c.do_eval):
        raise ConfigError(f"--eval_strategy {c.eval_strategy} evaluates during training: it needs --do_train "
                          "and --do_eval (with --validation_file)")
    for name in ("load_best_model_at_end", "early_stopping_patience"):
        if getattr(c, name) and not c.evaluates_during_training:
            raise ConfigError(f"--{name} chooses among the evaluations during training: it needs --do_train, "
                              "--do_eval (with --validation_file) and --eval_steps N (or --eval_strategy "
                              "steps|epoch)")
    if c.dry_run and not c.do_train:
        raise ConfigError("--dry_run sizes the train step: pass --do_train and --train_file too")
    if c.profile_steps is not None:
        start, _, end = c.profile_steps.partition(":")
        if not (start.isdigit() and end.isdigit() and int(start) < int(end)):
            raise ConfigError(f"--profile_steps {c.profile_steps}: expected START:END with START < END, "
                              "e.g. 10:15")
    if c.doc_stride < 0 or not 0 <= c.warmup_ratio <= 1 or c.weight_decay < 0:
        raise ConfigError("--doc_stride and --weight_decay must be >= 0 and --warmup_ratio in [0, 1]")
    if c.mesh:
        from jaxqa.sharding import parse_mesh

        parse_mesh(c.mesh, None)  # syntax and axis names now; sizes against the devices later


def _check_heads(c: RunConfig) -> None:
    """Heads beyond the span head: what they need."""
    if c.answerability_head and not (c.version_2_with_negative and c.do_train):
        raise ConfigError("--answerability_head trains a no-answer classifier for SQuAD v2.0: it needs --do_train "
                          "and --version_2_with_negative (a model trained with it uses it wherever it is loaded)")
    if c.answerability_head and not c.answerability_loss_weight > 0:
        raise ConfigError(f"--answerability_loss_weight must be positive, got {c.answerability_loss_weight}")
    if c.plausible_answer_loss_weight < 0:
        raise ConfigError(f"--plausible_answer_loss_weight must be >= 0 (0: off), got {c.plausible_answer_loss_weight}")
    if c.plausible_answer_loss_weight and not (c.version_2_with_negative and c.do_train):
        raise ConfigError("--plausible_answer_loss_weight trains on the plausible answers of SQuAD v2.0's "
                          "unanswerable questions: it needs --do_train and --version_2_with_negative")


def default_run() -> RunConfig:
    """What `python run_qa.py` does with no arguments: a short real fine-tune on the bundled sample."""
    return RunConfig(
        train_file=str(SAMPLE_DIR / "squad_sample_train.json"),
        validation_file=str(SAMPLE_DIR / "squad_sample_dev.json"),
        do_train=True, do_eval=True, eval_before_training=True,
        max_seq_length=256, doc_stride=128, per_device_train_batch_size=8,
        # Chosen by measurement at several seeds (benchmarks/default_run_seeds.py): a higher rate for the
        # fresh head and top layers, less for the lower ones, no attention dropout, and batches of 8 over 1.5
        # epochs (257 steps): more updates for the same tokens than 2 epochs of 16, which scored less.
        learning_rate=4e-4, layerwise_lr_decay=0.8, attention_dropout=False, num_train_epochs=1.5,
        warmup_ratio=0.1, weight_decay=0.01,
        logging_steps=10, output_dir=os.path.join("jaxqa_output", "default_run"), overwrite_output_dir=True,
    )

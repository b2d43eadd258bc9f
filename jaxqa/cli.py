"""`run_qa.py` / `jaxqa`: flags (Hugging Face run_qa names) -> RunConfig -> Trainer.

With no data or model flags it runs the default job (fine-tune the packaged MiniLM on the bundled SQuAD
sample and print EM/F1 before and after) with whatever other flags are given. A first `.json`/`.yaml`
argument is a config file: its settings are the defaults, and flags after it override them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import logging
import os
import signal
import sys
import textwrap
import threading
import typing
from pathlib import Path

from jaxqa import atomic
from jaxqa.config import GROUPS, RunConfig, default_run
from jaxqa.errors import ConfigError, DataError, Interrupted, JaxqaError
from jaxqa.scoring import metrics

_TRUE, _FALSE = {"true", "t", "1", "yes", "y"}, {"false", "f", "0", "no", "n"}  # what Hugging Face's parser takes


def _bool(text: str) -> bool:
    if text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    raise argparse.ArgumentTypeError(f"expected one of true/false, t/f, yes/no, y/n, 1/0, got {text!r}")


class _OrNone:
    """int or float, or `none` for a setting that may be None (--save_total_limit none: keep all), so that
    a config file's value can be unset on the command line."""

    def __init__(self, base: type):
        self.base, self.__name__ = base, base.__name__  # argparse names the type in its errors

    def __call__(self, text: str):
        return None if text.lower() == "none" else self.base(text)


# Flags that say what to train or evaluate on: without any of them (and without a config file) a run is the
# default job, the other flags given applying to it.
DATA_OR_MODEL_FLAGS = ("train_file", "validation_file", "test_file", "dataset_name", "model_name_or_path",
                       "config_name")
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


class _JoinFiles(argparse.Action):
    """--train_file a.json b.json (or a.json,b.json): one comma-joined string, so RunConfig.train_file stays
    a string and the identity of a run stays comparable."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, ",".join(values))


# The commands of `python -m jaxqa` (and of run_qa.py, jaxqa), one line each for --help. No command: train.
COMMANDS = {
    "train": "fine-tune and/or evaluate: the flags below, as Hugging Face's run_qa.py takes them (default)",
    "answer": "answer questions from a passage with a fine-tuned model (JSON out)",
    "evaluate": "score a predictions file against SQuAD-format data, as the official SQuAD scripts do",
    "report": "write eval_report.html: error analysis of a run's evaluation",
    "compare": "is run B better than run A? EM/F1 deltas with a paired bootstrap interval, and a page",
    "serve": "answer over HTTP: batched requests, health and Prometheus metrics (pip install 'jaxqa[serve]')",
}

# Hugging Face Trainer flags without a setting of their own here: {name: (group, help)}. `hf_equivalents`
# turns them into jaxqa's settings, or refuses them with the flag to use.
HF_ALIASES = {
    "bf16": ("speed", "Hugging Face's spelling of --dtype bfloat16 (--bf16 false: --dtype float32)"),
    "fp16": ("speed", "refused: float16 training needs loss scaling, which jaxqa does not do; use --bf16 "
                      "(= --dtype bfloat16), which needs none"),
    "logging_dir": ("output", "refused: TensorBoard event files go to OUTPUT_DIR/tensorboard; choose --output_dir"),
}
RENAMED = {"evaluation_strategy": "eval_strategy"}  # Hugging Face's older spellings, accepted as the new


class _Parser(argparse.ArgumentParser):
    """argparse, but an unknown flag is answered with the closest known one (a mistyped or foreign flag
    otherwise gets "unrecognized arguments" and nothing to go on)."""

    def parse_args(self, args=None, namespace=None):
        namespace, extra = self.parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}{closest_flags(extra, self._option_string_actions)}")
        return namespace


def closest_flags(extra: list[str], known) -> str:
    """`; did you mean --learning_rate?` for the unknown flags among `extra` that resemble a known one."""
    flags = [token.split("=", 1)[0] for token in extra if token.startswith("--")]
    hints = [f"{match[0]} for {flag}" if len(flags) > 1 else match[0] for flag in flags
             if (match := difflib.get_close_matches(flag, list(known), n=1, cutoff=0.75))]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def build_parser(*, given_only: bool = False, prog: str = "run_qa.py") -> argparse.ArgumentParser:
    """The flags of RunConfig, in the sections of config.GROUPS, and the Hugging Face spellings of HF_ALIASES.
    `given_only`: no defaults (argparse.SUPPRESS), so that parsing returns only the flags on the command line.
    `prog`: the program's name in its help (run_qa.py, jaxqa, python -m jaxqa)."""
    usage = "%(prog)s [CONFIG.yaml|CONFIG.json] [--flag value ...]"
    description = "Fine-tune and evaluate an extractive QA model (SQuAD format) in JAX."
    if not prog.endswith(" train"):  # the program itself: its commands too
        usage = (f"%(prog)s [train] [CONFIG.yaml|CONFIG.json] [--flag value ...]\n       %(prog)s "
                 f"{{{','.join(list(COMMANDS)[1:])}}} ...  (each with its own --help)")
        description += "\n\ncommands:\n" + "\n".join(f"  {name:<9} {text}" for name, text in COMMANDS.items())
    parser = _Parser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, usage=usage, description=description,
        epilog=textwrap.fill(
            "With no data or model flags (--train_file, --validation_file, --test_file, --dataset_name, "
            "--model_name_or_path, --config_name): the default job, fine-tuning the packaged MiniLM on the "
            "bundled SQuAD sample, with the other flags given. A config file's settings are the defaults of "
            "the flags that follow it.", 100),
    )
    groups = {name: parser.add_argument_group(name, text) for name, text in GROUPS.items()}
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        kind = hints[f.name]
        kwargs = {"help": f.metadata["help"], "default": argparse.SUPPRESS if given_only else f.default}
        args = typing.get_args(kind)
        if kind is bool:
            kwargs.update(type=_bool, nargs="?", const=True)
        elif typing.get_origin(kind) is typing.Literal:
            kwargs.update(choices=list(args))
        else:
            base = next((a for a in args if a is not type(None)), kind)
            kwargs.update(type=_OrNone(base) if type(None) in args and base in (int, float) else base,
                          metavar={int: "N", float: "X"}.get(base))
        if f.name == "train_file":
            kwargs.update(nargs="+", action=_JoinFiles, metavar="FILE")
        old = [f"--{old}" for old, new in RENAMED.items() if new == f.name]
        groups[f.metadata["group"]].add_argument(f"--{f.name}", *old, **kwargs)
    for name, (group, text) in HF_ALIASES.items():  # never a default: only a flag given is converted
        kwargs = dict(type=_bool, nargs="?", const=True) if name != "logging_dir" else dict(metavar="DIR")
        groups[group].add_argument(f"--{name}", help=text, default=argparse.SUPPRESS, **kwargs)
    return parser


def hf_equivalents(given: dict) -> dict:
    """`given` settings with HF_ALIASES' flags turned into jaxqa's (--bf16 -> dtype bfloat16), or a
    ConfigError naming the flag to use instead."""
    given = dict(given)
    bf16, fp16 = given.pop("bf16", None), given.pop("fp16", False)
    if fp16:
        raise ConfigError("--fp16: float16 training needs loss scaling, which jaxqa does not do; use --bf16 "
                          "(= --dtype bfloat16: the same speed on GPUs and TPUs that have it, no loss scaling needed)")
    if "logging_dir" in given:
        raise ConfigError(f"--logging_dir {given['logging_dir']}: jaxqa writes TensorBoard event files to "
                          "OUTPUT_DIR/tensorboard (tensorboard --logdir OUTPUT_DIR); drop --logging_dir and choose "
                          "--output_dir")
    if bf16 is not None:  # --bf16 false: float32, as in Hugging Face (whatever --dtype's default is)
        wanted = "bfloat16" if bf16 else "float32"
        if given.get("dtype", wanted) != wanted:
            raise ConfigError(f"--bf16 {str(bf16).lower()} means --dtype {wanted}, but --dtype {given['dtype']} is "
                              "given too; pass one")
        given["dtype"] = wanted
    return given


def flags_table() -> str:
    """README's flag table, generated from the parser, one table per section of --help (a test keeps README
    in step with it)."""
    parts = []
    for group in build_parser()._action_groups:
        if group.title not in GROUPS:
            continue
        rows = [f"**{group.title}**: {group.description}", "", "| flag | default | what it does |", "|---|---|---|"]
        for action in group._group_actions:
            choices = f" ({' / '.join(map(str, action.choices))})" if action.choices else ""
            text = action.help.replace("|", "\\|")
            default = "" if action.default is argparse.SUPPRESS else action.default
            rows.append(f"| {', '.join(f'`{o}`' for o in action.option_strings)} | {default!s} | {text}{choices} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def settings_from_file(path: Path) -> dict:
    """{flag name: value} from a JSON/YAML object, as Hugging Face's run_qa accepts; each value goes through
    its flag's own type and choices, as the command line's text does (`_file_value`)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must hold one object of flag names and values")
    raw = {RENAMED.get(name, name): value for name, value in raw.items()}
    actions = {a.dest: a for a in build_parser()._actions}
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(RunConfig)} - set(HF_ALIASES))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; see run_qa.py --help")
    optional = {name for name, kind in typing.get_type_hints(RunConfig).items() if type(None) in typing.get_args(kind)}
    return hf_equivalents({name: _file_value(path, actions[name], value, name in optional)
                           for name, value in raw.items()})


def _yaml_loader():
    """PyYAML's SafeLoader, but a base-60 number of YAML 1.1 (`10:15` is 615 there) stays the text it
    reads as: --profile_steps 10:15 means steps 10 to 15."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    base60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
    Loader.yaml_implicit_resolvers = {
        first: ([("tag:yaml.org,2002:str", base60)] if first in "+-0123456789" else []) + list(resolvers)
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return Loader


_EXPECTED = {int: "an integer", float: "a number", str: "a string", _bool: "true or false"}


def _file_value(path: Path, action: argparse.Action, value, optional: bool):
    """A config file's `value` as the flag would read the command line's text for it: a number of a numeric
    flag and a string go through the flag's type and choices; a list only for --train_file, a boolean only for
    a true/false flag, null only where the setting may be None. Anything else is refused, naming the flag."""
    joins = isinstance(action, _JoinFiles)
    base = getattr(action.type, "base", action.type) or str
    expected = (f"one of {', '.join(map(str, action.choices))}" if action.choices else
                "a file name or a list of them" if joins else _EXPECTED[base])
    given = value

    def refuse(hint: str = ""):
        return ConfigError(f"{path}: {action.dest}: expected {expected}, got {json.dumps(given, default=str)}{hint}")

    if value is None:
        if optional:
            return None
        raise refuse("; leave the line out for the default")
    if joins and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if isinstance(value, bool):
        if base is _bool:
            return value
        raise refuse("; quote it if it is text" if base is str else "")
    if isinstance(value, (int, float)) and base in (int, float):
        value = str(value)  # as the command line gives it: 8.5 is no int there either
    if not isinstance(value, str):
        raise refuse("; quote it if it is text" if base is str and isinstance(value, (int, float)) else "")
    try:
        converted = action.type(value) if action.type else value
    except (ValueError, argparse.ArgumentTypeError):
        raise refuse() from None
    if action.choices and converted not in action.choices:
        raise refuse()
    return converted


def config_from_file(path: Path) -> RunConfig:
    return RunConfig(**settings_from_file(path))


def parse_config(argv: list[str], prog: str = "run_qa.py") -> tuple[RunConfig, dict | None]:
    """(config, overrides): `overrides` is None for a run of its own, or the flags given to the default job
    ({} for no arguments at all). A first argument ending in .json/.yaml/.yml is a config file whose
    settings the flags after it override."""
    path = Path(argv[0]) if argv[:1] and argv[0].endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-") else None
    flags = argv[1:] if path else argv
    given = hf_equivalents(vars(build_parser(given_only=True, prog=prog).parse_args(flags)))  # only the flags given
    if path is not None:
        return with_model_window({**settings_from_file(path), **given}), None
    if not any(name in given for name in DATA_OR_MODEL_FLAGS):
        return dataclasses.replace(default_run(), **given), given
    return with_model_window(given), None


def with_model_window(given: dict) -> RunConfig:
    """The run of the settings `given`. One that uses a model without training it (--do_eval, --do_predict)
    windows as the model was trained, where its run saved how (`weights.SETTINGS_FILE`): each window setting
    not given is the model's."""
    config = RunConfig(**given)
    if config.do_train or not config.model_name_or_path:
        return config
    from jaxqa.models import weights
    if all(name in given for name in weights.WINDOW_SETTINGS) or not Path(config.model_name_or_path).is_dir():
        return config  # (a Hub id is resolved later, by the run: parsing never goes to the network)
    model_dir = weights.resolve_model_dir(config.model_name_or_path, config.cache_dir, revision=config.model_revision,
                                          token=config.token)
    saved = {name: value for name, value in weights.saved_settings(model_dir).items() if name not in given}
    if saved:
        logging.getLogger("jaxqa").info("window settings of the model (%s): %s", weights.SETTINGS_FILE,
                                        ", ".join(f"--{name} {value}" for name, value in saved.items()))
    return dataclasses.replace(config, **saved)


def describe_flags(flags: dict) -> str:
    """`--seed 43 --do_predict`: flags as a command line would give them."""
    return " ".join(f"--{name}" if value is True else f"--{name} {value}" for name, value in flags.items())


def _use_platform(accelerator: str) -> None:
    """Must run before JAX touches a backend: restricts JAX to the CPU when asked."""
    if accelerator == "cpu":
        import jax

        jax.config.update("jax_platforms", "cpu")


def _silent(*_args, **_kwargs) -> None:
    pass


def run(config: RunConfig, *, announce=print) -> dict:
    from jaxqa import sharding
    from jaxqa.report.plots import plot_training_curves
    from jaxqa.training.run_log import clear_previous_run, read_json
    from jaxqa.training.trainer import Trainer

    trainer = Trainer(config)
    if not sharding.is_main_process():  # multi-host: process 0 speaks for all
        announce = _silent
    if config.dry_run:
        return dry_run(trainer, announce)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    continued = continues_in_place(config, trainer.state_step)
    if not continued:
        clear_previous_run(out_dir, {part for part, on in (
            ("before_training", config.eval_before_training and config.do_eval), ("eval", config.do_eval),
            ("predict", config.do_predict), ("train", config.do_train)) if on})
    # The settings as given, but the dtype the run computes in (--dtype auto resolved at set-up).
    sharding.write_json(out_dir / "run_config.json", {**dataclasses.asdict(config), "dtype": trainer.config.dtype})
    results = {}
    if config.eval_before_training and config.do_eval:
        saved = read_json(out_dir / "before_training_results.json") if continued else None
        if saved:  # this run's, from before it was stopped: the restored model is a later step's
            logging.getLogger("jaxqa").info("before training: %s (as this run evaluated it at its start: "
                                            "before_training_results.json)", metrics.summary(saved))
        results["before_training"] = saved or trainer.evaluate_before_training()
    if config.do_train:
        history = trainer.fit()
        results["train_seconds"] = round(trainer.train_seconds, 1)
        results["final_loss"] = history[-1]["loss"] if history else None
    if config.do_eval:
        results["eval"] = trainer.evaluate()
        write_eval_page(trainer, results["eval"])
    curves = plot_training_curves(out_dir) if trainer.finish() else None
    if config.do_predict:
        results["predict"] = trainer.evaluate("predict")
        announce(f"predictions for {results['predict']['num_examples']} questions of {config.test_file} in "
                 f"{config.output_dir}/predict_predictions.json")
    announce_results(config, results, trainer.trained_steps, curves, announce)
    return results


def announce_results(config: RunConfig, results: dict, trained_steps: int | None, curves: Path | None,
                     announce) -> None:
    """The run's story at its end: the scores before and after fine-tuning, the summary table, where the
    outputs are."""
    from jaxqa.training.run_log import kept_note

    if "before_training" in results:
        announce(f"before fine-tuning: {metrics.summary(results['before_training'])}")
    if "eval" in results:
        kept = kept_note(results["eval"])
        announce(f"{'after fine-tuning' if config.do_train else 'evaluation'}: {metrics.summary(results['eval'])}  "
                 f"({results['eval']['num_examples']} questions, {config.validation_file}"
                 + (f"; {kept}" if kept else "") + ")")
    if config.do_train:
        announce(summary_table(results, trained_steps))
        announce(f"training time: {results['train_seconds']:.1f}s; outputs in {config.output_dir}/"
                 + (f" (curves: {curves.name}" + (f", TensorBoard: tensorboard --logdir {config.output_dir}"
                                                   if config.report_to != "none" else "") + ")" if curves else ""))


def write_eval_page(trainer, result: dict) -> None:
    """eval_report.html beside eval_results.json (`jaxqa.report.page`), from the evaluated examples in memory
    and the windows.json the evaluation wrote; process 0 draws it. A failure to draw the page is a warning,
    never the run's end: its results are written already."""
    from jaxqa import sharding
    from jaxqa.report.page import write_report

    if not sharding.is_main_process():
        return
    out_dir = trainer.config.output_dir
    try:
        write_report(out_dir, examples=trainer.eval_examples, metric=result.get("metric"),
                     config=dataclasses.asdict(trainer.config))
    except Exception as err:  # noqa: BLE001 - the page must never cost the run its results
        logging.getLogger("jaxqa").warning("eval_report.html not written (%s); `python -m jaxqa report %s` "
                                           "tries again", err, out_dir)


def continues_in_place(config: RunConfig, step: int) -> bool:
    """Whether this is a training run resumed (at `step` > 0) from a checkpoint of its own --output_dir: the
    same run going on, whose files there (metrics.jsonl, before_training_*) are its own."""
    value = config.resume_from_checkpoint
    if not (config.do_train and value and step > 0):
        return False
    if value == "auto":
        return True
    out, path = Path(config.output_dir).resolve(), Path(value).resolve()
    return out in (path, path.parent.parent)  # OUTPUT_DIR or OUTPUT_DIR/checkpoints/STEP


def dry_run(trainer, announce=print) -> dict:
    """Compile the train step for the largest batch shape and report the memory it needs; no training."""
    from jaxqa.training import compilation, run_setup
    plan = run_setup.plan(trainer.config, trainer.train_features, trainer.train_batch, epoch=0)
    largest = max(b.seq_len for b in plan)
    report = trainer.compile_train_steps([largest])  # raises, naming what to change, when it does not fit
    announce(f"dry run: a train step of {trainer.train_batch} x {largest} tokens on mesh {dict(trainer.mesh.shape)} "
             f"needs {compilation.format_memory(report['memory'], report['capacity_bytes'])}; it fits. "
             f"Compiled in {report['seconds']:.1f}s.")
    return {"dry_run": report}


def summary_table(results: dict, steps: int) -> str:
    """The end-of-run table: training figures, then every eval metric before/after fine-tuning."""
    from jaxqa.training.run_log import kept_note

    rows = [("train steps", kept_note(results.get("eval", {})) or str(steps)),
            ("train time (s)", f"{results['train_seconds']:.1f}")]
    if results.get("final_loss") is not None:
        rows.append(("final train loss", f"{results['final_loss']:.4f}"))
    after, before = results.get("eval", {}), results.get("before_training", {})
    for key, value in after.items():
        if isinstance(value, float) and key != "eval_seconds":
            rows.append((f"eval {key}", f"{value:.2f}" + (f"  (before: {before[key]:.2f})" if key in before else "")))
    width = max(len(name) for name, _ in rows)
    return "\n".join(["", f"{'summary':<{width}}  value", f"{'-' * width}  {'-' * 24}"]
                     + [f"{name:<{width}}  {value}" for name, value in rows])


ANSWER_CHUNK = 256  # questions of --questions_file per QuestionAnswerer.answer_batch call (answers printed after each)


def answer_parser() -> argparse.ArgumentParser:
    """`python -m jaxqa answer`'s flags. The window flags default to what the model was trained with, where its
    run saved that (`weights.SETTINGS_FILE`), else to run_qa.py's defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxqa answer",
        description="Answer questions from their contexts with a fine-tuned model: one question (--question with "
                    "--context or --context_file) prints {answer, start, end, score, probability} as JSON; "
                    "--questions_file prints one such object per question, as JSON lines.")
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="a fine-tuned model directory (e.g. OUTPUT_DIR/model) or Hub id; a model without a "
                             "trained QA head is refused (fine-tune it with run_qa.py first)")
    parser.add_argument("--question", help="the question to answer, with --context or --context_file")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--context", help="the passage that holds the answer, as text")
    source.add_argument("--context_file", metavar="FILE", help="a UTF-8 text file holding the passage (any length)")
    parser.add_argument("--questions_file", metavar="FILE",
                        help="many questions instead: JSON lines of {\"question\", \"context\"} (and an optional "
                             "\"id\"); prints one answer object per line, in order, with the line's id")
    add_answer_settings(parser)
    parser.add_argument("--verbose", action="store_true",
                        help="report on stderr how long loading the model took, and answering: per batch of "
                             f"questions (up to {ANSWER_CHUNK}), per question and in all (default: off)")
    return parser


def add_answer_settings(parser: argparse.ArgumentParser) -> None:
    """The window, answer length and no-answer flags of `answer` and `serve`."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    for name, what in (("max_seq_length", "tokens per window (question + context + special tokens)"),
                       ("doc_stride", "tokens of overlap between the windows of a long context"),
                       ("max_query_length", "questions are cut to this many tokens"),
                       ("max_answer_length", "longest answer span, in tokens")):
        parser.add_argument(f"--{name}", type=int, metavar="N", help=f"{what} (default: the model's, saved by the run "
                                                                     f"that trained it; else {defaults[name]})")
    parser.add_argument("--null_score_diff_threshold", type=float, metavar="T",
                        help="answer \"\" when null score - best span score exceeds this (default: the threshold "
                             "saved with the model by its SQuAD v2.0 evaluation; without one, never \"\")")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default=defaults["dtype"],
                        help="compute dtype, as run_qa.py's --dtype (default: %(default)s)")


def _read_text(flag: str, path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{flag} {path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None


def _nonempty(where: str, record: dict, field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        problem = "no" if value is None else "an empty" if isinstance(value, str) else f"a non-text ({type(value).__name__})"
        raise DataError(f"{where}: {problem} \"{field}\"; every question needs a non-empty question and context")
    return value


def read_questions(path: Path) -> list[dict]:
    """--questions_file: its lines' {"question", "context"[, "id"]} objects, each checked; the first bad line is
    an error naming it."""
    records = []
    for number, line in enumerate(_read_text("--questions_file", path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"--questions_file {path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not JSON ({err.msg}); each line is one object "
                            "{\"question\": ..., \"context\": ...}") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: a JSON {type(record).__name__}, not an object {{\"question\": ..., \"context\": ...}}")
        records.append({**({"id": record["id"]} if "id" in record else {}),
                        "question": _nonempty(where, record, "question"), "context": _nonempty(where, record, "context")})
    if not records:
        raise DataError(f"--questions_file {path}: no questions in it; write one JSON object per line")
    return records


def _answer_records(args) -> list[dict]:
    """The questions `answer` was given: --questions_file's, or --question with its context."""
    if args.questions_file:
        return read_questions(Path(args.questions_file))
    context = _read_text("--context_file", Path(args.context_file)) if args.context_file else args.context
    source = f"--context_file {args.context_file}" if args.context_file else "--context"
    for flag, text, fix in (("--question", args.question, "give the question to answer"),
                            (source, context, "give the passage that holds the answer")):
        if not text.strip():
            raise ConfigError(f"{flag} is empty: {fix}")
    return [{"question": args.question, "context": context}]


def answer_main(argv: list[str]) -> int:
    """`python -m jaxqa answer --model DIR (--question Q (--context TEXT | --context_file F) | --questions_file F)`:
    answers as JSON (lines)."""
    import time

    parser = answer_parser()
    args = parser.parse_args(argv)
    single = args.question is not None or args.context is not None or args.context_file is not None
    if args.questions_file and single:
        parser.error("--questions_file holds the questions and their contexts: give it without --question, "
                     "--context or --context_file")
    if not args.questions_file and (args.question is None or (args.context is None and args.context_file is None)):
        parser.error("give --question with --context or --context_file, or --questions_file")
    try:
        records = _answer_records(args)
        from jaxqa.models.weights import WINDOW_SETTINGS
        from jaxqa.scoring.answer import QuestionAnswerer

        logging.basicConfig(level=logging.WARNING, format="jaxqa: %(message)s")
        logging.getLogger("jaxqa").setLevel(logging.INFO)  # on stderr: the threshold used, the model as read
        settings = {name: getattr(args, name) for name in WINDOW_SETTINGS if getattr(args, name) is not None}
        started = time.perf_counter()
        qa = QuestionAnswerer.from_pretrained(args.model, null_score_diff_threshold=args.null_score_diff_threshold,
                                              dtype=args.dtype, **settings)
        loaded = time.perf_counter()
        if args.verbose:
            print(f"jaxqa: model loaded in {loaded - started:.2f} s", file=sys.stderr, flush=True)
        for first in range(0, len(records), ANSWER_CHUNK):
            chunk, start = records[first:first + ANSWER_CHUNK], time.perf_counter()
            answers = qa.answer_batch([r["question"] for r in chunk], [r["context"] for r in chunk])
            seconds = time.perf_counter() - start
            if args.verbose:
                print(f"jaxqa: answered question(s) {first + 1}-{first + len(chunk)} in {seconds * 1000:.0f} ms "
                      f"({seconds * 1000 / len(chunk):.1f} ms per question)", file=sys.stderr, flush=True)
            for record, answer in zip(chunk, answers):
                print(json.dumps({**({"id": record["id"]} if "id" in record else {}), **answer}, ensure_ascii=False),
                      flush=True)
        if args.verbose:
            seconds = time.perf_counter() - loaded
            print(f"jaxqa: {len(records)} question(s) answered in {seconds:.2f} s ({seconds * 1000 / len(records):.1f} "
                  f"ms per question, {len(records) / seconds:.1f} questions/s); model load {loaded - started:.2f} s",
                  file=sys.stderr)
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    return 0


def serve_parser() -> argparse.ArgumentParser:
    """`python -m jaxqa serve`'s flags (parsed without the serve extra: --help works in the core install)."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxqa serve",
        description="Answer questions over HTTP with a fine-tuned model: POST /v1/answer {\"question\", \"context\"} "
                    "(or \"contexts\": [...], or a list of such objects), GET /health, GET /metrics. Requests that "
                    "arrive together run as one batch on programs compiled at start-up. Needs the serve extra: "
                    "pip install 'jaxqa[serve]'.")
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="a fine-tuned model directory (e.g. OUTPUT_DIR/model) or Hub id")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--max_batch_size", type=int, default=32, metavar="N",
                        help="most question-passage pairs answered in one batch; also the rows of the largest "
                             "compiled program, on CPU at most ~1,000 tokens (faster there; default: 32)")
    parser.add_argument("--max_wait_ms", type=float, default=5.0, metavar="MS",
                        help="how long a batch waits for more requests after its first (default: 5)")
    parser.add_argument("--max_request_bytes", type=int, default=1 << 20, metavar="N",
                        help="larger request bodies are refused with 413 (default: 1 MiB)")
    parser.add_argument("--max_passages", type=int, default=64, metavar="N",
                        help="most question-passage pairs one request may hold (default: 64)")
    add_answer_settings(parser)
    return parser


def serve_main(argv: list[str]) -> int:
    """`python -m jaxqa serve --model DIR [--host H --port P ...]`: until SIGTERM or Ctrl-C, then drained, exit 0."""
    parser = serve_parser()
    args = parser.parse_args(argv)
    for flag in ("max_batch_size", "max_request_bytes", "max_passages"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} {getattr(args, flag)}: must be at least 1")
    if args.max_wait_ms < 0:
        parser.error(f"--max_wait_ms {args.max_wait_ms}: must be 0 or more")
    try:
        from jaxqa.serving import app
    except ImportError as err:
        missing = (err.name or "starlette").split(".")[0]
        print(f"jaxqa: error: serve needs the serve extra ({missing} is not installed): pip install 'jaxqa[serve]'",
              file=sys.stderr)
        return 2
    from jaxqa.models.weights import WINDOW_SETTINGS
    from jaxqa.scoring.answer import QuestionAnswerer

    logging.basicConfig(level=logging.WARNING, format="jaxqa: %(message)s")
    logging.getLogger("jaxqa").setLevel(logging.INFO)
    try:
        settings = {name: getattr(args, name) for name in WINDOW_SETTINGS if getattr(args, name) is not None}
        qa = QuestionAnswerer.from_pretrained(args.model, null_score_diff_threshold=args.null_score_diff_threshold,
                                              batch_size=args.max_batch_size, least_padding=True, dtype=args.dtype,
                                              **settings)
        return app.serve(qa, model=args.model, host=args.host, port=args.port, max_batch_size=args.max_batch_size,
                         max_wait_ms=args.max_wait_ms, max_request_bytes=args.max_request_bytes,
                         max_passages=args.max_passages)
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2


def _terminate(signum, _frame):
    """SIGTERM or SIGINT outside the train loop (which saves and stops on its own; a second signal there
    lands here): say so, remove this process's half-written temporaries and exit at once (128 + signal).
    Raising from the handler instead (Python's KeyboardInterrupt), at whatever bytecode the main thread
    was on, lost the signal when that was a garbage-collection callback (the run went on to its end) and
    unwound JAX's internals under threads still using them (exit -6 or -11)."""
    print(f"jaxqa: stopped by {signal.Signals(signum).name} outside the train loop (loading, compiling, evaluating "
          "or exporting); every file written so far is whole, none half-written. Run the same command again (with "
          "--resume_from_checkpoint auto if OUTPUT_DIR/checkpoints holds one)", file=sys.stderr, flush=True)
    atomic.remove_own_temporaries()
    sys.stdout.flush()
    os._exit(128 + signum)


def keep_pytorch_out() -> None:
    """For a process that runs jaxqa's command line and nothing else (run_qa.py, `python -m jaxqa`): where
    PyTorch is installed, `transformers` imports it with its tokenizer classes, though jaxqa never runs it
    (PyTorch checkpoints are read without it). Marked absent before `transformers` loads, it is skipped:
    loading a tokenizer in a fresh process takes 2.8 s instead of 6.9 s on 2 CPU cores (and the notice
    that PyTorch is missing is dropped: it is not). A process that already imported PyTorch keeps it."""
    if sys.modules.setdefault("torch", None) is None:
        logging.getLogger("transformers").addFilter(lambda record: not str(record.msg).startswith("PyTorch was not found"))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """A command of COMMANDS (`evaluate DATA PRED`, `answer ...`), or with none (or `train`) a run of the flags.
    `prog`: how the program was called, for its help (default: jaxqa for the console script, else run_qa.py)."""
    argv = sys.argv[1:] if argv is None else argv
    prog = prog or ("jaxqa" if Path(sys.argv[0]).name == "jaxqa" else "run_qa.py")
    command = argv[0] if argv[:1] and argv[0] in COMMANDS else None
    if command == "answer":
        return answer_main(argv[1:])
    if command == "serve":
        return serve_main(argv[1:])
    if command == "evaluate":
        from jaxqa.scoring.evaluate import main as evaluate_main

        return evaluate_main(argv[1:], prog=f"{prog} evaluate")
    if command == "report":
        from jaxqa.report.page import main as report_main

        return report_main(argv[1:])
    if command == "compare":
        from jaxqa.report.compare import main as compare_main

        return compare_main(argv[1:])
    if command == "train":
        argv, prog = argv[1:], f"{prog} train"
    with stop_signals_end_the_process():
        return _main(argv, prog)


@contextlib.contextmanager
def stop_signals_end_the_process():
    """SIGTERM and Ctrl-C (SIGINT) alike: `_terminate` outside the train loop (inside it, `StopRequest`
    takes them over); the handlers before are put back after. Only the main thread can set them."""
    stop_signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    previous = {sig: signal.signal(sig, _terminate) for sig in stop_signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str], prog: str = "run_qa.py") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("absl", "jax._src", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config, overrides = parse_config(argv, prog)
        if overrides is not None:
            print(f"{'No data or model flags' if overrides else 'No arguments'}: the default job, fine-tuning the "
                  f"packaged MiniLM on the bundled SQuAD sample ({config.train_file}), then scoring "
                  f"{config.validation_file}" + (f", with {describe_flags(overrides)}" if overrides else "") + ".\n"
                  f"Run `{prog} --help` for the flags.", flush=True)
        _use_platform(config.accelerator)
        run(config)
    except Interrupted as stop:  # a clean, resumable stop (SIGTERM/SIGINT): the checkpoint is written
        print(f"jaxqa: {stop}", file=sys.stderr)
        return 0
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxqa: interrupted", file=sys.stderr)
        return 130
    return 0

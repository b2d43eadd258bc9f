"""`run_qa.py` / `jaxqa`: flags (Hugging Face run_qa names) -> RunConfig -> Trainer.

With no data or model flags it runs the default job (fine-tune the packaged MiniLM on the bundled SQuAD
sample and print EM/F1 before and after) with whatever other flags are given. A first `.json`/`.yaml`
argument is a config file: its settings are the defaults, and flags after it override them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import typing
from pathlib import Path

from jaxqa import atomic, metrics
from jaxqa.config import RunConfig, default_run
from jaxqa.errors import ConfigError, Interrupted, JaxqaError

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


def build_parser(*, given_only: bool = False) -> argparse.ArgumentParser:
    """The flags of RunConfig. `given_only`: no defaults (argparse.SUPPRESS), so that parsing returns only
    the flags on the command line."""
    parser = argparse.ArgumentParser(
        prog="run_qa.py", description="Fine-tune and evaluate an extractive QA model (SQuAD format) in JAX.",
        usage="%(prog)s [CONFIG.yaml|CONFIG.json] [--flag value ...]",
        epilog="With no data or model flags (--train_file, --validation_file, --test_file, --dataset_name, "
               "--model_name_or_path, --config_name): the default job, fine-tuning the packaged MiniLM on the "
               "bundled SQuAD sample, with the other flags given. A config file's settings are the defaults of "
               "the flags that follow it.",
    )
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
            kwargs.update(type=_OrNone(base) if type(None) in args and base in (int, float) else base)
        if f.name == "train_file":
            kwargs.update(nargs="+", action=_JoinFiles, metavar="FILE")
        parser.add_argument(f"--{f.name}", **kwargs)
    return parser


def flags_table() -> str:
    """README's flag table, generated from the parser (a test keeps README in step with it)."""
    rows = ["| flag | default | what it does |", "|---|---|---|"]
    for action in build_parser()._actions:
        if action.dest == "help":
            continue
        choices = f" ({' / '.join(map(str, action.choices))})" if action.choices else ""
        text = action.help.replace("|", "\\|")
        rows.append(f"| `--{action.dest}` | {action.default!s} | {text}{choices} |")
    return "\n".join(rows)


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
    actions = {a.dest: a for a in build_parser()._actions}
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(RunConfig)})
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; see run_qa.py --help")
    optional = {name for name, kind in typing.get_type_hints(RunConfig).items() if type(None) in typing.get_args(kind)}
    return {name: _file_value(path, actions[name], value, name in optional) for name, value in raw.items()}


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


def parse_config(argv: list[str]) -> tuple[RunConfig, dict | None]:
    """(config, overrides): `overrides` is None for a run of its own, or the flags given to the default job
    ({} for no arguments at all). A first argument ending in .json/.yaml/.yml is a config file whose
    settings the flags after it override."""
    path = Path(argv[0]) if argv[:1] and argv[0].endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-") else None
    flags = argv[1:] if path else argv
    given = vars(build_parser(given_only=True).parse_args(flags))  # only the flags on the command line
    if path is not None:
        return RunConfig(**{**settings_from_file(path), **given}), None
    if not any(name in given for name in DATA_OR_MODEL_FLAGS):
        return dataclasses.replace(default_run(), **given), given
    return RunConfig(**given), None


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
    from jaxqa.run_log import clear_previous_run, kept_note, read_json, write_json
    from jaxqa.trainer import Trainer

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
    write_json(out_dir / "run_config.json", dataclasses.asdict(config))
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
    curves = trainer.finish()
    if config.do_predict:
        results["predict"] = trainer.evaluate("predict")
        announce(f"predictions for {results['predict']['num_examples']} questions of {config.test_file} in "
                 f"{config.output_dir}/predict_predictions.json")
    if "before_training" in results:
        announce(f"before fine-tuning: {metrics.summary(results['before_training'])}")
    if "eval" in results:
        kept = kept_note(results["eval"])
        announce(f"{'after fine-tuning' if config.do_train else 'evaluation'}: {metrics.summary(results['eval'])}  "
                 f"({results['eval']['num_examples']} questions, {config.validation_file}"
                 + (f"; {kept}" if kept else "") + ")")
    if config.do_train:
        announce(summary_table(results, trainer.trained_steps))
        announce(f"training time: {results['train_seconds']:.1f}s; outputs in {config.output_dir}/"
                 + (f" (curves: {curves.name}, TensorBoard: tensorboard --logdir {config.output_dir})" if curves else ""))
    return results


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
    from jaxqa import compilation, run_setup

    plan = run_setup.plan(trainer.config, trainer.train_features, trainer.train_batch, epoch=0)
    largest = max(b.seq_len for b in plan)
    report = trainer.compile_train_steps([largest])  # raises, naming what to change, when it does not fit
    announce(f"dry run: a train step of {trainer.train_batch} x {largest} tokens on mesh {dict(trainer.mesh.shape)} "
             f"needs {compilation.format_memory(report['memory'], report['capacity_bytes'])}; it fits. "
             f"Compiled in {report['seconds']:.1f}s.")
    return {"dry_run": report}


def summary_table(results: dict, steps: int) -> str:
    """The end-of-run table: training figures, then every eval metric before/after fine-tuning."""
    from jaxqa.run_log import kept_note

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


def answer_main(argv: list[str]) -> int:
    """`python -m jaxqa answer --model DIR --question Q (--context TEXT | --context_file F)`: one answer as JSON."""
    parser = argparse.ArgumentParser(prog="python -m jaxqa answer", description="Answer one question from a context "
                                     "with a fine-tuned model; prints {answer, start, end, score, probability} as JSON.")
    parser.add_argument("--model", required=True, help="a model directory (e.g. OUTPUT_DIR/model) or Hub id")
    parser.add_argument("--question", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--context", help="the passage, as text")
    source.add_argument("--context_file", help="a UTF-8 text file holding the passage (any length)")
    parser.add_argument("--max_seq_length", type=int, default=384)
    parser.add_argument("--doc_stride", type=int, default=128)
    parser.add_argument("--max_answer_length", type=int, default=30)
    parser.add_argument("--null_score_diff_threshold", type=float, default=None,
                        help="answer \"\" when null score - best span score exceeds this (default: the threshold "
                             "saved with the model by its SQuAD v2.0 evaluation; without one, never \"\")")
    args = parser.parse_args(argv)
    try:
        if args.context_file:
            path = Path(args.context_file)
            if not path.is_file():
                raise ConfigError(f"--context_file {path}: no such file")
            context = path.read_text(encoding="utf-8")
        else:
            context = args.context
        from jaxqa.answer import QuestionAnswerer
        from jaxqa.weights import resolve_model_dir

        logging.basicConfig(level=logging.WARNING, format="jaxqa: %(message)s")
        logging.getLogger("jaxqa").setLevel(logging.INFO)  # on stderr: the threshold used, the model as read
        qa = QuestionAnswerer.from_pretrained(resolve_model_dir(args.model), max_seq_length=args.max_seq_length,
                                              doc_stride=args.doc_stride, max_answer_length=args.max_answer_length,
                                              null_score_diff_threshold=args.null_score_diff_threshold)
        print(json.dumps(qa(args.question, context), ensure_ascii=False))
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    return 0


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["answer"]:
        return answer_main(argv[1:])
    if argv[:1] == ["report"]:
        from jaxqa.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["compare"]:
        from jaxqa.compare import main as compare_main

        return compare_main(argv[1:])
    with stop_signals_end_the_process():
        return _main(argv)


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


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("absl", "jax._src", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config, overrides = parse_config(argv)
        if overrides is not None:
            print(f"{'No data or model flags' if overrides else 'No arguments'}: the default job, fine-tuning the "
                  f"packaged MiniLM on the bundled SQuAD sample ({config.train_file}), then scoring "
                  f"{config.validation_file}" + (f", with {describe_flags(overrides)}" if overrides else "") + ".\n"
                  "Run `run_qa.py --help` for the flags.", flush=True)
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

"""`run_qa.py` / `jaxqa`: flags (Hugging Face run_qa names) -> RunConfig -> Trainer.

With no arguments it runs the default job: fine-tune the packaged MiniLM on the bundled SQuAD
sample and print EM/F1 before and after. A single `.json`/`.yaml` argument is read as a config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from pathlib import Path

from jaxqa import metrics
from jaxqa.config import RunConfig, default_run
from jaxqa.errors import ConfigError, JaxqaError

_TRUE, _FALSE = {"true", "1", "yes", "y"}, {"false", "0", "no", "n"}


def _bool(text: str) -> bool:
    if text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_qa.py", description="Fine-tune and evaluate an extractive QA model (SQuAD format) in JAX.",
        epilog="With no arguments: fine-tune the packaged MiniLM on the bundled SQuAD sample.",
    )
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        kind, kwargs = hints[f.name], {"help": f.metadata["help"], "default": f.default}
        args = typing.get_args(kind)
        if kind is bool:
            kwargs.update(type=_bool, nargs="?", const=True)
        elif typing.get_origin(kind) is typing.Literal:
            kwargs.update(choices=list(args))
        else:
            base = next((a for a in args if a is not type(None)), kind)
            kwargs.update(type=base)
        parser.add_argument(f"--{f.name}", **kwargs)
    return parser


def config_from_file(path: Path) -> RunConfig:
    """Flags from a JSON/YAML object of {flag name: value}, as Hugging Face's run_qa accepts."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use JSON") from None
        raw = yaml.safe_load(text)
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must hold one object of flag names and values")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; see run_qa.py --help")
    return RunConfig(**raw)


def parse_config(argv: list[str]) -> tuple[RunConfig, bool]:
    """(config, is_default_run)."""
    if not argv:
        return default_run(), True
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")) and not argv[0].startswith("-"):
        return config_from_file(Path(argv[0])), False
    return RunConfig(**vars(build_parser().parse_args(argv))), False


def _use_platform(accelerator: str) -> None:
    """Must run before JAX touches a backend: restricts JAX to the CPU when asked."""
    if accelerator == "cpu":
        import jax

        jax.config.update("jax_platforms", "cpu")


def _silent(*_args, **_kwargs) -> None:
    pass


def run(config: RunConfig, *, announce=print) -> dict:
    from jaxqa import sharding
    from jaxqa.trainer import Trainer, write_json

    trainer = Trainer(config)
    if not sharding.is_main_process():  # multi-host: process 0 speaks for all
        announce = _silent
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(config.output_dir) / "run_config.json", dataclasses.asdict(config))
    results = {}
    if config.eval_before_training and config.do_eval:
        results["before_training"] = trainer.evaluate("before_training")
    if config.do_train:
        trainer.fit()
        results["train_seconds"] = round(trainer.train_seconds, 1)
    if config.do_eval:
        results["eval"] = trainer.evaluate()
    if config.do_predict:
        results["predict"] = trainer.evaluate("predict")
        announce(f"predictions for {results['predict']['num_examples']} questions of {config.test_file} in "
                 f"{config.output_dir}/predict_predictions.json")
    if "before_training" in results:
        announce(f"before fine-tuning: {metrics.summary(results['before_training'])}")
    if "eval" in results:
        announce(f"{'after fine-tuning' if config.do_train else 'evaluation'}: {metrics.summary(results['eval'])}  "
                 f"({results['eval']['num_examples']} questions, {config.validation_file})")
    if config.do_train:
        announce(f"training time: {results['train_seconds']:.1f}s; outputs in {config.output_dir}/")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("absl", "jax._src", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config, is_default = parse_config(argv)
        if is_default:
            print("No arguments: fine-tuning the packaged MiniLM on the bundled SQuAD sample "
                  f"({config.train_file}), then scoring {config.validation_file}.\n"
                  "Run `run_qa.py --help` for the flags.", flush=True)
        _use_platform(config.accelerator)
        run(config)
    except JaxqaError as err:
        print(f"jaxqa: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxqa: interrupted", file=sys.stderr)
        return 130
    return 0

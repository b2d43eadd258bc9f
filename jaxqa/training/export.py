"""The trained model out of the run: saved in Hugging Face layout with the run's window settings, and
uploaded with --push_to_hub once it is complete."""

from __future__ import annotations

import logging
from pathlib import Path

from jaxqa import sharding
from jaxqa.data import hub
from jaxqa.models import weights
from jaxqa.training.steps import evaluated_params

log = logging.getLogger("jaxqa")


class Exporter:
    """Saves a state's model with what it needs to answer (`save_model`), and pushes a saved one (`push`)."""

    def __init__(self, parts):
        self.parts, self.config = parts, parts.config

    def save_model(self, state, out_dir: str | Path | None = None) -> Path:
        """The parameters (their moving average with --ema_decay) as a Hugging Face BertForQuestionAnswering directory (default
        `output_dir/model`): loadable by jaxqa, `QuestionAnswerer` and `transformers`; the run's window settings
        go with it (`weights.SETTINGS_FILE`): it answers in the windows it was trained in."""
        from flax import nnx

        out_dir = out_dir or Path(self.config.output_dir) / "model"
        params = nnx.to_pure_dict(sharding.to_host(evaluated_params(state)))  # every process takes part
        if not sharding.is_main_process():
            return Path(out_dir)
        return weights.save_pretrained(params, self.parts.model_config, out_dir, self.parts.tokenizer,
                                       {name: getattr(self.config, name) for name in weights.WINDOW_SETTINGS})

    def push(self, model_dir: Path | None) -> None:
        """--push_to_hub: the exported model directory, uploaded once it is complete. The final evaluation
        (before the run's `finish`) adds null_threshold.json to it; pushed before that, a SQuAD v2.0 model
        from the Hub would never abstain. Process 0 alone, the one that wrote the directory."""
        if self.parts.push_repo and model_dir and sharding.is_main_process():
            log.info("model uploaded to %s", hub.push(self.config, model_dir, self.parts.push_repo))

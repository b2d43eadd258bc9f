"""The Hugging Face Hub paths of a run: datasets by name (through the optional `datasets` package)
and uploading the final model. Both are checked before any training, so a run never dies at the end
for want of a token or a network."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from jaxqa import atomic
from jaxqa.errors import ConfigError

log = logging.getLogger("jaxqa")

SPLIT_FLAGS = {"train": "train_file", "validation": "validation_file", "test": "test_file"}


def dataset_files(config, out_dir: Path) -> dict[str, str]:
    """{flag: JSON-lines file} for each split of --dataset_name that the run needs and no file flag names.
    The records keep the SQuAD layout (id, question, context, answers), so they go through the same checks."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"--dataset_name {config.dataset_name} needs the optional `datasets` package "
                          "(pip install datasets) and network access to the Hub; or pass --train_file / "
                          "--validation_file / --test_file with local SQuAD-format files") from None
    wanted = {"train": config.do_train and not config.train_file,
              "validation": config.do_eval and not config.validation_file,
              "test": config.do_predict and not config.test_file}
    files = {}
    for split, needed in wanted.items():
        if not needed:
            continue
        try:
            dataset = datasets.load_dataset(config.dataset_name, config.dataset_config_name, split=split,
                                            cache_dir=config.cache_dir, token=config.token)
        except Exception as err:  # offline, unknown name, missing split: one message
            raise ConfigError(f"--dataset_name {config.dataset_name}: split {split!r} could not be loaded "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                              "check the name and network, or pass local files") from None
        path = out_dir / "hub_data" / f"{split}.jsonl"
        # Every process of a multi-host run writes the same file (same data): no writer's temporary is a leftover.
        with atomic.replacing(path, shared=True) as tmp:
            dataset.to_json(str(tmp), force_ascii=False)
        files[SPLIT_FLAGS[split]] = str(path)
        log.info("--dataset_name %s: %s split, %d records -> %s", config.dataset_name, split, len(dataset), path)
    return files


def check_push(config) -> str:
    """The repository id --push_to_hub will upload to, after checking the Hub accepts our token."""
    repo_id = config.hub_model_id or Path(config.output_dir).absolute().name
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise ConfigError("--push_to_hub: the Hugging Face Hub is switched off here (HF_HUB_OFFLINE is set, or "
                          "there is no network); drop the flag and upload output_dir/model later with "
                          "`huggingface-cli upload`")
    from huggingface_hub import HfApi

    try:
        HfApi(token=config.hub_token or config.token).whoami()
    except Exception as err:  # no token, bad token, no network
        raise ConfigError(f"--push_to_hub: the Hub did not accept the token ({type(err).__name__}); log in with "
                          "`huggingface-cli login` or pass --hub_token, or drop --push_to_hub") from None
    return repo_id


def push(config, model_dir: Path, repo_id: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=config.hub_token or config.token)
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(model_dir), commit_message="jaxqa fine-tuned model")
    return f"https://huggingface.co/{repo_id}"

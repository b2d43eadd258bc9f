"""A stand-in for the Hugging Face Hub, for runs started by the tests with this folder on PYTHONPATH:
`HfApi` accepts any token and, instead of uploading, appends one JSON line per call to the file named
by $JAXQA_FAKE_HUB_LOG (with the uploading process's --process_id and the files it would send)."""

import json
import os
import sys
from pathlib import Path

import huggingface_hub


def _record(call: str, **fields) -> None:
    argv = sys.argv
    process = argv[argv.index("--process_id") + 1] if "--process_id" in argv else "0"
    with open(os.environ["JAXQA_FAKE_HUB_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"call": call, "process_id": process, **fields}) + "\n")


class _FakeApi:
    def __init__(self, token=None, **_kwargs):
        self.token = token

    def whoami(self, *_args, **_kwargs):
        _record("whoami")
        return {"name": "tester"}

    def create_repo(self, repo_id, **_kwargs):
        _record("create_repo", repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, **_kwargs):
        files = sorted(p.name for p in Path(folder_path).glob("*")) if Path(folder_path).is_dir() else []
        _record("upload_folder", repo_id=repo_id, files=files)


if os.environ.get("JAXQA_FAKE_HUB_LOG"):
    huggingface_hub.HfApi = _FakeApi

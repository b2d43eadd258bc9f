"""Tokenised features cached on disk, so a repeated or resumed run skips tokenisation.

The key covers everything the features depend on: the examples themselves (not the file name, so
--dataset_name, --max_*_samples and edited files are all handled), the tokenizer's full definition,
the window settings, and the source of `jaxqa.data.features` (a changed pipeline never reads stale
features). Entries are written atomically; a damaged one is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from jaxqa import atomic
from jaxqa.data import features as features_module
from jaxqa.data.examples import Examples
from jaxqa.data.features import Features, tokenize

log = logging.getLogger("jaxqa")


def cache_key(examples: Examples, tokenizer, **settings) -> str:
    digest = hashlib.sha256()
    for column in (examples.ids, examples.questions, examples.contexts):
        digest.update("\x1f".join(column).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1e")
    digest.update(repr((examples.answer_texts, examples.answer_starts, examples.plausible_texts,
                        examples.plausible_starts)).encode("utf-8", "surrogatepass"))
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    for call_state in ("truncation", "padding"):  # set by each call, not part of the tokenizer
        definition.pop(call_state, None)
    digest.update(json.dumps(definition, sort_keys=True).encode())
    digest.update(repr((type(tokenizer).__name__, tokenizer.padding_side, sorted(settings.items()))).encode())
    digest.update(Path(features_module.__file__).read_bytes())
    return digest.hexdigest()[:32]


def cached_tokenize(examples: Examples, tokenizer, cache_dir: str | Path | None, *, overwrite: bool = False,
                    **settings) -> tuple[Features, bool]:
    """(features, whether they came from the cache); `settings` are `tokenize`'s window settings."""
    if cache_dir is None:
        return tokenize(examples, tokenizer, **settings), False
    path = Path(cache_dir) / f"{cache_key(examples, tokenizer, **settings)}.npz"
    if path.exists() and not overwrite:
        try:
            with np.load(path) as stored:
                features = Features(**{name: stored[name] for name in Features.__dataclass_fields__
                                       if name in stored.files})
            log.info("%d features of %d examples read from the feature cache %s", len(features), len(examples), path)
            return features, True
        except Exception as err:  # noqa: BLE001 - a damaged entry is rebuilt, never trusted
            log.warning("feature cache %s is unreadable (%s); tokenising again", path, err)
    features = tokenize(examples, tokenizer, **settings)
    with atomic.replacing(path, shared=True) as tmp, open(tmp, "wb") as file:
        np.savez(file, **{name: getattr(features, name) for name in Features.__dataclass_fields__
                          if getattr(features, name) is not None})
    return features, False

"""Shared fixtures: the real data in ../shared/data, the packaged MiniLM, a tiny random BERT."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"the shared data is missing: expected {DATA} (see ../shared/data/README.md)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from jaxqa.weights import packaged_model_dir

    return packaged_model_dir()


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir):
    from jaxqa.features import load_tokenizer

    return load_tokenizer(minilm_dir)


TINY_CONFIG = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=512, type_vocab_size=2,
                   hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def save_tiny_bert(out: Path, minilm_dir: Path, **overrides) -> Path:
    """A random BertForQuestionAnswering of TINY_CONFIG (+ overrides) saved by `transformers`
    (PyTorch) into `out`, with MiniLM's tokenizer."""
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(**{**TINY_CONFIG, **overrides}))
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    """A random tiny BertForQuestionAnswering saved by `transformers` (PyTorch) with MiniLM's tokenizer."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), minilm_dir)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def family_tokenizers(data_dir, minilm_dir) -> dict:
    """Tokenizer per encoder family: BPE (RoBERTa) and Unigram (XLM-R, ALBERT) trained here on SQuAD
    text in about 2 s, MiniLM's WordPiece directory for the BERT-vocabulary families."""
    import tiny_tokenizers

    texts = tiny_tokenizers.corpus(data_dir)
    bpe = tiny_tokenizers.bpe_roberta(texts)
    return {"bert": minilm_dir, "electra": minilm_dir, "distilbert": minilm_dir, "roberta": bpe,
            "xlm-roberta": tiny_tokenizers.unigram_xlmr(texts), "albert": tiny_tokenizers.unigram_albert(texts)}


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory, family_tokenizers):
    """`tiny_family_dir(family)`: a random tiny `transformers` `*ForQuestionAnswering` of that family
    saved with its tokenizer (made once per session)."""
    pytest.importorskip("torch")
    import tiny_tokenizers

    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            out = tmp_path_factory.mktemp(f"tiny_{family}")
            made[family] = tiny_tokenizers.save_tiny_model(out, family, family_tokenizers[family])
        return made[family]

    return get

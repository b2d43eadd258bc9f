"""Small tokenizers of each kind, trained here on real SQuAD text (no download), and tiny random
`transformers` QA models of each encoder family saved with them.

- `bpe_roberta`: byte-level BPE with RoBERTa's <s> q </s></s> c </s> post-processor (RoBERTa).
- `unigram_xlmr`: SentencePiece-style Unigram with XLM-R's special tokens and template (XLM-R).
- `unigram_albert`: Unigram, lower-cased, [CLS] q [SEP] c [SEP] with token types (ALBERT).
BERT, ELECTRA and DistilBERT use the packaged MiniLM's WordPiece tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

VOCAB_SIZE = 2000
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def corpus(data_dir: Path, max_chars: int = 1_500_000) -> list[str]:
    """Contexts and questions of SQuAD v1.1 train: about 1.5 MB of real English."""
    squad = json.loads((data_dir / "squad_v1.1/train.json").read_text(encoding="utf-8"))
    texts, size = [], 0
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            for text in [paragraph["context"]] + [qa["question"] for qa in paragraph["qas"]]:
                texts.append(text)
                size += len(text)
                if size >= max_chars:
                    return texts
    return texts


def bpe_roberta(texts: list[str]):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(texts, vocab_size=VOCAB_SIZE, min_frequency=2,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    model = json.loads(trainer._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=512)


def _unigram(texts: list[str], specials: list[str], unk: str, lowercase: bool) -> list[tuple[str, float]]:
    """(piece, score) of a Unigram model trained on `texts`, `specials` first in that order."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    tok = Tokenizer(Unigram())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tok.train_from_iterator(texts[:1500], UnigramTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token=unk))
    vocab = [tuple(p) for p in json.loads(tok.to_str())["model"]["vocab"]]
    assert [p for p, _ in vocab[: len(specials)]] == specials
    return vocab


def unigram_xlmr(texts: list[str]):
    from transformers import XLMRobertaTokenizer

    vocab = _unigram(texts, ["<s>", "<pad>", "</s>", "<unk>"], "<unk>", lowercase=False)
    return XLMRobertaTokenizer(vocab=vocab + [("<mask>", 0.0)], model_max_length=512)


def unigram_albert(texts: list[str]):
    from transformers import AlbertTokenizer

    vocab = _unigram(texts, ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>", lowercase=True)
    return AlbertTokenizer(vocab=vocab, model_max_length=512)


def save_tiny_model(out: Path, family: str, tokenizer, seed: int = 0, **overrides) -> Path:
    """A random tiny `transformers` `*ForQuestionAnswering` of `family` (TINY + `overrides`), saved
    with `tokenizer` (a tokenizer object, or a directory whose tokenizer files are copied)."""
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    vocab_size = len(tokenizer) if not isinstance(tokenizer, Path) else 30522
    pad = 0 if isinstance(tokenizer, Path) else tokenizer.pad_token_id
    common = dict(vocab_size=vocab_size, pad_token_id=pad, max_position_embeddings=128, **TINY)
    extra = {
        "bert": {},
        "roberta": dict(type_vocab_size=1, max_position_embeddings=130, bos_token_id=0, eos_token_id=2),
        "xlm-roberta": dict(type_vocab_size=1, max_position_embeddings=130, layer_norm_eps=1e-5,
                            bos_token_id=0, eos_token_id=2),
        "electra": dict(embedding_size=16),
        "albert": dict(embedding_size=16, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2, hidden_act="gelu_new", bos_token_id=2, eos_token_id=3),
        "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, dropout=0.1, attention_dropout=0.1),
    }[family]
    if family == "distilbert":
        common = {k: v for k, v in common.items() if k not in TINY}
    config = AutoConfig.for_model(family, **{**common, **extra, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_config(config)
    with torch.no_grad():  # random, not zero, biases and LayerNorms: every tensor must map right
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(out, safe_serialization=True)
    if isinstance(tokenizer, Path):
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(tokenizer / name, out / name)
    else:
        tokenizer.save_pretrained(str(out))
    return out

"""The Flax BERT equals transformers' PyTorch BertForQuestionAnswering; checkpoints load by name."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import require

from jaxqa.config import RunConfig
from jaxqa.data.examples import load_examples
from jaxqa.data.features import tokenize
from jaxqa.errors import ModelError
from jaxqa.models import weights
from jaxqa.training import train_state

torch = require("torch")
OPT = RunConfig(seed=0, dtype="float32", learning_rate=5e-5, weight_decay=0.01, adam_beta1=0.9,
                  adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, warmup_ratio=0.1,
                  warmup_steps=0)


def _torch_logits(model, feats, rows):
    with torch.no_grad():
        out = model(**{k: torch.tensor(v[rows]).long() for k, v in feats.model_inputs().items()})
    return out.start_logits.numpy(), out.end_logits.numpy()


def test_minilm_logits_match_transformers(minilm_dir, minilm_tokenizer, data_dir):
    """Real MiniLM, identical QA head in both, real SQuAD windows (with padding): |diff| < 1e-4."""
    from flax import nnx
    from transformers import BertForQuestionAnswering

    state = train_state.create_train_state(OPT, minilm_dir, total_steps=10)
    examples = load_examples(data_dir / "squad_v1.1/dev.json").select(range(24))
    feats = tokenize(examples, minilm_tokenizer, max_seq_length=256, doc_stride=128)
    reference = BertForQuestionAnswering.from_pretrained(str(minilm_dir)).eval()
    head = nnx.to_pure_dict(state.params)["qa_outputs"]
    with torch.no_grad():
        reference.qa_outputs.weight.copy_(torch.tensor(np.asarray(head["kernel"]).T))
        reference.qa_outputs.bias.copy_(torch.tensor(np.asarray(head["bias"])))
    rows = np.arange(16)
    start, end = jax.jit(train_state.eval_step)(state, {k: v[rows] for k, v in feats.model_inputs().items()})
    ref_start, ref_end = _torch_logits(reference, feats, rows)
    real = feats.attention_mask[rows] > 0
    assert real.sum() > 1000 and (~real).sum() > 100  # the batch really has padding
    assert np.abs(np.asarray(start) - ref_start)[real].max() < 1e-4
    assert np.abs(np.asarray(end) - ref_end)[real].max() < 1e-4


def test_checkpoint_with_qa_head_loads_exactly(tiny_bert_dir, minilm_tokenizer, data_dir):
    """A saved transformers QA model (head included) gives its own logits in jaxqa."""
    from transformers import BertForQuestionAnswering

    state = train_state.create_train_state(OPT, tiny_bert_dir, total_steps=10)
    feats = tokenize(load_examples(data_dir / "fixtures/flat_sample.json"), minilm_tokenizer, max_seq_length=128,
                     doc_stride=32)
    rows = np.arange(8)
    start, _ = train_state.eval_step(state, {k: v[rows] for k, v in feats.model_inputs().items()})
    ref_start, _ = _torch_logits(BertForQuestionAnswering.from_pretrained(str(tiny_bert_dir)).eval(), feats, rows)
    real = feats.attention_mask[rows] > 0
    assert np.abs(np.asarray(start) - ref_start)[real].max() < 1e-4


def test_pytorch_bin_reader_matches_torch(tmp_path):
    state = {"a.weight": torch.randn(3, 5), "b.bias": torch.arange(4, dtype=torch.int64),
             "c": torch.randn(6, 4).t(), "h": torch.randn(2, 2).half()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = weights.read_torch_pickle(tmp_path / "pytorch_model.bin")
    assert set(loaded) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(loaded[k], v.numpy())


def test_model_dir_without_weights_is_a_clear_error(tmp_path, tiny_bert_dir):
    (tmp_path / "config.json").write_text((tiny_bert_dir / "config.json").read_text())
    with pytest.raises(ModelError, match=r"no model weights found .*model\.safetensors.*point --model_name_or_path"):
        train_state.create_train_state(OPT, tmp_path, total_steps=1)


def test_missing_and_unexpected_tensors_are_named(tiny_bert_dir):
    tensors = weights.read_checkpoint(tiny_bert_dir)
    cfg = weights.load_config(tiny_bert_dir)
    broken = dict(tensors)
    del broken["bert.encoder.layer.1.output.dense.weight"]
    broken["bert.encoder.layer.1.extra.weight"] = np.zeros(3)
    with pytest.raises(ModelError, match=r"missing 1 tensor\(s\): encoder\.layer\.1\.output\.dense\.weight; "
                                         r"unexpected 1 tensor\(s\): encoder\.layer\.1\.extra\.weight"):
        weights.checkpoint_to_params(broken, cfg)
    _, has_head = weights.checkpoint_to_params({k: v for k, v in tensors.items() if "qa_outputs" not in k}, cfg)
    assert not has_head


def test_unsupported_model_type_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ModelError, match=r"config\.json: model_type 'gpt2' is not supported; jaxqa supports: "
                                         r"albert, bert, distilbert, electra, roberta, xlm-roberta$"):
        weights.load_config(tmp_path)


def test_hub_id_without_network_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"--model_name_or_path google-bert/bert-base-uncased: no such local "
                                         r"directory and the Hugging Face Hub could not provide it .*pass a local"):
        weights.resolve_model_dir("google-bert/bert-base-uncased")

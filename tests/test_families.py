"""Every encoder family against its `transformers` PyTorch twin: checkpoint in, same logits,
export back out; windows and labels with each tokenizer kind; a short fine-tune per family."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT, dot_product_attention_calls, model_graphdef, require
from flax import nnx
from test_features import _check_labels, _expected_windows

from jaxqa import sharding
from jaxqa.data.examples import load_examples
from jaxqa.data.features import check_window, load_tokenizer, tokenize
from jaxqa.errors import ConfigError
from jaxqa.models import weights
from jaxqa.models.families import FAMILIES
from jaxqa.training import steps, train_state

torch = require("torch")
FAMILY_NAMES = sorted(FAMILIES)


def _windows(model_dir, data_dir, n=10):
    """Real SQuAD windows of different lengths, so the batch has padding."""
    examples = load_examples(data_dir / "squad_v1.1/dev.json").select(range(0, 200, 20))
    feats = tokenize(examples, load_tokenizer(model_dir), max_seq_length=128, doc_stride=32)
    rows = np.argsort(feats.lengths)[:: max(len(feats) // n, 1)][:n]
    return {k: v[rows] for k, v in feats.model_inputs().items()}


def _torch_logits(model_dir, batch):
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir)).eval()
    inputs = {k: torch.tensor(v).long() for k, v in batch.items()}
    if model.config.model_type == "distilbert":
        inputs.pop("token_type_ids")
    elif model.config.type_vocab_size == 1:  # what HF pipelines pass: these tokenizers return no types
        inputs["token_type_ids"] = torch.zeros_like(inputs["token_type_ids"])
    with torch.no_grad():
        out = model(**inputs)
    return type(model).__name__, out.start_logits.numpy(), out.end_logits.numpy()


def _max_diff(a, b, real):
    return float(max(np.abs(np.asarray(a[0]) - b[0])[real].max(), np.abs(np.asarray(a[1]) - b[1])[real].max()))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_logits_match_transformers_and_export_round_trips(family, tiny_family_dir, data_dir, tmp_path):
    model_dir = tiny_family_dir(family)
    graphdef, params, cfg = train_state.load_model(model_dir)
    assert cfg.model_type == family
    batch = _windows(model_dir, data_dir)
    real = batch["attention_mask"] > 0
    assert (~real).sum() > 50 and len(np.unique(real.sum(1))) > 3  # padded rows of several lengths
    ours = jax.jit(lambda p, b: steps.forward(graphdef, p, b))(params, batch)
    name, *reference = _torch_logits(model_dir, batch)
    assert _max_diff(ours, reference, real) < 1e-4, family

    exported = weights.save_pretrained(nnx.to_pure_dict(params), cfg, tmp_path / "export", load_tokenizer(model_dir))
    exported_name, *again = _torch_logits(exported, batch)
    assert exported_name == name == FAMILIES[family].architecture
    assert _max_diff(again, reference, real) < 1e-4
    assert weights.load_config(exported) == cfg  # and jaxqa reads its own export back


@pytest.mark.parametrize("family", ["albert", "roberta"])
def test_fused_attention_and_remat_give_the_same_logits(family, tiny_family_dir, data_dir, monkeypatch):
    """With each family's quirks (ALBERT's shared layers and projection, RoBERTa's positions), under
    remat: the call fused attention makes where cuDNN runs (jax.nn.dot_product_attention on [batch, seq,
    heads, dim], padding masked by lengths; here as implementation="xla") gives the blocked kernel's
    logits. (On CPU fused attention itself selects the blocked kernel; remat's gradients: test_steps.)"""
    model_dir = tiny_family_dir(family)
    batch = _windows(model_dir, data_dir, n=4)
    graphdef, params, cfg = train_state.load_model(model_dir)
    kernel_graphdef = model_graphdef(cfg, fused_attention=True, remat=True, attention_kernel="xla")
    with dot_product_attention_calls(monkeypatch) as calls:
        fused = steps.forward(kernel_graphdef, params, batch)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    assert calls and set(calls) == {(4, batch["input_ids"].shape[1], cfg.num_attention_heads, head_dim)}
    plain = steps.forward(graphdef, params, batch)
    assert _max_diff(plain, [np.asarray(x) for x in fused], batch["attention_mask"] > 0) < 1e-4


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_parameter_has_logical_axis_names(family, tiny_family_dir):
    """`jaxqa.sharding` places parameters by these names; ALBERT's shared layers exist once."""
    cfg = weights.load_config(tiny_family_dir(family))
    model = nnx.eval_shape(lambda: train_state.build_model(cfg))
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = variable.get_metadata().get("out_sharding")
        assert names and len(names) == variable.value.ndim and all(n in sharding.RULES for n in names), path
    assert len(model.encoder.layers) == cfg.num_distinct_layers
    assert len(model.encoder.schedule) == cfg.num_hidden_layers * (cfg.inner_group_num if family == "albert" else 1)


def test_roberta_bpe_windows_give_back_the_gold_answers(family_tokenizers, data_dir):
    """RoBERTa's byte-level BPE (no token types, <s> q </s></s> c </s>) on real SQuAD dev: labelled
    windows' offsets cut the gold answer out of the context."""
    tokenizer = family_tokenizers["roberta"]
    examples = load_examples(data_dir / "squad_v1.1/dev.json")
    feats = tokenize(examples, tokenizer, max_seq_length=256, doc_stride=64)
    assert not feats.token_type_ids.any()  # segment ids are of no use here: sequence ids are
    counts = np.bincount(feats.example_index, minlength=len(examples))
    np.testing.assert_array_equal(counts, _expected_windows(examples, tokenizer, 256, 64, 64))
    unaligned = _check_labels(examples, feats)
    assert (feats.start_positions > 0).sum() > 0.9 * len(examples) and unaligned < 20


@pytest.mark.parametrize("family", ["xlm-roberta", "albert"])
def test_unigram_windows_label_the_gold_answers(family, family_tokenizers, data_dir):
    tokenizer = family_tokenizers[family]
    examples = load_examples(data_dir / "squad_v1.1/dev.json")
    feats = tokenize(examples, tokenizer, max_seq_length=256, doc_stride=64)
    unaligned = _check_labels(examples, feats)
    labelled = int((feats.start_positions > 0).sum())
    assert labelled > 0.9 * len(examples) and unaligned < 0.1 * labelled


def test_context_first_tokenizer_gets_context_question_pairs(minilm_dir, data_dir):
    """A tokenizer padding on the left (XLNet-style) gets (context, question), truncation of the
    context, as in Hugging Face's QA pipeline; the arrays stay padded on the right."""
    tokenizer = load_tokenizer(minilm_dir)
    tokenizer.padding_side = "left"
    examples = load_examples(data_dir / "squad_v1.1/dev.json").select(range(300))
    feats = tokenize(examples, tokenizer, max_seq_length=192, doc_stride=64)
    assert feats.attention_mask[:, 0].all() and (feats.offsets[:, 1, 0] >= 0).all()  # [CLS] context ...
    _check_labels(examples, feats)
    assert (feats.start_positions > 0).sum() > 0.9 * len(examples)


@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if f != "bert"])  # bert: test_cli.py
def test_fine_tune_each_family_through_run_qa(family, tiny_family_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(tiny_family_dir(family)),
         "--train_file", str(data_dir / "squad_v1.1/train.json"), "--validation_file",
         str(data_dir / "squad_v1.1/dev.json"), "--max_train_samples", "32", "--max_eval_samples", "24",
         "--do_train", "--do_eval", "--max_seq_length", "64", "--max_query_length", "24", "--doc_stride", "24",
         "--per_device_train_batch_size", "8", "--num_train_epochs", "1", "--learning_rate", "1e-3",
         "--output_dir", str(out), "--accelerator", "cpu"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_examples"] == 24 and 0 <= results["f1"] <= 100
    exported = json.loads((out / "model/config.json").read_text())
    assert exported["model_type"] == family and exported["architectures"] == [FAMILIES[family].architecture]


def test_window_longer_than_the_position_table_is_rejected(tiny_family_dir):
    """RoBERTa's 130 positions hold 128 tokens: positions start after the padding index (1)."""
    cfg = weights.load_config(tiny_family_dir("roberta"))
    tokenizer = load_tokenizer(tiny_family_dir("roberta"))
    check_window(128, 32, 64, tokenizer, cfg)
    with pytest.raises(ConfigError, match=r"--max_seq_length 129 exceeds the model's maximum of 128; lower it"):
        check_window(129, 32, 64, tokenizer, cfg)


def test_albert_sharded_step_equals_single_device_step(tmp_path, family_tokenizers, data_dir):
    """Shared layers and the embedding projection on 8 fake devices split by all three axes at once
    (data=2,fsdp=2,tensor=2): the same step as on one device (test_sharding.py takes each axis alone)."""
    import tiny_tokenizers

    model_dir = tiny_tokenizers.save_tiny_model(tmp_path / "albert64", "albert", family_tokenizers["albert"],
                                                hidden_size=64, num_attention_heads=8, intermediate_size=128)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "tests/sharding_worker.py"), "meshes", str(model_dir),
                           str(data_dir / "fixtures/flat_sample.json"), "data=2,fsdp=2,tensor=2"],
                          capture_output=True, text=True,
                          timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])["meshes"]
    for spec, run in runs.items():
        assert max(run["loss_diff"], run["logits_diff"], run["param_diff"], run["opt_diff"]) < 1e-5, (spec, run)
    mixed = runs["data=2,fsdp=2,tensor=2"]
    assert list(runs) == ["data=2,fsdp=2,tensor=2"] and mixed["param_bytes_device0"] < mixed["param_bytes"] / 3  # split 4 ways

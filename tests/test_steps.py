"""Loss against hand-computed values; padding gets no gradient; a train step learns."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxqa.config import RunConfig
from jaxqa.data import batching
from jaxqa.data.examples import load_examples
from jaxqa.data.features import tokenize
from jaxqa.models.loading import forward
from jaxqa.training import train_state
from jaxqa.training.steps import qa_loss

LN3 = math.log(3)


def _batch(**extra):
    batch = {
        "attention_mask": jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]]),
        "start_positions": jnp.array([1, 1]),
        "end_positions": jnp.array([0, 0]),
        "weights": jnp.array([1.0, 1.0]),
    }
    batch.update(extra)
    return batch


START = jnp.array([[0.0, 0.0, 0.0, 100.0], [0.0, LN3, 50.0, 50.0]])
END = jnp.array([[2.0, 2.0, 2.0, -7.0], [0.0, 0.0, 9.0, 9.0]])


def test_loss_hand_computed_with_padding():
    # Example 0: start and end uniform over 3 real tokens -> log 3 each (the 100 on padding is ignored).
    # Example 1: start p = 3/(1+3) -> log(4/3); end uniform over 2 -> log 2.
    # Loss = mean over examples of (start + end) / 2 = (log 3 + (log(4/3) + log 2) / 2) / 2 = 0.7945135
    loss = qa_loss(START, END, _batch())
    assert abs(float(loss) - 0.7945135) < 1e-6
    assert abs(float(loss) - (LN3 + 0.5 * math.log(8 / 3)) / 2) < 1e-6


def test_padding_gets_no_gradient_and_filler_rows_count_zero():
    grad_start, grad_end = jax.grad(lambda s, e: qa_loss(s, e, _batch()), argnums=(0, 1))(START, END)
    pad = _batch()["attention_mask"] == 0
    assert np.all(np.asarray(grad_start)[pad] == 0) and np.all(np.asarray(grad_end)[pad] == 0)
    assert np.all(np.asarray(grad_start)[~pad] != 0)
    # A filler row (weight 0) leaves the loss of the real row unchanged.
    only_first = qa_loss(START, END, _batch(weights=jnp.array([1.0, 0.0])))
    assert abs(float(only_first) - LN3) < 1e-6


OPT = RunConfig(seed=0, dtype="float32", learning_rate=3e-4, weight_decay=0.01, adam_beta1=0.9,
                  adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, warmup_ratio=0.0,
                  warmup_steps=0)


def test_train_steps_reduce_loss_on_real_batch(tiny_bert_dir, minilm_tokenizer, data_dir):
    feats = tokenize(load_examples(data_dir / "fixtures/flat_sample.json"), minilm_tokenizer,
                     max_seq_length=128, doc_stride=32)
    fast = dataclasses.replace(OPT, learning_rate=3e-3)  # a tiny model memorising one batch
    state = train_state.create_train_state(fast, tiny_bert_dir, total_steps=30)
    plan = batching.plan_batches(feats.lengths, 8, max_seq_length=128, bucket_width=None)[0]
    batch = batching.gather(feats.train_arrays(), plan)
    step = jax.jit(train_state.train_step, donate_argnums=0)
    losses = []
    for _ in range(30):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert int(state.step) == 30
    assert losses[-1] < 0.5 * losses[0], losses


def test_optimizer_skips_decay_on_bias_and_layernorm(tiny_bert_dir):
    """With lr schedule at its peak and zero gradients, only decayed tensors move."""
    from flax import nnx

    cfg = dataclasses.replace(OPT, weight_decay=0.5, max_grad_norm=0.0)
    state = train_state.create_train_state(cfg, tiny_bert_dir, total_steps=10)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
    updates, _ = state.tx.update(zeros, state.opt_state, state.params)
    flat = nnx.to_flat_state(updates)
    for path, value in flat:
        moved = bool(jnp.any(value.get_value() if hasattr(value, "get_value") else value != 0))
        assert moved == (path[-1] not in ("bias", "scale")), path


def test_layerwise_lr_decay_gives_each_layer_its_hand_computed_rate(tiny_bert_dir):
    """The tiny BERT has 2 layers: with D = 0.5 the embeddings move at lr/8, layer 0 at lr/4, layer 1 at
    lr/2, the QA head at lr. Adam's first update with gradients of one is -lr x factor / (1 + 1e-8)."""
    from flax import nnx

    cfg = dataclasses.replace(OPT, weight_decay=0.0, max_grad_norm=0.0, layerwise_lr_decay=0.5)
    state = train_state.create_train_state(cfg, tiny_bert_dir, total_steps=10)
    ones = jax.tree_util.tree_map(jnp.ones_like, state.params)
    updates, _ = state.tx.update(ones, state.opt_state, state.params)
    expected = {"embeddings": 3e-4 / 8, "layers/0": 3e-4 / 4, "layers/1": 3e-4 / 2, "qa_outputs": 3e-4}
    seen = set()
    for path, value in nnx.to_flat_state(updates):
        where = "/".join(map(str, path))
        part = next(k for k in expected if k in where)
        seen.add(part)
        np.testing.assert_allclose(np.asarray(value.get_value()), -expected[part], rtol=2e-5, err_msg=where)  # float32 Adam
    assert seen == set(expected)


# README's table ("Getting the most out of small data"): per part of the packaged 6-layer MiniLM, the
# exponent of D, then the learning-rate factor at D = 0.8 under jaxqa's rule and under ELECTRA's.
LAYERWISE_TABLE = {"QA head": (0, 1, 1), "layer 5 (top)": (1, 0.8, 0.64), "layer 4": (2, 0.64, 0.512),
                   "layer 3": (3, 0.512, 0.4096), "layer 2": (4, 0.4096, 0.32768), "layer 1": (5, 0.32768, 0.262144),
                   "layer 0 (bottom)": (6, 0.262144, 0.2097152), "embeddings": (7, 0.2097152, 0.16777216)}


def test_layerwise_lr_decay_is_readmes_table_for_the_packaged_minilm():
    """README documents the rule as a table of literal factors (ELECTRA's beside jaxqa's); every parameter
    of the packaged MiniLM gets, at D = 0.8, the jaxqa factor of its row."""
    import re

    from conftest import ROOT
    from flax import nnx

    from jaxqa.models import weights
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^  \| ([a-zA-Z][^|]*?) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", readme, re.M)
    assert {row[0]: tuple(float(x) for x in row[1:]) for row in rows} == LAYERWISE_TABLE
    config = weights.load_config(weights.resolve_model_dir(None))
    assert config.num_distinct_layers == 6
    _, params = nnx.split(nnx.eval_shape(lambda: train_state.build_model(config)), nnx.Param)
    factors = jax.tree_util.tree_map_with_path(lambda path, _: train_state.layer_lr_scale(path, 6, 0.8), params)
    seen = set()
    for path, factor in nnx.to_flat_state(factors):
        where = "/".join(map(str, path))
        part = ("QA head" if path[0] == "qa_outputs" else "embeddings" if "layers" not in path
                else next(row for row in LAYERWISE_TABLE if row.split(" (")[0] == f"layer {path[2]}"))
        seen.add(part)
        np.testing.assert_allclose(factor.get_value(), LAYERWISE_TABLE[part][1], rtol=1e-12, err_msg=where)
    assert seen == set(LAYERWISE_TABLE)


def test_adafactor_gets_adamws_learning_rate_and_weight_decay(tiny_bert_dir):
    """--adafactor as Hugging Face's Trainer builds it: with zero gradients only the decoupled weight
    decay moves a matrix, by -lr x wd x p (biases and LayerNorm not at all); with gradients of one every
    parameter moves by -lr (the normalised update is 1) plus that decay, a zero-initialised bias included
    (optax.adafactor's defaults: -wd x p whatever the rate, and a zero bias at lr x 1e-3)."""
    from flax import nnx

    cfg = dataclasses.replace(OPT, adafactor=True, weight_decay=0.01, max_grad_norm=0.0)
    state = train_state.create_train_state(cfg, tiny_bert_dir, total_steps=10)
    params = dict(nnx.to_flat_state(state.params))
    for gradient in (0.0, 1.0):
        grads = jax.tree.map(lambda p, g=gradient: jnp.full_like(p, g), state.params)
        updates, _ = jax.jit(state.tx.update)(grads, state.opt_state, state.params)
        for path, update in nnx.to_flat_state(updates):
            decay = 0.0 if path[-1] in ("bias", "scale") else 0.01
            expected = -3e-4 * (gradient + decay * np.asarray(params[path].get_value()))
            np.testing.assert_allclose(np.asarray(update.get_value()), expected, rtol=1e-5, atol=1e-12,
                                       err_msg=f"{'/'.join(map(str, path))}, gradients {gradient}")


def test_adafactor_steps_as_hugging_faces_adafactor():
    """Three steps on a 2 x 2 matrix and a bias against transformers' Adafactor(scale_parameter=False,
    relative_step=False) at the same rates (0.1, 0.075, 0.05), weight decay 0.5 on the matrix only. The
    first step by hand: G = [[1, 2], [3, 4]] has squared row means (2.5, 12.5), column means (5, 10), mean
    7.5, so its factored normalised update is G x sqrt(7.5 / (row x column)) = [[sqrt(.6), 2 sqrt(.3)],
    [3 sqrt(.12), 4 sqrt(.06)]] (RMS sqrt(.96) < 1: not clipped) and the matrix becomes 0.95 p - 0.1 x that;
    the bias's gradient [1, -3] normalises to [1, -1]."""
    import optax
    from conftest import require

    torch = require("torch")
    from transformers.optimization import Adafactor

    cfg = dataclasses.replace(OPT, adafactor=True, learning_rate=0.1, weight_decay=0.5, max_grad_norm=0.0)
    tx, schedule = train_state.make_optimizer(cfg, total_steps=4)
    params = {"dense": {"kernel": jnp.array([[1.0, -2.0], [0.5, 4.0]]), "bias": jnp.zeros(2)}}
    gradients = [([[1.0, 2.0], [3.0, 4.0]], [1.0, -3.0]), ([[-1.0, 0.5], [2.0, 0.1]], [0.2, 5.0]),
                 ([[0.3, -4.0], [1.0, 1.0]], [-2.0, 0.0])]
    kernel, bias = (torch.nn.Parameter(torch.tensor(np.asarray(x))) for x in params["dense"].values())
    reference = Adafactor([{"params": [kernel], "weight_decay": 0.5}, {"params": [bias], "weight_decay": 0.0}],
                          lr=0.1, scale_parameter=False, relative_step=False, warmup_init=False)
    opt_state = tx.init(params)
    for step, (g_kernel, g_bias) in enumerate(gradients):
        grads = {"dense": {"kernel": jnp.array(g_kernel), "bias": jnp.array(g_bias)}}
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        for group in reference.param_groups:
            group["lr"] = float(schedule(step))
        kernel.grad, bias.grad = torch.tensor(g_kernel), torch.tensor(g_bias)
        reference.step()
        if step == 0:
            np.testing.assert_allclose(params["dense"]["kernel"], [[0.87254033, -2.00954451], [0.37107695, 3.70202041]],
                                       rtol=1e-6)
            np.testing.assert_allclose(params["dense"]["bias"], [-0.1, 0.1], rtol=1e-6)
        np.testing.assert_allclose(params["dense"]["kernel"], kernel.detach().numpy(), rtol=1e-5, err_msg=step)
        np.testing.assert_allclose(params["dense"]["bias"], bias.detach().numpy(), rtol=1e-5, err_msg=step)


def test_warmup_ratio_rounds_up_as_hugging_face_does():
    """1,674 steps at --warmup_ratio 0.1: Hugging Face warms up for ceil(167.4) = 168 steps, so the rate
    is still rising at step 167 and peaks at step 168."""
    _, schedule = train_state.make_optimizer(dataclasses.replace(OPT, warmup_ratio=0.1), total_steps=1674)
    np.testing.assert_allclose([float(schedule(s)) for s in (167, 168)], [3e-4 * 167 / 168, 3e-4], rtol=1e-6)


def test_ema_follows_the_weights_and_is_what_evaluates_and_exports(tiny_bert_dir, data_dir, tmp_path):
    """Moving-average decay min(0.9, (1 + t) / (10 + t)): 2/11 after the first update, 3/12 after the second."""
    from flax import nnx

    cfg = dataclasses.replace(OPT, ema_decay=0.9)
    state = train_state.create_train_state(cfg, tiny_bert_dir, total_steps=10)
    batch = {k: jnp.asarray(v) for k, v in _real_batch(tiny_bert_dir, data_dir).items()}
    step = jax.jit(train_state.train_step)
    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    weights = [leaves(state.params)]
    for _ in range(2):
        state, _ = step(state, batch)
        weights.append(leaves(state.params))
    expected = [2 / 11 * a + 9 / 11 * b for a, b in zip(weights[0], weights[1])]
    expected = [3 / 12 * e + 9 / 12 * c for e, c in zip(expected, weights[2])]
    moved = False
    for got, want, raw in zip(leaves(state.ema_params), expected, weights[2]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        moved |= not np.allclose(got, raw, atol=1e-7)
    assert moved  # the average is not the raw weights
    logits = jax.jit(train_state.eval_step)(state, batch)
    ema_logits, raw_logits = (jax.jit(forward, static_argnums=0)(state.graphdef, w, batch)[0]
                              for w in (state.ema_params, state.params))
    np.testing.assert_allclose(np.asarray(logits[0]), np.asarray(ema_logits), atol=1e-6)
    assert np.abs(np.asarray(logits[0]) - np.asarray(raw_logits)).max() > 1e-4
    assert train_state.evaluated_params(state) is state.ema_params
    assert jax.tree.structure(state.ema_params) == jax.tree.structure(state.params)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.to_pure_dict(state.ema_params)))


def _real_batch(model_dir, data_dir, rows=8):
    from jaxqa.data.features import load_tokenizer

    feats = tokenize(load_examples(data_dir / "squad_v1.1/dev.json").select(range(24)), load_tokenizer(model_dir),
                     max_seq_length=128, doc_stride=32)
    batch = batching.gather(feats.train_arrays(), batching.plan_batches(feats.lengths, rows, max_seq_length=128,
                                                                         bucket_width=None)[0])
    batch["weights"][-1] = 0.0  # a filler row too
    return batch


def test_gradient_accumulation_is_one_big_batch(tmp_path, minilm_dir, data_dir):
    """Same 8 rows as 1, 2 or 4 micro-batches (no dropout, so the three are the same computation up to
    summation order): same loss, gradient norm and updated parameters."""
    from conftest import save_tiny_bert

    model_dir = save_tiny_bert(tmp_path, minilm_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = _real_batch(model_dir, data_dir)
    results = {}
    for n in (1, 2, 4):
        config = dataclasses.replace(OPT, adam_epsilon=1e-5, gradient_accumulation_steps=n)
        state, metrics = jax.jit(train_state.train_step)(train_state.create_train_state(config, model_dir,
                                                                                        total_steps=10), batch)
        results[n] = (float(metrics["loss"]), float(metrics["grad_norm"]), jax.tree.leaves(jax.device_get(state.params)))
    for n in (2, 4):
        assert abs(results[n][0] - results[1][0]) < 1e-6 and abs(results[n][1] - results[1][1]) < 1e-5
        assert max(float(np.abs(a - b).max()) for a, b in zip(results[n][2], results[1][2])) < 1e-5


def test_on_cpu_a_batch_trains_in_cache_sized_pieces_with_the_update_of_the_whole(tmp_path, minilm_dir, data_dir):
    """On CPU each micro-batch is cut into pieces of ~1,536 tokens (`steps.cache_split`: faster there,
    benchmarks/README.md): a 16 x 384 batch is scanned as 4 pieces, 8 x 128 stays whole; cut into pieces of 256
    tokens (4 of 2 rows) the update is that of the whole batch (no dropout: the same sums in another order)."""
    from conftest import save_tiny_bert

    model_dir = save_tiny_bert(tmp_path, minilm_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = _real_batch(model_dir, data_dir)
    whole = train_state.create_train_state(dataclasses.replace(OPT, adam_epsilon=1e-5), model_dir, total_steps=10)
    assert (whole.micro_batch_tokens, whole.batch_devices) == (1536, 1)  # a CPU mesh of one device

    def pieces(state, batch) -> list[int]:
        jaxpr = jax.make_jaxpr(train_state.train_step)(state, batch).jaxpr
        return [e.params["length"] for e in jaxpr.eqns if e.primitive.name == "scan"]

    wide = {k: jax.ShapeDtypeStruct((16, 384)[:v.ndim], v.dtype) for k, v in batch.items()}
    assert pieces(whole, wide) == [4] and pieces(whole, batch) == [1]
    cut = whole.replace(micro_batch_tokens=256)
    assert pieces(cut, batch) == [4]
    results = []
    for state in (whole.replace(micro_batch_tokens=0), cut):
        state, metrics = jax.jit(train_state.train_step)(state, batch)
        results.append((float(metrics["loss"]), float(metrics["grad_norm"]), jax.tree.leaves(jax.device_get(state.params))))
    assert abs(results[1][0] - results[0][0]) < 1e-6 and abs(results[1][1] - results[0][1]) < 1e-5
    assert max(float(np.abs(a - b).max()) for a, b in zip(results[1][2], results[0][2])) < 1e-5


def test_fused_attention_and_remat_compute_the_same(tiny_bert_dir, data_dir):
    """What each option changes on CPU, exercised where it differs. `fused_attention` keeps the blocked
    kernel (its cuDNN call is test_attention's) without dropout on probabilities: in training, the
    logits of a model whose attention dropout is 0, not those of the model with it. `remat` puts each
    layer in a checkpoint: the same gradients, dropout included (same keys)."""
    import dataclasses

    from conftest import model_graphdef, primitives
    from flax import nnx

    batch = _real_batch(tiny_bert_dir, data_dir)
    real = np.asarray(batch["attention_mask"]) > 0
    graphdef, params, cfg = train_state.load_model(tiny_bert_dir)
    fused_graphdef, _, _ = train_state.load_model(tiny_bert_dir, fused_attention=True)
    plan = nnx.merge(fused_graphdef, params).encoder.plan
    assert (plan.train.kernel, plan.eval.kernel) == ("blocked", "blocked")
    key = jax.random.key(0, impl="rbg")

    def train_logits(g):
        return [np.asarray(x)[real] for x in forward(g, params, batch, deterministic=False, dropout_key=key)]

    def gap(a, b):
        return max(float(np.abs(x - y).max()) for x, y in zip(a, b))

    fused = train_logits(fused_graphdef)
    assert gap(fused, train_logits(model_graphdef(dataclasses.replace(cfg, attention_probs_dropout_prob=0.0)))) < 1e-6
    assert gap(fused, train_logits(graphdef)) > 1e-4  # measured ~1e-3: dropout 0.1 on the probabilities

    remat_graphdef, _, _ = train_state.load_model(tiny_bert_dir, remat=True)

    def grad_fn(g):
        return jax.grad(lambda p: qa_loss(*forward(g, p, batch, deterministic=False, dropout_key=key), batch))

    def checkpoints(g):  # jax.checkpoint's primitive ("remat2" in JAX 0.4-0.10)
        return {"remat2", "checkpoint"} & primitives(jax.make_jaxpr(grad_fn(g))(params).jaxpr)

    assert checkpoints(remat_graphdef) and not checkpoints(graphdef)
    # Jitted (faster than op by op here). Relative to each gradient's scale (attention weights' are
    # ~5e-4): measured differences ~1e-10.
    grads = [jax.tree.leaves(jax.jit(grad_fn(g))(params)) for g in (graphdef, remat_graphdef)]
    for a, b in zip(*grads):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max() + 1e-9, a.shape


def test_filler_rows_stay_finite_whatever_their_labels(tiny_bert_dir, minilm_tokenizer, data_dir):
    """A short batch is topped up with copies of feature 0 cut to the batch's length; here feature 0's
    answer (tokens 72-76) lies past the cut (64). Loss and gradients stay finite and equal those of the
    real rows alone."""
    feats = tokenize(load_examples(data_dir / "fixtures/flat_sample.json"), minilm_tokenizer,
                     max_seq_length=128, doc_stride=32)
    arrays = {k: v[[4, 19, 23, 25]] for k, v in feats.train_arrays().items()}  # 4: answer at 72; others <= 62 tokens
    assert arrays["start_positions"][0] >= 64 and feats.lengths[[19, 23, 25]].max() <= 64
    state = train_state.create_train_state(OPT, tiny_bert_dir, total_steps=10)
    padded = batching.gather(arrays, batching.Batch(np.array([1, 2, 3, -1, -1]), 64))
    real = batching.gather(arrays, batching.Batch(np.array([1, 2, 3]), 64))

    @jax.jit  # one compiled program per batch shape, not an op-by-op gradient
    def loss_and_grads(batch):
        return jax.value_and_grad(lambda p: qa_loss(*forward(state.graphdef, p, batch), batch))(state.params)

    (loss, grads), (real_loss, real_grads) = loss_and_grads(padded), loss_and_grads(real)
    assert np.isfinite(float(loss)) and abs(float(loss) - float(real_loss)) < 1e-5
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(real_grads))) < 1e-5
    _, metrics = jax.jit(train_state.train_step)(state, padded)
    assert np.isfinite(float(metrics["loss"])) and bool(metrics["params_finite"])


def test_all_answers_loss_takes_any_annotators_span_and_leans_to_the_majority():
    """--train_on_all_answers: with one answer per row the loss is the first-answer loss; with three
    annotators (2 on position 1, 1 on position 2) a model sure of either gold span loses little where the
    first-answer loss (position 2 first) would punish position 1, and gradient descent from uniform logits
    moves the probability to the majority's position, the other gold one keeping more than the rest."""
    one = _batch(start_targets=jax.nn.one_hot(jnp.array([1, 1]), 4, dtype=jnp.int8),
                 end_targets=jax.nn.one_hot(jnp.array([0, 0]), 4, dtype=jnp.int8))
    assert abs(float(qa_loss(START, END, one)) - float(qa_loss(START, END, _batch()))) < 1e-6
    votes = jnp.array([[0, 2, 1, 0]], jnp.int8)
    gold = dict(attention_mask=jnp.ones((1, 4), jnp.int32), start_positions=jnp.array([2]),
                end_positions=jnp.array([2]), weights=jnp.array([1.0]))
    every = dict(gold, start_targets=votes, end_targets=votes)
    sure_of_1 = jnp.array([[0.0, 20.0, 0.0, 0.0]])
    assert float(qa_loss(sure_of_1, sure_of_1, every)) < 0.5 < 10 < float(qa_loss(sure_of_1, sure_of_1, gold))
    logits = jnp.zeros((1, 4))
    for _ in range(200):
        logits = logits - 1.0 * jax.grad(lambda s: qa_loss(s, s, every))(logits)
    probs = np.asarray(jax.nn.softmax(logits))[0]
    assert probs[1] > 0.99 and probs[2] > 2 * probs[0] == 2 * probs[3], probs


def test_a_run_trains_on_all_answers_of_several_files_and_reads_them_back_from_the_feature_cache(
        tmp_path, tiny_bert_dir, data_dir, caplog):
    """--train_on_all_answers through the run: both files' windows carry their annotators' counts (v1.1's
    train file lists 3 answers per question, v2.0's none for its unanswerable ones), the train step takes
    them, and a second run reads the same targets from the feature cache."""
    from jaxqa.training.trainer import Trainer

    config = RunConfig(model_name_or_path=str(tiny_bert_dir), do_train=True, max_train_samples=16,
                       train_file=f"{data_dir / 'squad_v1.1/train.json'},{data_dir / 'squad_v2.0/train.json'}",
                       version_2_with_negative=True, max_seq_length=128, doc_stride=64, pad_to_max_length=True,
                       per_device_train_batch_size=8, num_train_epochs=1.0, learning_rate=1e-3, logging_steps=1,
                       seed=5, output_dir=str(tmp_path / "out"), accelerator="cpu", train_on_all_answers=True,
                       feature_cache_dir=str(tmp_path / "features"))
    trainer = Trainer(config)
    feats, examples = trainer.train_features, trainer.parts.splits["train"].examples
    votes = feats.start_targets.sum(axis=1)
    holds = feats.start_positions != feats.cls_index
    answers = np.array([len(a) for a in examples.answer_texts])[feats.example_index]
    assert (votes[~holds] == 1).all() and (feats.start_targets[~holds, 0] == 1).all()  # "no answer": [CLS], once
    assert (votes[holds] == answers[holds]).mean() > 0.9 and (answers[holds] == 3).all()
    assert examples.is_impossible.sum() > 0 and (feats.end_targets.sum(axis=1) == votes).all()
    history = trainer.fit()
    losses = [row["loss"] for row in history if "loss" in row]
    assert trainer.state_step == trainer.total_steps == len(losses) > 1 and np.isfinite(losses).all(), history
    caplog.set_level("INFO", logger="jaxqa")
    cached = Trainer(dataclasses.replace(config, output_dir=str(tmp_path / "again"))).train_features
    assert caplog.text.count("read from the feature cache") == 2
    np.testing.assert_array_equal(cached.start_targets, feats.start_targets)
    np.testing.assert_array_equal(cached.end_targets, feats.end_targets)


def test_a_run_trains_the_plausible_answer_head_beside_the_others_and_exports_without_it(
        tmp_path, tiny_bert_dir, data_dir, caplog):
    """--plausible_answer_loss_weight through the run, on SQuAD v2.0's train file: its windows carry the auxiliary
    labels (an unanswerable question's plausible answer, counted in the log), the train step moves the auxiliary
    head, every other parameter starts as it would without the flag, and the exported model has no trace of it."""
    from flax import nnx
    from safetensors.numpy import load_file

    from jaxqa.models.loading import load_model
    from jaxqa.training.trainer import Trainer

    config = RunConfig(model_name_or_path=str(tiny_bert_dir), do_train=True, max_train_samples=24,
                       train_file=str(data_dir / "squad_v2.0/train.json"), version_2_with_negative=True,
                       max_seq_length=128, doc_stride=64, pad_to_max_length=True, per_device_train_batch_size=8,
                       num_train_epochs=1.0, learning_rate=1e-3, logging_steps=1, seed=5, accelerator="cpu",
                       output_dir=str(tmp_path / "out"), plausible_answer_loss_weight=1.0)
    caplog.set_level("INFO", logger="jaxqa")
    trainer = Trainer(config)
    feats, examples = trainer.train_features, trainer.parts.splits["train"].examples
    tempting = feats.plausible_start_positions != feats.start_positions
    assert tempting.sum() > 0 and examples.is_impossible[feats.example_index[tempting]].all()
    assert f"{int(tempting.sum())} of them with a plausible answer for the auxiliary span head" in caplog.text
    def plain(params):
        return jax.tree.map(np.asarray, nnx.to_pure_dict(params))

    without = plain(train_state.create_train_state(dataclasses.replace(config, plausible_answer_loss_weight=0.0),
                                                   tiny_bert_dir, total_steps=1).params)
    start = plain(trainer.state.params)
    assert set(start) - set(without) == {"plausible_outputs"}
    jax.tree.map(np.testing.assert_array_equal, {k: v for k, v in start.items() if k in without}, without)
    history = trainer.fit()
    assert trainer.state_step == trainer.total_steps == len([r for r in history if "loss" in r]) > 1
    moved = np.abs(plain(trainer.state.params)["plausible_outputs"]["kernel"] - start["plausible_outputs"]["kernel"])
    moved = moved.max()
    assert moved > 1e-4, moved
    exported = trainer.save_model()
    assert not [name for name in load_file(str(exported / "model.safetensors")) if "plausible" in name]
    assert "plausible_outputs" not in nnx.to_pure_dict(load_model(exported)[1])

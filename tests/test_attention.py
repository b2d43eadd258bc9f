"""The blocked attention and the position-hash dropout against plain reference computations; which
attention kernel runs (the decision table, the log line) and the lengths mask that cuDNN's kernel
uses, against right- and left-padded batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxqa.models import encoder
from jaxqa.models.attention import attention, check_right_padded, choose_attention, target_platform
from jaxqa.models.dropout import dropout, keep_scale

B, H, S, D = 4, 3, 40, 8
SEEDS = jnp.array([123, 456], jnp.uint32)


def _inputs():
    rng = np.random.default_rng(0)
    q, k, v, d_out = (jnp.asarray(rng.standard_normal((B, H, S, D)), jnp.float32) for _ in range(4))
    lengths = jnp.array([40, 31, 17, 1])  # padding at the end, one window with a single real token
    mask_bias = jnp.where(jnp.arange(S)[None, :] < lengths[:, None], 0.0, -1e9)[:, None, None, :]
    return q, k, v, d_out, mask_bias.astype(jnp.float32)


def _reference(q, k, v, mask_bias, rate):
    """einsum -> softmax -> dropout (the same mask) -> einsum, differentiated by JAX."""
    probs = jax.nn.softmax(jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(D) + mask_bias, axis=-1)
    if rate:
        probs = probs * keep_scale(SEEDS, jnp.arange(B, dtype=jnp.uint32), (H, S, S), rate)
    return jnp.einsum("bhqk,bhkd->bhqd", probs, v)


@pytest.mark.parametrize("rate", [0.0, 0.3])
@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_blocked_attention_equals_plain_forward_and_gradients(rate, blocks):
    """Output and the gradients of q, k, v equal the plain computation's with the same dropout mask,
    in one block or in blocks of rows (the backward pass recomputes probabilities and mask)."""
    q, k, v, d_out, mask_bias = _inputs()

    def loss(fn):
        return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v) * d_out), argnums=(0, 1, 2)))

    want, want_grads = loss(lambda q, k, v: _reference(q, k, v, mask_bias, rate))(q, k, v)
    got, got_grads = loss(lambda q, k, v: attention(jnp.stack([q, k, v], axis=1), mask_bias, dropout_rate=rate,
                                                    seeds=SEEDS, blocks=blocks))(q, k, v)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    for name, g, w in zip("qkv", got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"d{name}")


def test_attention_without_dropout_equals_jax_dot_product_attention():
    q, k, v, _, mask_bias = _inputs()
    lengths = jnp.array([40, 31, 17, 1])
    want = jax.nn.dot_product_attention(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)),
                                        key_value_seq_lengths=lengths).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(attention(jnp.stack([q, k, v], axis=1), mask_bias, blocks=2), want, atol=2e-6)


def test_dropout_mask_keeps_the_right_share_and_is_uncorrelated():
    """Keep rate 1 - p within 4 standard errors over 2.4M elements; neighbours along a row, adjacent
    rows and two seeds agree no more than independent draws do (|correlation| < 0.005)."""
    rate, shape = 0.1, (16, 384, 384)
    kept = np.asarray(keep_scale(SEEDS, jnp.arange(shape[0], dtype=jnp.uint32), shape[1:], rate)) > 0
    n = kept.size
    assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / n)
    other = np.asarray(keep_scale(SEEDS + 1, jnp.arange(shape[0], dtype=jnp.uint32), shape[1:], rate)) > 0

    def corr(a, b):
        return np.corrcoef(a.ravel().astype(np.float32), b.ravel().astype(np.float32))[0, 1]

    assert abs(corr(kept[..., 1:], kept[..., :-1])) < 0.005  # neighbours in a row
    assert abs(corr(kept[:, 1:], kept[:, :-1])) < 0.005  # the next row
    assert abs(corr(kept[1:], kept[:-1])) < 0.005  # the next batch row
    assert abs(corr(kept, other)) < 0.005  # another seed
    # A block of rows gets the rows' own masks (what the blocked attention relies on).
    rows = jnp.array([5, 2], jnp.uint32)
    np.testing.assert_array_equal(np.asarray(keep_scale(SEEDS, rows, shape[1:], rate)) > 0, kept[[5, 2]])


def test_dropout_scales_the_kept_elements():
    x = jnp.ones((64, 1000))
    out = np.asarray(dropout(x, 0.25, SEEDS))
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs(out.mean() - 1.0) < 0.01


# --- which attention runs ----------------------------------------------------------------------------

BF16, F16, F32 = jnp.bfloat16, jnp.float16, jnp.float32
HOPPER, AMPERE = (9, 0), (8, 0)


@pytest.mark.parametrize("platform, dtype, head_dim, dropout, padding, capability, kernel, reason", [
    # dropout on probabilities: only the blocked kernel has it, on every platform
    ("cuda", BF16, 64, 0.1, "right", HOPPER, "blocked", "dropout 0.1 on probabilities"),
    ("cpu", F32, 64, 0.1, "right", None, "blocked", "dropout 0.1 on probabilities"),
    # not CUDA: no cuDNN
    ("cpu", BF16, 64, 0.0, "right", None, "blocked", "CPU: rows in blocks whose scores stay in cache"),
    ("tpu", BF16, 64, 0.0, "right", None, "blocked", "TPU: no cuDNN"),
    ("rocm", BF16, 64, 0.0, "right", None, "blocked", "rocm: no cuDNN"),
    # CUDA, float32: flash needs 16-bit inputs
    ("cuda", F32, 64, 0.0, "right", HOPPER, "blocked", "float32: cuDNN flash needs bf16 or fp16"),
    # CUDA, head size: a multiple of 8, up to 128 (256 on Hopper and later)
    ("cuda", BF16, 20, 0.0, "right", HOPPER, "blocked", "head_dim 20: cuDNN flash needs a multiple of 8 up to 256"),
    ("cuda", BF16, 256, 0.0, "right", AMPERE, "blocked", "head_dim 256: cuDNN flash needs a multiple of 8 up to 128"),
    ("cuda", BF16, 256, 0.0, "right", None, "blocked", "up to 128"),  # unknown GPU (lowered from a CPU): pre-Hopper
    ("cuda", BF16, 264, 0.0, "right", HOPPER, "blocked", "head_dim 264: cuDNN flash needs a multiple of 8 up to 256"),
    # CUDA, left padding: lengths assume right padding, and cuDNN rejects the [B, 1, 1, S] bias
    ("cuda", BF16, 64, 0.0, "left", HOPPER, "blocked", "left-padded: cuDNN masks padding by lengths"),
    # CUDA, everything in order: cuDNN flash
    ("cuda", BF16, 64, 0.0, "right", HOPPER, "cudnn", "bf16, head_dim 64, no dropout, right-padded"),
    ("cuda", F16, 32, 0.0, "right", None, "cudnn", "fp16, head_dim 32, no dropout, right-padded"),
    ("cuda", BF16, 128, 0.0, "right", AMPERE, "cudnn", "bf16, head_dim 128"),
    ("cuda", BF16, 256, 0.0, "right", HOPPER, "cudnn", "bf16, head_dim 256"),
])
def test_attention_decision_table(platform, dtype, head_dim, dropout, padding, capability, kernel, reason):
    choice = choose_attention(platform, dtype, head_dim, dropout, padding, compute_capability=capability)
    assert choice.kernel == kernel and reason in choice.reason, choice
    assert str(choice).startswith({"cudnn": "cudnn flash (", "blocked": "blocked kernel ("}[kernel])


@pytest.mark.parametrize("requested, platform, dtype, dropout, padding, refusal", [
    ("xla", "cuda", BF16, 0.1, "right", "has no dropout on probabilities"),
    ("cudnn", "cuda", BF16, 0.1, "right", "has no dropout on probabilities"),
    ("cudnn", "cpu", BF16, 0.0, "right", "cuDNN flash attention cannot run this attention: CPU"),
    ("cudnn", "cuda", F32, 0.0, "right", "cannot run this attention: float32"),
    ("xla", "cpu", F32, 0.0, "left", "assume right padding; the batches are left-padded"),
    ("flash", "cuda", BF16, 0.0, "right", "attention kernel 'flash' is unknown"),
    ("xla", "cpu", F32, 0.0, "right", None),
    ("blocked", "cuda", BF16, 0.1, "left", None),
    ("cudnn", "cuda", BF16, 0.0, "right", None),
])
def test_a_requested_kernel_runs_or_is_refused(requested, platform, dtype, dropout, padding, refusal):
    if refusal is None:
        assert choose_attention(platform, dtype, 64, dropout, padding, requested=requested).kernel == requested
    else:
        with pytest.raises(ValueError, match=refusal):
            choose_attention(platform, dtype, 64, dropout, padding, requested=requested)


def test_target_platform_names_platforms_as_jax_export_does():
    assert target_platform() == jax.default_backend() == "cpu"
    assert target_platform("gpu") == "cuda" and target_platform("TPU") == "tpu" and target_platform("cuda") == "cuda"


SMALL = encoder.EncoderConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=128)  # head_dim 16; dropout 0.1 on probabilities


def _build(cfg=SMALL, **kwargs):
    from flax import nnx

    return encoder.EncoderForQuestionAnswering(cfg, rngs=nnx.Rngs(params=0), **kwargs)


@pytest.mark.parametrize("platform, dtype, fused, train, evaluation", [
    ("cuda", BF16, False, "blocked", "cudnn"),  # BERT's attention dropout in training; none in evaluation
    ("cuda", BF16, True, "cudnn", "cudnn"),  # --attention_dropout false
    ("cuda", F32, True, "blocked", "blocked"),
    ("tpu", BF16, True, "blocked", "blocked"),
    ("cpu", BF16, True, "blocked", "blocked"),
])
def test_the_model_plans_attention_for_its_target_platform(platform, dtype, fused, train, evaluation):
    from flax import nnx

    model = nnx.eval_shape(lambda: _build(dtype=dtype, fused_attention=fused, platform=platform))
    plan = model.encoder.plan
    assert (plan.platform, plan.train.kernel, plan.eval.kernel) == (platform, train, evaluation)
    assert all(layer.attention.plan == plan for layer in model.encoder.layers)


def test_the_choice_is_logged_once_naming_the_kernel_and_why(monkeypatch, caplog):
    from flax import nnx

    monkeypatch.setattr(encoder, "_logged", set())
    with caplog.at_level("INFO", logger="jaxqa"):
        for _ in range(3):  # a run builds its model several times (shapes, initialisation)
            nnx.eval_shape(lambda: _build(dtype=BF16, platform="cuda"))
        nnx.eval_shape(lambda: _build(dtype=BF16, platform="cuda", fused_attention=True))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("attention:")]
    assert lines == [
        "attention: training blocked kernel (dropout 0.1 on probabilities); evaluation cudnn flash "
        "(bf16, head_dim 16, no dropout, right-padded)",
        "attention: cudnn flash (bf16, head_dim 16, no dropout, right-padded)"], lines


# --- the lengths mask (cuDNN's and XLA's dot_product_attention) against padding on either side ----------------

def _padded(side: str):
    """q, k, v [batch, seq, heads, dim], lengths, the boolean mask of real keys, padded on `side`."""
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((B, S, H, D)), jnp.float32) for _ in range(3))
    lengths = jnp.array([40, 31, 17, 1], jnp.int32)
    positions = jnp.arange(S)[None, :]
    real = positions < lengths[:, None] if side == "right" else positions >= S - lengths[:, None]
    return q, k, v, lengths, real


def _masked_reference(q, k, v, real):
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(D) + jnp.where(real, 0.0, -1e9)[:, None, None, :]
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)


def _blocked(q, k, v, real):
    qkv = jnp.stack([q, k, v], axis=1).transpose(0, 1, 3, 2, 4)  # [batch, 3, heads, seq, dim]
    bias = jnp.where(real, 0.0, -1e9)[:, None, None, :].astype(jnp.float32)
    return attention(qkv, bias, blocks=2).transpose(0, 2, 1, 3)


def test_lengths_mask_right_padded_equals_the_bias_mask():
    q, k, v, lengths, real = _padded("right")
    want = _masked_reference(q, k, v, real)
    got = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="xla")
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(_blocked(q, k, v, real), want, atol=2e-6)


def test_lengths_mask_is_wrong_for_a_left_padded_batch_so_it_falls_back_or_is_refused():
    """Lengths say "the first n keys are real": on a left-padded batch they attend to padding and drop
    real tokens. So left padding never gets the cuDNN kernel (the blocked kernel's bias mask is right
    there), a requested lengths kernel is refused, and a concrete left-padded mask is refused."""
    q, k, v, lengths, real = _padded("left")
    want = _masked_reference(q, k, v, real)
    by_lengths = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="xla")
    assert float(jnp.abs(by_lengths - want)[1:].max()) > 0.1  # rows 1-3 are padded: all wrong
    np.testing.assert_allclose(_blocked(q, k, v, real), want, atol=2e-6)  # the fallback is right

    assert choose_attention("cuda", BF16, 64, 0.0, "left").kernel == "blocked"
    with pytest.raises(ValueError, match="assume right padding"):
        _build(fused_attention=True, padding_side="left", attention_kernel="xla")
    check_right_padded(_padded("right")[4])
    with pytest.raises(ValueError, match=r"rows \[1, 2, 3\] are not right-padded"):
        check_right_padded(real)


def _real_batch(tokenizer, data_dir, rows=8, seq=128):
    from jaxqa.data import batching
    from jaxqa.data.examples import load_examples
    from jaxqa.data.features import tokenize

    feats = tokenize(load_examples(data_dir / "fixtures/flat_sample.json"), tokenizer, max_seq_length=seq,
                     doc_stride=64)
    plan = batching.plan_batches(feats.lengths, rows, max_seq_length=seq, bucket_width=None)[0]
    return batching.gather(feats.train_arrays(), plan)


def test_the_lengths_path_of_the_model_equals_the_blocked_kernel(minilm_tokenizer, data_dir):
    """The encoder's cuDNN branch ([batch, seq, heads, dim], padding masked by lengths), run here
    with XLA's implementation: the blocked kernel's logits, in evaluation and in training (hidden
    dropout on, same keys: no attention-probability dropout on either side), on real right-padded
    windows; a concrete left-padded mask is refused."""
    from flax import nnx

    from jaxqa.models.loading import forward

    batch = _real_batch(minilm_tokenizer, data_dir)
    real = np.asarray(batch["attention_mask"]) > 0
    assert (~real).sum() > 50 and len(np.unique(real.sum(1))) > 3  # padded rows of several lengths
    blocked_graph = nnx.split(nnx.eval_shape(lambda: _build(fused_attention=True)), nnx.Param)[0]
    lengths_model = nnx.eval_shape(lambda: _build(fused_attention=True, attention_kernel="xla"))
    assert lengths_model.encoder.plan.train.kernel == lengths_model.encoder.plan.eval.kernel == "xla"
    lengths_graph = nnx.split(lengths_model, nnx.Param)[0]
    rng = np.random.default_rng(0)  # random weights made on the host: initialising them compiles for longer
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(0.0, 0.05, x.shape), x.dtype),
                          nnx.state(lengths_model, nnx.Param))

    @jax.jit  # one program for the four forward passes: one compilation
    def both(params, batch, key):
        return [[forward(g, params, batch, deterministic=deterministic, dropout_key=key)
                 for g in (blocked_graph, lengths_graph)] for deterministic in (True, False)]

    for want, got in both(params, batch, jax.random.key(0, impl="rbg")):
        for a, b in zip(want, got):
            np.testing.assert_allclose(np.asarray(a)[real], np.asarray(b)[real], atol=1e-5)
    left = {**batch, "attention_mask": batch["attention_mask"][:, ::-1]}
    with pytest.raises(ValueError, match="not right-padded"):
        forward(lengths_graph, params, left)

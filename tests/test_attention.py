"""The blocked attention and the position-hash dropout against plain reference computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxqa.models.attention import attention
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

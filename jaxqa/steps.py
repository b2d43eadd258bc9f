"""The pure functions that run on the accelerator: loss, one training step, one eval forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# Dropout masks come from the RBG generator: its bits cost a fraction of threefry's on CPU
# (~10% of a MiniLM train step); the state stores raw key data of this implementation.
DROPOUT_PRNG = "rbg"


def span_cross_entropy(logits, positions, attention_mask):
    """Per-example cross-entropy of the gold position among the example's own (unpadded) tokens."""
    logits = jnp.where(attention_mask > 0, logits.astype(jnp.float32), -jnp.inf)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, positions[:, None], axis=-1)[:, 0]


def qa_loss(start_logits, end_logits, batch):
    """Mean of start and end cross-entropies, averaged over real (weight 1) rows."""
    per_example = 0.5 * (span_cross_entropy(start_logits, batch["start_positions"], batch["attention_mask"])
                         + span_cross_entropy(end_logits, batch["end_positions"], batch["attention_mask"]))
    weights = batch["weights"]
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def forward(graphdef, params, batch, *, deterministic: bool = True, dropout_key=None):
    """(start_logits, end_logits) of the model `graphdef` with `params` on `batch`."""
    model = nnx.merge(graphdef, params)
    rngs = None if deterministic else nnx.Rngs(dropout=dropout_key)
    return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                 deterministic=deterministic, rngs=rngs)


def train_step(state, batch):
    """One optimizer step. Dropout keys come from (state key, step): a resumed run draws the same ones."""
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.dropout_key, impl=DROPOUT_PRNG), state.step)

    def loss_fn(params):
        start_logits, end_logits = forward(state.graphdef, params, batch, deterministic=False,
                                            dropout_key=dropout_key)
        return qa_loss(start_logits, end_logits, batch)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Checked before a checkpoint is written, so a diverged state is never saved.
    params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "learning_rate": state.lr_schedule(state.step),
               "params_finite": params_finite}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(state, batch):
    """Start and end logits, float32 [batch, seq], without dropout."""
    return forward(state.graphdef, state.params, batch, deterministic=True)

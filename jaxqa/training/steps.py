"""The pure functions that run on the accelerator: loss, one training step, one eval forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxqa.models.loading import forward

# Dropout keys are of the RBG implementation (the state stores its raw key data); each dropout call
# draws two seed words from them, and the masks are hashes of positions (`jaxqa.models.dropout`).
DROPOUT_PRNG = "rbg"


def span_cross_entropy(logits, positions, attention_mask):
    """Per-example cross-entropy of the gold position among the example's own (unpadded) tokens."""
    logits = jnp.where(attention_mask > 0, logits.astype(jnp.float32), -jnp.inf)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, positions[:, None], axis=-1)[:, 0]


def summed_loss(start_logits, end_logits, batch):
    """Sum over real (weight > 0) rows of the mean of start and end cross-entropies.

    Weight-0 rows are selected out, not multiplied by 0: a filler row's labels may lie past the batch's
    length (NaN x 0 is NaN), and `where` also stops any non-finite value of theirs in the gradient."""
    per_example = 0.5 * (span_cross_entropy(start_logits, batch["start_positions"], batch["attention_mask"])
                         + span_cross_entropy(end_logits, batch["end_positions"], batch["attention_mask"]))
    return jnp.sum(jnp.where(batch["weights"] > 0, per_example * batch["weights"], 0.0))


def qa_loss(start_logits, end_logits, batch):
    """The loss of a batch: `summed_loss` averaged over its real rows."""
    return summed_loss(start_logits, end_logits, batch) / jnp.maximum(jnp.sum(batch["weights"]), 1.0)


def evaluated_params(state):
    """The weights a run evaluates and exports: the moving average when it keeps one, else the trained ones."""
    return state.ema_params if state.ema_decay else state.params


def ema_update(ema_params, params, decay: float, step):
    """The moving average after update number `step` (1, 2, ...): decay min(decay, (1 + step) / (10 + step)),
    so the first updates follow the fast-moving weights instead of staying at the pretrained ones."""
    rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step)).astype(jnp.float32)
    return jax.tree.map(lambda e, p: rate * e + (1.0 - rate) * p, ema_params, params)


def train_step(state, batch):
    """One optimizer step over the batch, taken as `state.accumulation_steps` micro-batches in a scan
    (gradient accumulation: the same update as one big batch, a fraction of the activation memory).
    Dropout keys come from (state key, step, micro-batch): a resumed run draws the same ones. With
    `state.ema_decay`, the parameters' moving average is updated too."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.dropout_key, impl=DROPOUT_PRNG), state.step)
    n = state.accumulation_steps  # micro-batch i = rows i, i+n, ...: each device keeps its own rows
    micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1), batch)

    def micro_loss(params, micro_batch, micro_key):
        start_logits, end_logits = forward(state.graphdef, params, micro_batch, deterministic=False,
                                           dropout_key=micro_key)
        return summed_loss(start_logits, end_logits, micro_batch)

    def accumulate(grads, inputs):
        micro_batch, i = inputs
        loss, micro_grads = jax.value_and_grad(micro_loss)(state.params, micro_batch, jax.random.fold_in(key, i))
        return jax.tree.map(jnp.add, grads, micro_grads), loss

    grads, losses = jax.lax.scan(accumulate, jax.tree.map(jnp.zeros_like, state.params), (micro, jnp.arange(n)))
    real_rows = jnp.maximum(jnp.sum(batch["weights"]), 1.0)
    grads = jax.tree.map(lambda g: g / real_rows, grads)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Checked before a checkpoint is written, so a diverged state is never saved.
    params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
    metrics = {"loss": jnp.sum(losses) / real_rows, "grad_norm": optax.global_norm(grads),
               "learning_rate": state.lr_schedule(state.step), "params_finite": params_finite}
    ema_params = ema_update(state.ema_params, params, state.ema_decay, state.step + 1) if state.ema_decay else None
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params), metrics


def eval_step(state, batch):
    """Start and end logits, float32 [batch, seq], without dropout, of the evaluated weights."""
    return forward(state.graphdef, evaluated_params(state), batch, deterministic=True)

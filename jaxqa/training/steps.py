"""The pure functions that run on the accelerator: loss, one training step, one eval forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxqa.models.loading import forward

# Dropout keys are of the RBG implementation (the state stores its raw key data); each dropout call
# draws two seed words from them, and the masks are hashes of positions (`jaxqa.models.dropout`).
DROPOUT_PRNG = "rbg"


def span_cross_entropy(logits, positions, attention_mask, targets=None):
    """Per-example cross-entropy of the gold position among the example's own (unpadded) tokens. With
    `targets` ([batch, seq] counts of gold answers per position, --train_on_all_answers): minus the log of
    the probability the model puts on the gold positions, each weighed by its share of the answers, so
    that any annotator's answer counts as right and the one most agree on most (one answer: the same loss)."""
    logits = jnp.where(attention_mask > 0, logits.astype(jnp.float32), -jnp.inf)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    if targets is None:
        return -jnp.take_along_axis(log_probs, positions[:, None], axis=-1)[:, 0]
    counts = targets.astype(jnp.float32)
    # a filler row (weight 0, selected out of the loss) may have lost its targets to the batch's cut: it
    # points at position 0, a real token of every row, so that nothing non-finite reaches the gradient
    counts = jnp.where(jnp.sum(counts, axis=-1, keepdims=True) > 0, counts, jax.nn.one_hot(0, counts.shape[-1]))
    share = counts / jnp.sum(counts, axis=-1, keepdims=True)
    return -jax.nn.logsumexp(jnp.where(share > 0, log_probs, -jnp.inf), axis=-1, b=share)


def no_answer_cross_entropy(no_answer_logits, start_positions):
    """Per-window binary cross-entropy of the answerability head's logit against "this window holds no
    answer": its label points at [CLS], position 0 (`jaxqa.models.encoder.EncoderForQuestionAnswering`
    reads the head there; run set-up refuses a tokenizer that puts [CLS] elsewhere)."""
    return optax.sigmoid_binary_cross_entropy(no_answer_logits.astype(jnp.float32),
                                              (start_positions == 0).astype(jnp.float32))


def summed_loss(start_logits, end_logits, batch, no_answer_logits=None, answerability_weight: float = 0.0,
                plausible_logits=(), plausible_weight: float = 0.0):
    """Sum over real (weight > 0) rows of the mean of start and end cross-entropies, plus, with an
    answerability head's `no_answer_logits`, `answerability_weight` x its binary cross-entropy (ELECTRA's
    SQuAD 2.0 loss: one objective, so the [CLS] vector learns what both heads need), plus, with the auxiliary
    span head's (start, end) `plausible_logits`, `plausible_weight` x the same span loss against the batch's
    plausible_*_positions (an unanswerable question's plausible answer; Read + Verify's auxiliary loss).

    Weight-0 rows are selected out, not multiplied by 0: a filler row's labels may lie past the batch's
    length (NaN x 0 is NaN), and `where` also stops any non-finite value of theirs in the gradient."""
    mask = batch["attention_mask"]
    per_example = 0.5 * (span_cross_entropy(start_logits, batch["start_positions"], mask, batch.get("start_targets"))
                         + span_cross_entropy(end_logits, batch["end_positions"], mask, batch.get("end_targets")))
    if no_answer_logits is not None:
        per_example = per_example + answerability_weight * no_answer_cross_entropy(no_answer_logits,
                                                                                    batch["start_positions"])
    if plausible_logits:
        per_example = per_example + plausible_weight * 0.5 * (
            span_cross_entropy(plausible_logits[0], batch["plausible_start_positions"], mask)
            + span_cross_entropy(plausible_logits[1], batch["plausible_end_positions"], mask))
    return jnp.sum(jnp.where(batch["weights"] > 0, per_example * batch["weights"], 0.0))


def qa_loss(start_logits, end_logits, batch, no_answer_logits=None, answerability_weight: float = 0.0):
    """The loss of a batch: `summed_loss` averaged over its real rows."""
    return summed_loss(start_logits, end_logits, batch, no_answer_logits, answerability_weight) / \
        jnp.maximum(jnp.sum(batch["weights"]), 1.0)


def evaluated_params(state):
    """The weights a run evaluates and exports: the moving average when it keeps one, else the trained ones."""
    return state.ema_params if state.ema_decay else state.params


def ema_update(ema_params, params, decay: float, step):
    """The moving average after update number `step` (1, 2, ...): decay min(decay, (1 + step) / (10 + step)),
    so the first updates follow the fast-moving weights instead of staying at the pretrained ones."""
    rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step)).astype(jnp.float32)
    return jax.tree.map(lambda e, p: rate * e + (1.0 - rate) * p, ema_params, params)


# Tokens of a piece of a micro-batch on CPU. Measured (benchmarks/README.md, "Micro-batches on CPU"): MiniLM,
# 16 rows of 384 (256) tokens per step on 2 AMD EPYC cores, taken as 4 pieces of 4 rows ran 1.10-1.24x
# (1.15x) the steps/s of one batch of 16, float32 and bf16 alike: a small piece's activations stay in cache.
# (8 rows ran no faster than 16, 2 rows slower than 4: the sweet spot is ~1,000-1,500 tokens.)
CPU_MICRO_BATCH_TOKENS = 1536


def cache_split(shape, micro_batches: int, devices: int, tokens: int) -> int:
    """Into how many pieces each of the `micro_batches` of a [batch, seq] batch is cut so that a piece holds
    at most `tokens` tokens: its rows halved while they stay above a power of two of `tokens` // seq rows and
    the halves divide evenly over the `devices` the batch is split over (0 `tokens`: never cut; GPUs and TPUs
    want big matrices). Decided on the global batch, not per device: the pieces, and so the dropout keys, are
    the same on any number of devices wherever they divide, and a run resumed on another mesh goes on as it was."""
    if not tokens:
        return 1
    rows, seq = shape[0] // micro_batches, shape[1]
    target = 1 << (max(1, tokens // seq).bit_length() - 1)
    split = 1
    while rows // split > target and rows % (2 * split) == 0 and (rows // (2 * split)) % devices == 0:
        split *= 2
    return split


def train_step(state, batch):
    """One optimizer step over the batch, taken as `state.accumulation_steps` micro-batches in a scan
    (gradient accumulation: the same update as one big batch, a fraction of the activation memory), each cut
    again on CPU into pieces of ~`CPU_MICRO_BATCH_TOKENS` tokens (`cache_split`: faster there).
    Dropout keys come from (state key, step, micro-batch): a resumed run draws the same ones. With
    `state.ema_decay`, the parameters' moving average is updated too."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.dropout_key, impl=DROPOUT_PRNG), state.step)
    # micro-batch i = rows i, i+n, ...: each device keeps its own rows
    n = state.accumulation_steps * cache_split(batch["input_ids"].shape, state.accumulation_steps, state.batch_devices,
                                               state.micro_batch_tokens)
    micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1), batch)

    def micro_loss(params, micro_batch, micro_key):
        plausible = state.plausible_weight > 0
        start_logits, end_logits, *more = forward(state.graphdef, params, micro_batch, deterministic=False,
                                                  dropout_key=micro_key, plausible_span=plausible)
        no_answer, tempting = (more[:-2], more[-2:]) if plausible else (more, ())  # no_answer: [] without the head
        return summed_loss(start_logits, end_logits, micro_batch, *no_answer,
                           answerability_weight=state.answerability_weight, plausible_logits=tempting,
                           plausible_weight=state.plausible_weight)

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
    """Start and end logits, float32 [batch, seq], without dropout, of the evaluated weights (and the no-answer
    logits [batch] of an answerability head)."""
    return forward(state.graphdef, evaluated_params(state), batch, deterministic=True)

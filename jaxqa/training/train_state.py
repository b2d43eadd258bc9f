"""The training state (parameters, optimizer state, step, dropout key) and how to create it.

The state is one pytree, so a jitted step can take it with explicit shardings and donate its
buffers, and a checkpoint can save it whole. The model's structure (`graphdef`), the optimizer and
its schedule are static fields: they never change during a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxqa import sharding
from jaxqa.config import RunConfig
from jaxqa.models.loading import build_model, load_model  # re-exported: the public API
from jaxqa.training.steps import (  # re-exported: the public API
    CPU_MICRO_BATCH_TOKENS,
    DROPOUT_PRNG,
    eval_step,
    evaluated_params,
    train_step,
)

__all__ = ["TrainState", "create_train_state", "load_model", "make_optimizer", "train_step", "eval_step",
           "evaluated_params", "build_model", "layer_lr_scale"]


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any  # nnx.State of float32 parameters
    opt_state: Any
    dropout_key: jax.Array
    graphdef: Any = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    lr_schedule: Callable = struct.field(pytree_node=False)
    accumulation_steps: int = struct.field(pytree_node=False, default=1)  # micro-batches per step
    ema_params: Any = None  # the parameters' moving average (float32, sharded like them) with --ema_decay
    ema_decay: float = struct.field(pytree_node=False, default=0.0)
    answerability_weight: float = struct.field(pytree_node=False, default=0.0)  # --answerability_loss_weight
    plausible_weight: float = struct.field(pytree_node=False, default=0.0)  # --plausible_answer_loss_weight
    # On CPU, micro-batches are cut into pieces of about this many tokens (`steps.cache_split`; 0: never)
    micro_batch_tokens: int = struct.field(pytree_node=False, default=0)
    batch_devices: int = struct.field(pytree_node=False, default=1)  # devices a batch is split over


def _names(path) -> list:
    return [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path]


def _decays(path, _leaf) -> bool:
    """Weight decay on matrices and embeddings only: never on biases or LayerNorm parameters."""
    return not ({"bias", "scale"} & set(_names(path)))


def layer_lr_scale(path, num_layers: int, decay: float) -> float:
    """The learning-rate factor of the parameter at `path` under layer-wise decay: layer l (0 at the
    bottom) of `num_layers` gets decay^(num_layers - l), the embeddings (and their projection)
    decay^(num_layers + 1), the QA head 1 (README, "Getting the most out of small data", has the table).
    Lower layers hold general features that fine-tuning should move less. ELECTRA's recipe has one more
    factor of decay on everything below the head; the recipes using 0.8 were measured with this rule."""
    names = _names(path)
    if "layers" in names:
        return decay ** (num_layers - int(names[names.index("layers") + 1]))
    return decay ** (num_layers + 1) if "encoder" in names else 1.0


def _scale_by_layer(num_layers: int, decay: float) -> optax.GradientTransformation:
    """Multiply each parameter's update (learning rate and weight decay included) by its layer's factor."""
    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(lambda p, u: u * layer_lr_scale(p, num_layers, decay), updates), state

    return optax.GradientTransformation(lambda _params: optax.EmptyState(), update)


def _adafactor(schedule, weight_decay: float, decay_mask) -> optax.GradientTransformation:
    """Hugging Face's Adafactor(scale_parameter=False, relative_step=False), as its Trainer's --adafactor
    builds it: every matrix's second moment factored, each update clipped to RMS 1, then the rate times
    (update + weight_decay x parameter), so --learning_rate and --weight_decay mean what they mean for
    AdamW. (optax.adafactor's defaults scale each update by its parameter's RMS, so a zero bias barely
    learns, and add the decay after the rate, so it shrinks the weights by weight_decay a step.)"""
    return optax.chain(
        optax.scale_by_factored_rms(min_dim_size_to_factor=1),
        optax.clip_by_block_rms(1.0),
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        optax.scale_by_learning_rate(schedule),
    )


def make_optimizer(config: RunConfig, total_steps: int, num_layers: int | None = None):
    """AdamW (or Adafactor) with linear warmup then linear decay to 0, global-norm clipping: the BERT recipe;
    with --layerwise_lr_decay, each layer's rate scaled (`layer_lr_scale`; `num_layers`: the model's
    distinct layers). The schedule returned is the QA head's (the rate logged)."""
    warmup = config.warmup_steps or math.ceil(total_steps * config.warmup_ratio)  # Hugging Face's get_warmup_steps
    warmup = min(warmup, total_steps)
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, config.learning_rate, max(warmup, 1)),
         optax.linear_schedule(config.learning_rate, 0.0, max(total_steps - warmup, 1))],
        boundaries=[warmup],
    )
    decay_mask = lambda params: jax.tree_util.tree_map_with_path(_decays, params)  # noqa: E731
    if config.adafactor:  # factored second moments: less optimizer memory
        optimizer = _adafactor(schedule, config.weight_decay, decay_mask)
    else:
        optimizer = optax.adamw(schedule, b1=config.adam_beta1, b2=config.adam_beta2, eps=config.adam_epsilon,
                                weight_decay=config.weight_decay, mask=decay_mask)
    if config.layerwise_lr_decay != 1.0:
        if num_layers is None:
            raise ValueError("--layerwise_lr_decay needs the model's number of layers")
        optimizer = optax.chain(optimizer, _scale_by_layer(num_layers, config.layerwise_lr_decay))
    tx = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm) if config.max_grad_norm > 0 else optax.identity(),
        optimizer,
    )
    return tx, schedule


def create_train_state(config: RunConfig, model_path: str | Path | None = None, *, total_steps: int,
                       mesh=None, from_pretrained: bool = True) -> TrainState:
    """Model from `model_path` (see `load_model`) plus a fresh optimizer (`make_optimizer`) for `total_steps` steps,
    placed on `mesh` (all devices on a data axis by default): parameters by their logical axes,
    each Adam moment created directly with its parameter's sharding. `config` supplies seed,
    dtype and the optimizer settings."""
    mesh = mesh or sharding.make_mesh()
    # A training run has the answerability head by its flag; one that only scores, as the model directory says.
    graphdef, params, model_config = load_model(model_path, seed=config.seed, dtype=config.dtype, from_pretrained=from_pretrained,
                                     cache_dir=config.cache_dir, mesh=mesh,
                                     fused_attention=not config.attention_dropout,
                                     remat=config.gradient_checkpointing,
                                     answerability=config.answerability_head if config.do_train else None,
                                     plausible=config.do_train and config.plausible_answer_loss_weight > 0)
    tx, schedule = make_optimizer(config, total_steps, model_config.num_distinct_layers)
    key = jax.random.key_data(jax.random.key(config.seed + 1, impl=DROPOUT_PRNG))
    abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                          opt_state=jax.eval_shape(tx.init, params), dropout_key=key, graphdef=graphdef, tx=tx,
                          lr_schedule=schedule, accumulation_steps=config.gradient_accumulation_steps,
                          ema_params=params if config.ema_decay else None, ema_decay=config.ema_decay,
                          answerability_weight=config.answerability_loss_weight if config.answerability_head else 0.0,
                          plausible_weight=config.plausible_answer_loss_weight if config.do_train else 0.0,
                          micro_batch_tokens=CPU_MICRO_BATCH_TOKENS if mesh.devices.flat[0].platform == "cpu" else 0,
                          batch_devices=sharding.batch_size_multiplier(mesh))
    shardings = sharding.state_shardings(abstract, mesh)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731 - its own buffers (the step donates the state)
    return abstract.replace(
        step=sharding.put_global(np.zeros((), np.int32), shardings.step),
        opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(params),
        dropout_key=sharding.put_global(np.asarray(key), shardings.dropout_key),
        ema_params=jax.jit(copy, out_shardings=shardings.params)(params) if config.ema_decay else None,
    )

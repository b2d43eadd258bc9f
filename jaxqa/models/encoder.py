"""The Transformer encoder of every supported family (BERT, RoBERTa, XLM-RoBERTa, ELECTRA,
DistilBERT, ALBERT) with an extractive-QA head, in Flax NNX.

One module for all: the families share post-LayerNorm blocks, exact or tanh GELU and learned
absolute positions, and differ only where `jaxqa.models.families.Family` says (positions numbered
after the padding index, no token types, a projection from smaller embeddings, layers shared over
depth, dropouts the original omits). Each matches its Hugging Face `*ForQuestionAnswering`
numerically. Query/key/value are one fused matmul: one larger GEMM is faster than three small ones
on every backend; `jaxqa.models.weights` fuses and splits the checkpoint tensors.

Every parameter carries logical axis names (`embed`, `mlp`, `qkv`, ...) and activations are pinned
at block boundaries by logical names; `jaxqa.sharding` maps both to the device mesh (and does
nothing when no mesh is set, so the model runs unchanged on one device).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxqa.errors import ModelError
from jaxqa.models.attention import (
    AttentionChoice,
    attention,
    check_right_padded,
    choose_attention,
    local_compute_capability,
    target_platform,
)
from jaxqa.models.dense import Dense, DotPlan, plan_dots
from jaxqa.models.dropout import Dropout, seeds_from
from jaxqa.models.families import FAMILIES, SUPPORTED, Family
from jaxqa.sharding import batch_split, constrain

log = logging.getLogger("jaxqa")

_ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture hyper-parameters, read from a Hugging Face `config.json` (jaxqa's field names
    are BERT's; a family's own keys, e.g. DistilBERT's `dim`, are renamed on the way in and out)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    model_type: str = "bert"
    embedding_size: int | None = None  # ELECTRA, ALBERT: embeddings narrower than hidden_size
    num_hidden_groups: int = 1  # ALBERT: distinct layer groups shared over num_hidden_layers
    inner_group_num: int = 1  # ALBERT: layers per group
    qa_dropout: float = 0.0  # DistilBERT: dropout before the QA head

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> EncoderConfig:
        model_type = raw.get("model_type", "bert")
        family = FAMILIES.get(model_type)
        if family is None:
            raise ModelError(f"{source}: model_type {model_type!r} is not supported; jaxqa supports: {SUPPORTED}")
        raw = {**raw, **{field: raw[key] for key, field in family.config_keys if key in raw}, **dict(family.fixed)}
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ModelError(
                f"{source}: position_embedding_type {raw['position_embedding_type']!r} is not "
                "supported; jaxqa supports absolute position embeddings"
            )
        if raw.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise ModelError(
                f"{source}: hidden_act {raw['hidden_act']!r} is not supported; "
                f"use one of {sorted(_ACTIVATIONS)}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in raw.items() if k in fields and v is not None})
        if config.hidden_size % config.num_attention_heads:
            raise ModelError(
                f"{source}: hidden_size {config.hidden_size} is not divisible by "
                f"num_attention_heads {config.num_attention_heads}"
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        """The Hugging Face config.json keys of this model's family."""
        family = self.family
        renamed = {field: key for key, field in family.config_keys}
        skip = {key for key, _ in family.fixed} | {"model_type"}
        if not family.projection:
            skip.add("embedding_size")
        if not family.shared_layers:
            skip |= {"num_hidden_groups", "inner_group_num"}
        if "qa_dropout" not in renamed:
            skip.add("qa_dropout")
        values = {**dataclasses.asdict(self), "embedding_size": self.embedding_width}
        return {"model_type": self.model_type,
                **{renamed.get(k, k): v for k, v in values.items() if k not in skip}}

    @property
    def family(self) -> Family:
        return FAMILIES[self.model_type]

    @property
    def embedding_width(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def projects(self) -> bool:
        """Whether embeddings go through a Linear to hidden_size before the first layer."""
        return bool(self.family.projection) and (self.family.always_project or self.embedding_width != self.hidden_size)

    @property
    def max_positions(self) -> int:
        """The longest window the position table covers (RoBERTa numbers positions after the padding index)."""
        offset = self.pad_token_id + 1 if self.family.positions_after_padding else 0
        return self.max_position_embeddings - offset

    @property
    def num_distinct_layers(self) -> int:
        return self.num_hidden_groups * self.inner_group_num if self.family.shared_layers else self.num_hidden_layers

    def layer_schedule(self) -> tuple[int, ...]:
        """Which distinct layer runs at each depth (ALBERT: group i*groups/layers, all its inner layers)."""
        if not self.family.shared_layers:
            return tuple(range(self.num_hidden_layers))
        groups = [int(i / (self.num_hidden_layers / self.num_hidden_groups)) for i in range(self.num_hidden_layers)]
        return tuple(g * self.inner_group_num + j for g in groups for j in range(self.inner_group_num))


def _named(init, *names):
    """`init` whose parameter carries logical axis names (metadata only: placement is
    `jaxqa.sharding`'s job, so no mesh is needed to build the model)."""
    return nnx.with_partitioning(init, names, eager_sharding=False)


def _dense(cfg: EncoderConfig, n_in: int, n_out: int, rngs: nnx.Rngs, dtype, names: tuple[str, str],
           dots: DotPlan | None = None) -> Dense:
    init = nnx.initializers.normal(cfg.initializer_range)
    return Dense(n_in, n_out, kernel_init=_named(init, *names), bias_init=_named(nnx.initializers.zeros_init(), names[1]),
                 dtype=dtype, rngs=rngs, dots=dots)


def _layer_norm(cfg: EncoderConfig, rngs: nnx.Rngs, dtype, width: int | None = None) -> nnx.LayerNorm:
    # Float32 statistics whatever the compute dtype: bf16 variance is too coarse.
    return nnx.LayerNorm(width or cfg.hidden_size, epsilon=cfg.layer_norm_eps, dtype=dtype, rngs=rngs,
                         scale_init=_named(nnx.initializers.ones_init(), "norm"),
                         bias_init=_named(nnx.initializers.zeros_init(), "norm"))


HIDDEN = ("batch", "length", None)  # hidden states between blocks: split over the batch only


def _lookup(table: nnx.Embed, ids):
    """`table(ids)` with the table's `embed` dimension gathered first, as FSDP does for any weight
    in use: XLA cannot gather rows of a table split on the axis that also splits the batch."""
    return jnp.take(constrain(table.embedding[...].astype(table.dtype), ("vocab", None)), ids, axis=0)


class Embeddings(nnx.Module):
    """Word + position (+ token type) embeddings, LayerNorm, dropout; `embedding_width` wide."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        init, width = nnx.initializers.normal(cfg.initializer_range), cfg.embedding_width
        self.family, self.pad_token_id, self.type_vocab_size = cfg.family, cfg.pad_token_id, cfg.type_vocab_size
        self.word = nnx.Embed(cfg.vocab_size, width, embedding_init=_named(init, "vocab", "embed"),
                              dtype=dtype, rngs=rngs)
        self.position = nnx.Embed(cfg.max_position_embeddings, width,
                                  embedding_init=_named(init, "positions", "embed"), dtype=dtype, rngs=rngs)
        if self.family.token_types:
            self.token_type = nnx.Embed(cfg.type_vocab_size, width,
                                        embedding_init=_named(init, "types", "embed"), dtype=dtype, rngs=rngs)
        self.norm = _layer_norm(cfg, rngs, dtype, width)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, attention_mask, *, deterministic: bool, rngs):
        if self.family.positions_after_padding:  # RoBERTa: pad_token_id + 1, + 2, ... over real tokens
            real = (attention_mask > 0).astype(jnp.int32)
            positions = jnp.cumsum(real, axis=1) * real + self.pad_token_id
        else:
            positions = jnp.arange(input_ids.shape[1])[None, :]
        x = _lookup(self.word, input_ids) + _lookup(self.position, positions)
        if self.family.token_types:  # one type only (RoBERTa): every token is type 0, whatever the tokenizer says
            types = token_type_ids if self.type_vocab_size > 1 else jnp.zeros_like(input_ids)
            x = x + _lookup(self.token_type, types)
        return constrain(self.dropout(self.norm(x), deterministic=deterministic, rngs=rngs), HIDDEN)


@dataclasses.dataclass(frozen=True)
class AttentionPlan:
    """The attention kernel of training and of evaluation calls (`choose_attention`), decided when
    the model is built, for the platform it is built for. `cudnn_as_xla`: where cuDNN was chosen,
    lower the same call with `implementation="xla"` (a cuDNN call cannot lower without cuDNN, e.g.
    when a CUDA program is exported from a CPU); nothing else changes. `dots`: the precision of
    every bf16 dot, dense layers' and the blocked kernel's (`jaxqa.models.dense.plan_dots`; None in
    float32)."""

    platform: str
    train: AttentionChoice
    eval: AttentionChoice
    cudnn_as_xla: bool = False
    dots: DotPlan | None = None

    def describe(self) -> str:
        if self.train == self.eval:
            return f"attention: {self.train}"
        return f"attention: training {self.train}; evaluation {self.eval}"


def plan_attention(cfg: EncoderConfig, dtype, *, fused: bool = False, platform: str | None = None,
                   padding_side: str = "right", kernel: str | None = None, cudnn_as_xla: bool = False,
                   compute_capability: tuple[int, int] | None = None) -> AttentionPlan:
    """The AttentionPlan of a model: training has the attention dropout of `cfg` (none when `fused`),
    evaluation none; the dots' precisions are `plan_dots`'. `platform` None: the default backend's;
    `kernel` forces one (see choose_attention)."""
    platform = target_platform(platform)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    capability = compute_capability or local_compute_capability(platform)
    rate = 0.0 if fused else cfg.attention_probs_dropout_prob
    choose = functools.partial(choose_attention, platform, dtype, head_dim, padding_side=padding_side,
                               compute_capability=capability, requested=kernel)
    return AttentionPlan(platform, choose(dropout_rate=rate), choose(dropout_rate=0.0), cudnn_as_xla,
                         plan_dots(platform, dtype))


_logged: set[str] = set()


def _log_once(message: str) -> None:
    """Each distinct message once per process (a run builds its model several times: shapes, init)."""
    if message not in _logged:
        _logged.add(message)
        log.info(message)


class SelfAttention(nnx.Module):
    """Multi-head self-attention + output projection + residual LayerNorm (BERT's block half).

    The kernel is the plan's (`AttentionPlan`, `choose_attention`): `jaxqa.models.attention`'s
    blocked kernel, with dropout on the attention probabilities (as BERT was trained) unless
    `fused`, in blocks of batch rows on CPU (one row per device at a time, so the scores stay in
    cache) and in one block elsewhere; or `jax.nn.dot_product_attention` with cuDNN's flash kernel
    (or, when asked, XLA's) on [batch, seq, heads, head_dim], padding masked by lengths."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, fused: bool = False,
                 plan: AttentionPlan | None = None):
        self.num_heads, self.fused = cfg.num_attention_heads, fused
        self.plan = plan or plan_attention(cfg, dtype, fused=fused)
        dots = self.plan.dots
        self.qkv = _dense(cfg, cfg.hidden_size, 3 * cfg.hidden_size, rngs, dtype, ("embed", "qkv"), dots)
        self.out = _dense(cfg, cfg.hidden_size, cfg.hidden_size, rngs, dtype, ("heads", "embed"), dots)
        self.norm = _layer_norm(cfg, rngs, dtype)
        self.attention_dropout = cfg.attention_probs_dropout_prob
        self.dropout = Dropout(cfg.hidden_dropout_prob if cfg.family.attention_output_dropout else 0.0)

    def __call__(self, x, mask: tuple, *, deterministic: bool, rngs):
        batch, seq, hidden = x.shape
        head_dim = hidden // self.num_heads
        mask_bias, key_lengths = mask
        kernel = (self.plan.eval if deterministic else self.plan.train).kernel
        if kernel in ("cudnn", "xla"):  # [batch, seq, heads, head_dim]; lengths mask padding (on the right)
            q, k, v = jnp.moveaxis(self.qkv(x).reshape(batch, seq, 3, self.num_heads, head_dim), 2, 0)
            q, k, v = (constrain(t, ("batch", "length", "heads", None)) for t in (q, k, v))  # cuDNN: alike
            implementation = "xla" if kernel == "xla" or self.plan.cudnn_as_xla else "cudnn"
            context = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=key_lengths,
                                                   implementation=implementation)
        else:  # heads-major [batch, 3, heads, seq, head_dim]: XLA's batched matmuls are fastest so on CPU
            qkv = self.qkv(x).reshape(batch, seq, 3, self.num_heads, head_dim).transpose(0, 2, 3, 1, 4)
            qkv = constrain(qkv, ("batch", None, "heads", "length", None))  # attention runs head-parallel
            rate = 0.0 if deterministic or self.fused else self.attention_dropout
            blocks = batch // batch_split(batch) if self.plan.platform == "cpu" else 1
            context = attention(qkv, mask_bias, dropout_rate=rate, seeds=seeds_from(rngs) if rate else None,
                                blocks=blocks, dots=self.plan.dots).transpose(0, 2, 1, 3)
        projected = self.dropout(self.out(context.reshape(batch, seq, hidden)), deterministic=deterministic, rngs=rngs)
        return self.norm(x + projected)


class FeedForward(nnx.Module):
    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, dots: DotPlan | None = None):
        self.activation = _ACTIVATIONS[cfg.hidden_act]
        self.intermediate = _dense(cfg, cfg.hidden_size, cfg.intermediate_size, rngs, dtype, ("embed", "mlp"), dots)
        self.output = _dense(cfg, cfg.intermediate_size, cfg.hidden_size, rngs, dtype, ("mlp", "embed"), dots)
        self.norm = _layer_norm(cfg, rngs, dtype)
        self.dropout = Dropout(cfg.hidden_dropout_prob if cfg.family.ffn_output_dropout else 0.0)

    def __call__(self, x, *, deterministic: bool, rngs):
        h = self.output(constrain(self.activation(self.intermediate(x)), ("batch", "length", "mlp")))
        return self.norm(x + self.dropout(h, deterministic=deterministic, rngs=rngs))


class Layer(nnx.Module):
    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, fused_attention: bool = False,
                 plan: AttentionPlan | None = None):
        self.attention = SelfAttention(cfg, rngs=rngs, dtype=dtype, fused=fused_attention, plan=plan)
        self.ffn = FeedForward(cfg, rngs=rngs, dtype=dtype, dots=self.attention.plan.dots)

    def __call__(self, x, mask: tuple, *, deterministic: bool, rngs):
        x = constrain(self.attention(x, mask, deterministic=deterministic, rngs=rngs), HIDDEN)
        return constrain(self.ffn(x, deterministic=deterministic, rngs=rngs), HIDDEN)


class Encoder(nnx.Module):
    """Embeddings (and their projection to hidden_size) and the layers, run in the family's order
    (ALBERT reuses its few layers over the whole depth). With `remat`, each layer's activations are
    recomputed in the backward pass instead of stored: ~1/3 more compute for memory that no longer
    grows with depth."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, fused_attention: bool = False,
                 remat: bool = False, plan: AttentionPlan | None = None):
        self.embeddings = Embeddings(cfg, rngs=rngs, dtype=dtype)
        self.plan = plan or plan_attention(cfg, dtype, fused=fused_attention)
        if cfg.projects:
            self.project = _dense(cfg, cfg.embedding_width, cfg.hidden_size, rngs, dtype, ("embed", "embed"),
                                  self.plan.dots)
        self.layers = nnx.List([Layer(cfg, rngs=rngs, dtype=dtype, fused_attention=fused_attention, plan=self.plan)
                                for _ in range(cfg.num_distinct_layers)])
        self.schedule, self.remat = cfg.layer_schedule(), remat

    def __call__(self, input_ids, token_type_ids, attention_mask, *, deterministic: bool, rngs):
        kernel = (self.plan.eval if deterministic else self.plan.train).kernel
        if kernel != "blocked":  # lengths mask padding: refuse a mask that can be read and is not right-padded
            try:
                check_right_padded(attention_mask)
            except jax.errors.TracerArrayConversionError:
                pass  # traced (under jit): the model's padding_side says where the padding is
        # Additive mask, [batch, 1, 1, keys], finite so fully padded rows stay NaN-free; and the real
        # length of each row, for the cuDNN (and XLA) kernel.
        mask = (jnp.where(attention_mask[:, None, None, :] > 0, 0.0, -1e9).astype(jnp.float32),
                jnp.sum(attention_mask > 0, axis=-1).astype(jnp.int32))
        x = self.embeddings(input_ids, token_type_ids, attention_mask, deterministic=deterministic, rngs=rngs)
        if hasattr(self, "project"):
            x = constrain(self.project(x), HIDDEN)

        def run(layer, x, rngs):
            return layer(x, mask, deterministic=deterministic, rngs=rngs)

        if self.remat:
            run = nnx.remat(run)
        for index in self.schedule:
            x = run(self.layers[index], x, rngs)
        return x


class EncoderForQuestionAnswering(nnx.Module):
    """Encoder + a linear head giving float32 `start_logits`, `end_logits` of shape [batch, seq].

    The head computes in float32 whatever `dtype` is (the encoder's compute dtype): two outputs per
    token cost nothing, and bf16 logits would be rounded to 8 mantissa bits before the softmax over
    positions. Attention: `platform` is the one the program is built for (default: this process's
    backend; "cuda"/"tpu" to export for those from a CPU), `padding_side` where batches are padded
    (jaxqa's features: right), `attention_kernel` forces a kernel, `cudnn_as_xla` see AttentionPlan.
    The choice is logged once ("attention: ...").

    With `answerability` (SQuAD v2.0's --answerability_head), one more float32 Dense reads the last hidden
    state at position 0 and gives a "this window holds no answer" logit [batch], returned third: ELECTRA's
    and Retro-Reader's answerability score from the [CLS] vector (every supported family's tokenizer puts
    [CLS]/<s> first and jaxqa pads on the right, so position 0 is it, as Hugging Face's poolers read it).
    It lives outside the Hugging Face QA head, so `transformers` loads the export unchanged.

    With `plausible` (--plausible_answer_loss_weight), one more float32 Dense gives a second pair of start/end
    logits, asked for by `plausible_span=True` (training only, returned last): an auxiliary reader that points
    at an unanswerable question's plausible answer where the QA head learns [CLS] (Read + Verify's auxiliary
    span loss), so that the encoder learns where such a question leads. It is not exported."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, fused_attention: bool = False,
                 remat: bool = False, platform: str | None = None, padding_side: str = "right",
                 attention_kernel: str | None = None, cudnn_as_xla: bool = False, answerability: bool = False,
                 plausible: bool = False):
        self.config = cfg
        plan = plan_attention(cfg, dtype, fused=fused_attention, platform=platform, padding_side=padding_side,
                              kernel=attention_kernel, cudnn_as_xla=cudnn_as_xla)
        _log_once(plan.describe())
        self.encoder = Encoder(cfg, rngs=rngs, dtype=dtype, fused_attention=fused_attention, remat=remat, plan=plan)
        self.qa_dropout = Dropout(cfg.qa_dropout)
        self.qa_outputs = _dense(cfg, cfg.hidden_size, 2, rngs, jnp.float32, ("embed", "classes"))
        if answerability:
            self.answerability = _dense(cfg, cfg.hidden_size, 1, rngs, jnp.float32, ("embed", "classes"))
        if plausible:  # created last: the other heads' initialisation stays as it was
            self.plausible_outputs = _dense(cfg, cfg.hidden_size, 2, rngs, jnp.float32, ("embed", "classes"))

    def __call__(self, input_ids, token_type_ids, attention_mask, *, deterministic: bool = True, rngs=None,
                 plausible_span: bool = False):
        hidden = self.encoder(
            input_ids, token_type_ids, attention_mask, deterministic=deterministic, rngs=rngs
        )
        hidden = self.qa_dropout(hidden, deterministic=deterministic, rngs=rngs)
        logits = self.qa_outputs(hidden.astype(jnp.float32))
        outputs = (logits[..., 0], logits[..., 1])
        if hasattr(self, "answerability"):
            outputs += (self.answerability(hidden[:, 0].astype(jnp.float32))[:, 0],)
        if plausible_span:
            tempting = self.plausible_outputs(hidden.astype(jnp.float32))
            outputs += (tempting[..., 0], tempting[..., 1])
        return outputs

"""The model as the layers above use it: built (`build_model`), loaded from a Hugging Face directory with
its parameters placed on their devices (`load_model`), and run on a batch (`forward`). Training puts an
optimizer around it; answering and scoring run it as it is."""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from jaxqa import sharding
from jaxqa.errors import ModelError
from jaxqa.models import precision, weights
from jaxqa.models.encoder import EncoderConfig, EncoderForQuestionAnswering

log = logging.getLogger("jaxqa")

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(dtype: str):
    """The jnp dtype of a --dtype value; "auto" resolved for this process's first device (a run resolves it
    once at set-up and logs why; this serves code that builds a model itself, e.g. a notebook)."""
    if dtype == "auto":
        dtype = precision.resolve_dtype(dtype, jax.devices()[0])[0]
    return COMPUTE_DTYPES[dtype]


def build_model(model_config: EncoderConfig, *, seed: int = 0, dtype: str = "float32", fused_attention: bool = False,
                remat: bool = False, answerability: bool = False, plausible: bool = False) -> EncoderForQuestionAnswering:
    return EncoderForQuestionAnswering(model_config, rngs=nnx.Rngs(params=seed), dtype=compute_dtype(dtype),
                                    fused_attention=fused_attention, remat=remat, answerability=answerability,
                                    plausible=plausible)


def load_model(model_path: str | Path | None = None, *, seed: int = 0, dtype: str = "float32",
               from_pretrained: bool = True, cache_dir: str | None = None, mesh=None, fused_attention: bool = False,
               remat: bool = False, answerability: bool | None = None, plausible: bool = False):
    """(graphdef, params, model_config) of a Hugging Face encoder directory or Hub id (the packaged
    MiniLM when None), of the family its config.json names (`jaxqa.models.families`). A checkpoint
    without a QA head gets a fresh one; with `from_pretrained=False` everything keeps its random initialisation (config.json only).
    `answerability`: whether the model has the answerability head (`EncoderForQuestionAnswering`), read from
    `weights.ANSWERABILITY_FILE` where the directory has it, else fresh; None: as the directory says.
    `plausible`: with a fresh auxiliary span head (--plausible_answer_loss_weight; never saved).

    Parameters are created where they live on `mesh` (the first device by default): checkpoint
    tensors go from host memory straight to their shards, fresh ones are initialised sharded, so
    no device ever holds a full copy of a sharded model."""
    model_dir = weights.resolve_model_dir(str(model_path) if model_path else None, cache_dir)
    model_config = weights.load_config(model_dir)
    mesh = mesh or sharding.make_mesh(jax.devices()[:1])
    saved_head = weights.has_answerability_head(model_dir)
    answerability = saved_head if answerability is None else answerability
    if saved_head and not answerability:
        log.info("%s: its answerability head (%s) is not used (--answerability_head is off)", model_dir,
                 weights.ANSWERABILITY_FILE)
    options = dict(seed=seed, dtype=dtype, fused_attention=fused_attention, remat=remat, answerability=answerability,
                   plausible=plausible)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build_model(model_config, **options)), nnx.Param)
    shardings = dict(_flatten(nnx.to_pure_dict(sharding.param_shardings(abstract, mesh))))
    values = dict(_flatten(nnx.to_pure_dict(abstract)))  # ShapeDtypeStructs until filled in
    if from_pretrained:
        loaded, _ = weights.checkpoint_to_params(weights.read_checkpoint(model_dir), model_config, str(model_dir))
        loaded = dict(_flatten(loaded))
        if answerability and saved_head:
            loaded.update(weights.read_answerability_head(model_dir))
        elif answerability:
            log.info("%s: no answerability head (%s); a fresh one is initialised", model_dir, weights.ANSWERABILITY_FILE)
        _check_shapes(values, loaded, model_dir)
        values.update({path: sharding.put_global(array, shardings[path]) for path, array in loaded.items()})
    missing = [path for path, value in values.items() if isinstance(value, jax.ShapeDtypeStruct)]
    if missing:  # random initialisation, sharded from the start; XLA drops what is not asked for
        def init():
            fresh = dict(_flatten(nnx.to_pure_dict(nnx.split(build_model(model_config, **options), nnx.Param)[1])))
            return [fresh[path] for path in missing]

        values.update(zip(missing, jax.jit(init, out_shardings=[shardings[p] for p in missing])()))
    nnx.replace_by_pure_dict(abstract, _unflatten(values))
    return graphdef, abstract, model_config


def forward(graphdef, params, batch, *, deterministic: bool = True, dropout_key=None, plausible_span: bool = False):
    """(start_logits, end_logits) of the model `graphdef` with `params` on `batch`; with an answerability head,
    its no-answer logits [batch] third; with `plausible_span`, the auxiliary head's start and end logits last."""
    model = nnx.merge(graphdef, params)
    rngs = None if deterministic else nnx.Rngs(dropout=dropout_key)
    return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                 deterministic=deterministic, rngs=rngs, plausible_span=plausible_span)


def _check_shapes(expected: dict, loaded: dict, source) -> None:
    """`expected`, `loaded`: {path: array or shape struct}."""
    mismatched = [
        f"{'/'.join(map(str, p))}: checkpoint {tuple(b.shape)} vs config {tuple(expected[p].shape)}"
        for p, b in sorted(loaded.items(), key=str) if p in expected and expected[p].shape != b.shape
    ]
    if mismatched:
        raise ModelError(f"{source}: tensor shapes disagree with config.json ({'; '.join(mismatched[:3])})")


def _flatten(tree, prefix=()):
    for key in sorted(tree, key=str):
        if isinstance(tree[key], dict):
            yield from _flatten(tree[key], prefix + (key,))
        else:
            yield prefix + (key,), tree[key]


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree

"""Multi-head attention with dropout on the probabilities, computed in blocks of batch rows, that
stores no [batch, heads, seq, seq] tensor for the backward pass.

Why: written as einsum -> softmax -> dropout -> einsum, attention writes and reads several
[batch, heads, seq, seq] tensors (scores, probabilities, the dropout mask, their gradients) through
main memory; for MiniLM at 384 positions that is 113 MB each, per layer, and on a 2-core CPU it was
~1.6 of a ~3.6 s train step while the dense matmuls ran near the machine's peak. Here the forward
pass keeps only the output and the log-sum-exp of each query row (as flash attention does), the
dropout mask is a hash of each element's position (`jaxqa.models.dropout`) and is made again in the
backward pass, and the work goes in blocks whose [heads, seq, seq] scores stay in cache: on CPU one
batch row per device per block (3.3x faster forward + backward on MiniLM shapes), on accelerators
the whole batch in one block (their memory bandwidth is not the limit; the residuals are still
O(seq) per row instead of O(seq^2)).

Block i holds rows i, i + n, i + 2n, ... (n = blocks): when the batch is split over devices, every
device then works on its own rows in every block. q, k and v travel as one [batch, 3, heads, seq,
head_dim] tensor: a block reads its rows in one piece and the backward pass writes the three
gradients into one, instead of concatenating them through memory (~0.15 s of a MiniLM step).

Which attention runs is decided on purpose by `choose_attention` (see its table): cuDNN's flash
kernel where it can run, this kernel everywhere else.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxqa.models.dense import BF16, DotPlan
from jaxqa.models.dropout import keep_scale
from jaxqa.sharding import constrain

# Logical names of the arrays split into blocks: [block, rows, ...].
_QKV_NAMES = (None, "batch", None, "heads", "length", None)  # [.., 3, heads, seq, head_dim]
_HEADS_NAMES = (None, "batch", "heads", "length", None)  # [.., heads, seq, head_dim]


def attention(qkv, mask_bias, *, dropout_rate: float = 0.0, seeds=None, blocks: int = 1, dots: DotPlan | None = None):
    """Softmax(q k^T / sqrt(d) + mask_bias) v, with dropout on the probabilities, [batch, heads, seq,
    head_dim]. `qkv` [batch, 3, heads, seq, head_dim] holds q, k, v (one tensor: a block reads its row
    in one piece, and the backward pass writes the three gradients into one); `mask_bias` [batch, 1,
    1, seq] is 0 for real keys and very negative for padding; `seeds` (uint32 [2]) pick the dropout
    mask; `blocks` must divide the batch; `dots` the precision of each dot (None: as the operands come,
    float32 accumulation)."""
    if qkv.shape[0] % blocks:
        raise ValueError(f"attention blocks {blocks} must divide the batch {qkv.shape[0]}")
    seeds = jnp.zeros(2, jnp.uint32) if seeds is None else seeds
    return _attention(qkv, mask_bias, seeds, float(dropout_rate), blocks, dots)


def _split(x, blocks: int, names=None):
    """[batch, ...] -> [blocks, batch // blocks, ...]; block i holds rows i, i + blocks, ..."""
    x = x.reshape(x.shape[0] // blocks, blocks, *x.shape[1:]).swapaxes(0, 1)
    return constrain(x, names) if names else x


def _join(x):
    return x.swapaxes(0, 1).reshape(-1, *x.shape[2:])


def _over_blocks(fn, blocks: int, arrays: dict):
    """`fn` on each block of `arrays` ({name: (array, logical names or None)}) in turn (a loop: one
    block's scores are live at a time), the results joined."""
    split = {key: _split(x, blocks, names) for key, (x, names) in arrays.items()}
    if blocks == 1:
        return tuple(fn(**{key: x[0] for key, x in split.items()}))
    return tuple(_join(x) for x in jax.lax.map(lambda xs: fn(**xs), split))


def _scale(head_dim: int) -> float:
    return 1.0 / float(head_dim) ** 0.5


def _einsum(spec: str, a, b, dots: DotPlan | None, kind: str):
    """A float32-accumulated einsum, its operands in `dots`' precision for `kind` (None: as they come)."""
    if dots is not None:
        operand = jnp.bfloat16 if getattr(dots, kind) == BF16 else jnp.float32
        a, b = a.astype(operand), b.astype(operand)
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _scores(q, k, mask_bias, dots):
    return _einsum("bhqd,bhkd->bhqk", q, k, dots, "scores") * _scale(q.shape[-1]) + mask_bias


def _keep(seeds, rows, q, rate: float):
    return keep_scale(seeds, rows, (q.shape[1], q.shape[2], q.shape[2]), rate)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _attention(qkv, mask_bias, seeds, rate, blocks, dots):
    return _forward(qkv, mask_bias, seeds, rate, blocks, dots)[0]


def _forward(qkv, mask_bias, seeds, rate, blocks, dots):
    rows = jax.lax.iota(jnp.uint32, qkv.shape[0])

    def block(qkv, mask_bias, rows):
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        scores = _scores(q, k, mask_bias, dots)
        row_max = jnp.max(scores, axis=-1, keepdims=True)
        exp = jnp.exp(scores - row_max)
        total = jnp.sum(exp, axis=-1, keepdims=True)
        kept = exp * _keep(seeds, rows, q, rate) if rate else exp
        out = _einsum("bhqk,bhkd->bhqd", kept.astype(v.dtype), v, dots, "context") / total
        return out.astype(q.dtype), (row_max + jnp.log(total))[..., 0]

    out, log_sum_exp = _over_blocks(block, blocks, {"qkv": (qkv, _QKV_NAMES), "mask_bias": (mask_bias, None),
                                                    "rows": (rows, None)})
    return out, (qkv, mask_bias, seeds, out, log_sum_exp)


def _backward(rate, blocks, dots, residuals, d_out):
    qkv, mask_bias, seeds, out, log_sum_exp = residuals
    rows = jax.lax.iota(jnp.uint32, qkv.shape[0])
    # sum_k p_k dp_k per query row: equal to rowsum(d_out * out) with or without dropout.
    delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)
    scale = _scale(qkv.shape[-1])

    def block(qkv, mask_bias, rows, log_sum_exp, d_out, delta):
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        probs = jnp.exp(_scores(q, k, mask_bias, dots) - log_sum_exp[..., None])
        keep = _keep(seeds, rows, q, rate) if rate else None
        kept = probs * keep if rate else probs
        d_v = _einsum("bhqk,bhqd->bhkd", kept.astype(d_out.dtype), d_out, dots, "key_value_grad")
        d_probs = _einsum("bhqd,bhkd->bhqk", d_out, v, dots, "scores")
        d_probs = d_probs * keep if rate else d_probs
        d_scores = (probs * (d_probs - delta[..., None]) * scale).astype(q.dtype)
        d_q = _einsum("bhqk,bhkd->bhqd", d_scores, k, dots, "query_grad")
        d_k = _einsum("bhqk,bhqd->bhkd", d_scores, q, dots, "key_value_grad")
        return (jnp.stack([d_q, d_k, d_v], axis=1).astype(qkv.dtype),)

    (d_qkv,) = _over_blocks(block, blocks, {
        "qkv": (qkv, _QKV_NAMES), "mask_bias": (mask_bias, None), "rows": (rows, None),
        "log_sum_exp": (log_sum_exp, _HEADS_NAMES[:4]), "d_out": (d_out, _HEADS_NAMES),
        "delta": (delta, _HEADS_NAMES[:4])})
    return d_qkv, jnp.zeros_like(mask_bias), None


_attention.defvjp(_forward, _backward)


# --- which attention runs ---------------------------------------------------------------------

KERNELS = ("cudnn", "blocked", "xla")
KERNEL_NAMES = {"cudnn": "cudnn flash", "blocked": "blocked kernel", "xla": "XLA dot_product_attention"}
_SHORT_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "float32"}


@dataclasses.dataclass(frozen=True)
class AttentionChoice:
    kernel: str  # one of KERNELS
    reason: str

    def __str__(self) -> str:
        return f"{KERNEL_NAMES[self.kernel]} ({self.reason})"


def target_platform(platform: str | None = None) -> str:
    """The platform a program is built for, as `jax.export` names them: "cuda", "rocm", "tpu" or
    "cpu". `platform` None: this process's default backend (its GPUs told apart by the runtime's
    version string); "gpu": CUDA, unless this process runs on ROCm GPUs."""
    name = (platform or jax.default_backend()).lower()
    if name == "gpu":
        local = jax.default_backend() == "gpu" and "rocm" in jax.devices()[0].client.platform_version.lower()
        name = "rocm" if local else "cuda"
    return name


def local_compute_capability(platform: str) -> tuple[int, int] | None:
    """(major, minor) of this process's first CUDA device when `platform` is the one it runs on;
    None otherwise (e.g. lowering for CUDA from a CPU: then the limits of pre-Hopper GPUs apply)."""
    if platform != "cuda" or jax.default_backend() != "gpu":
        return None
    capability = getattr(jax.devices()[0], "compute_capability", None)
    try:
        return tuple(int(x) for x in str(capability).split(".")[:2])
    except ValueError:
        return None


def _flash_problem(platform: str, dtype: str, head_dim: int, dropout_rate: float, padding_side: str,
                   compute_capability) -> str | None:
    """Why cuDNN's flash attention cannot run this attention (the first reason), or None if it can."""
    if dropout_rate:
        return f"dropout {dropout_rate:g} on probabilities"
    if platform != "cuda":
        return {"cpu": "CPU: rows in blocks whose scores stay in cache",
                "tpu": "TPU: no cuDNN"}.get(platform, f"{platform}: no cuDNN")
    if dtype not in ("bfloat16", "float16"):
        return f"{_SHORT_DTYPES.get(dtype, dtype)}: cuDNN flash needs bf16 or fp16"
    limit = 256 if compute_capability and tuple(compute_capability) >= (9, 0) else 128
    if head_dim % 8 or head_dim > limit:
        return f"head_dim {head_dim}: cuDNN flash needs a multiple of 8 up to {limit}"
    if padding_side != "right":
        return (f"{padding_side}-padded: cuDNN masks padding by lengths, which assume right padding "
                "(and rejects a [batch, 1, 1, seq] bias)")
    return None


def choose_attention(platform: str, dtype, head_dim: int, dropout_rate: float = 0.0, padding_side: str = "right",
                     *, compute_capability: tuple[int, int] | None = None,
                     requested: str | None = None) -> AttentionChoice:
    """Which attention runs, and why. `platform` as `target_platform` names it; `dropout_rate` the
    dropout on attention probabilities of this call (0 in evaluation); `padding_side` where the
    batches' padding is ("right": jaxqa's features always are).

    | case (first that holds)                                   | kernel                                 |
    |-----------------------------------------------------------|----------------------------------------|
    | dropout on probabilities                                  | blocked (the only one that has it)     |
    | not CUDA (CPU, TPU, ROCm)                                 | blocked (CPU: rows in cache-sized blocks) |
    | CUDA, float32                                             | blocked (flash needs bf16/fp16)        |
    | CUDA, head_dim not a multiple of 8 or > 128 (> 256 on Hopper) | blocked                            |
    | CUDA, left padding                                        | blocked (cuDNN masks by lengths)       |
    | CUDA, bf16/fp16, head_dim ok, no dropout, right-padded    | cudnn: `jax.nn.dot_product_attention(implementation="cudnn", key_value_seq_lengths=...)` |

    XLA's `jax.nn.dot_product_attention` (what `implementation=None` gives) is never chosen: it
    keeps the [batch, heads, seq, seq] probabilities for the backward pass, where the blocked kernel
    keeps one log-sum-exp per query row and runs the same XLA operations otherwise. `requested`
    names a kernel to run regardless ("xla": the cuDNN call's layout and masking on any backend,
    for tests and comparisons); one that cannot run this attention is refused (ValueError)."""
    dtype = jnp.dtype(dtype).name
    problem = _flash_problem(platform, dtype, head_dim, dropout_rate, padding_side, compute_capability)
    if requested is not None:
        if requested not in KERNELS:
            raise ValueError(f"attention kernel {requested!r} is unknown; use one of {', '.join(KERNELS)}")
        if requested != "blocked" and dropout_rate:
            raise ValueError(f"attention kernel {requested!r} has no dropout on probabilities "
                             f"(asked for {dropout_rate:g}); use the blocked kernel or attention dropout 0")
        if requested != "blocked" and padding_side != "right":
            raise ValueError(f"attention kernel {requested!r} masks padding by lengths, which assume right "
                             f"padding; the batches are {padding_side}-padded: use the blocked kernel")
        if requested == "cudnn" and problem:
            raise ValueError(f"cuDNN flash attention cannot run this attention: {problem}")
        return AttentionChoice(requested, "requested")
    if problem is None:
        return AttentionChoice("cudnn", f"{_SHORT_DTYPES.get(dtype, dtype)}, head_dim {head_dim}, no dropout, "
                                        "right-padded")
    return AttentionChoice("blocked", problem)


def check_right_padded(attention_mask) -> None:
    """Refuse a concrete mask whose real tokens are not a prefix of each row (the lengths mask of
    the cuDNN and XLA kernels would attend to padding and ignore real tokens)."""
    mask = np.asarray(attention_mask) > 0
    lengths = mask.sum(axis=-1, keepdims=True)
    if not np.array_equal(mask, np.arange(mask.shape[-1]) < lengths):
        rows = np.flatnonzero((mask != (np.arange(mask.shape[-1]) < lengths)).any(axis=-1))
        raise ValueError(f"attention masks by lengths, but rows {rows[:5].tolist()} are not right-padded "
                         "(real tokens must come first); build the model with padding_side='left'")

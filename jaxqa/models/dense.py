"""Dense layers whose bf16 dots run the way the backend computes each kind fastest.

Why: a Dense layer's train step runs three dots: forward `x @ W`, input gradient `g @ W^T` and
weight gradient `x^T @ g` (contracting over every token). Asked for bf16 x bf16 -> bf16 (what
`nnx.Linear(dtype=bfloat16)` asks for), XLA:CPU converts the operands to float32 and runs a float32
dot: bf16 buys nothing. Asked for bf16 x bf16 -> float32, it runs bf16 kernels where the CPU has them
(AVX512-BF16, AMX), but not equally well for every kind: on a 2-core AMD EPYC (Zen 4) the forward
and input-gradient dots ran 1.6-2.2x float32 and the weight gradient 0.5-0.8x (float32 wins; table
and command in benchmarks/README.md, "bf16 dots on CPU"). GPUs and TPUs run all three natively in
bf16. So the precision is chosen per dot kind (`DotPlan`, `plan_dots`) and a custom VJP computes each
with its own; the weight gradient arrives in float32, as the float32 parameters it updates.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

BF16, F32 = "bfloat16", "float32"


@dataclasses.dataclass(frozen=True)
class DotPlan:
    """The operand precision of each dot kind of a bf16 train step ("bfloat16": bf16 x bf16 with
    float32 accumulation; "float32": operands upcast first). Dense layers: `forward`, `input_grad`,
    `weight_grad`; the blocked attention kernel: `scores` (q k^T, and d_out v^T in the backward pass),
    `context` (p v), `query_grad` (d_scores k) and `key_value_grad` (d_v = p^T d_out and
    d_k = d_scores^T q, contracting over query rows, the weight-gradient shape)."""

    forward: str = BF16
    input_grad: str = BF16
    weight_grad: str = BF16
    scores: str = BF16
    context: str = BF16
    query_grad: str = BF16
    key_value_grad: str = BF16


# Per backend, chosen by measurement (benchmarks/dot_kinds.py): CPU runs every dot that contracts over
# the rows (tokens, or query positions) faster in float32.
_CPU_PLAN = DotPlan(weight_grad=F32, key_value_grad=F32)


def plan_dots(platform: str, dtype) -> DotPlan | None:
    """The DotPlan of a model computing in `dtype` on `platform` (as `target_platform` names it);
    None in float32 (every dot float32, as `nnx.Linear` computes it)."""
    if jnp.dtype(dtype) != jnp.bfloat16:
        return None
    return _CPU_PLAN if platform == "cpu" else DotPlan()


def dot(a, b, dimension_numbers, precision: str, out_dtype):
    """`lax.dot_general` with operands in `precision`, float32 accumulation, the result as `out_dtype`."""
    operand = jnp.bfloat16 if precision == BF16 else jnp.float32
    result = jax.lax.dot_general(a.astype(operand), b.astype(operand), dimension_numbers,
                                 preferred_element_type=jnp.float32)
    return result.astype(out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def mixed_matmul(x, kernel, plan: DotPlan):
    """x [..., in] (compute dtype) @ kernel [in, out] (float32 parameter) -> [..., out] in x's dtype,
    each of the three dots in the precision `plan` gives it."""
    return _matmul_forward(x, kernel, plan)[0]


def _matmul_forward(x, kernel, plan):
    return dot(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), plan.forward, x.dtype), (x, kernel)


def _matmul_backward(plan, residuals, grad):
    x, kernel = residuals
    d_x = dot(grad, kernel, (((grad.ndim - 1,), (1,)), ((), ())), plan.input_grad, x.dtype)
    rows = tuple(range(x.ndim - 1))
    d_kernel = dot(x, grad, ((rows, rows), ((), ())), plan.weight_grad, kernel.dtype)
    return d_x, d_kernel


mixed_matmul.defvjp(_matmul_forward, _matmul_backward)


class Dense(nnx.Linear):
    """`nnx.Linear` (same parameters, same checkpoints) whose bf16 dots follow a DotPlan; with no
    plan (float32) exactly `nnx.Linear`."""

    def __init__(self, *args, dots: DotPlan | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dots = dots

    def __call__(self, inputs, out_sharding=None):
        if self.dots is None:
            return super().__call__(inputs, out_sharding=out_sharding)
        y = mixed_matmul(inputs.astype(self.dtype), self.kernel[...], self.dots)
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)

"""Which precision each kind of encoder dot should run in on this backend: the per-dot table behind
`jaxqa.models.precision` (issue 32).

A train step runs three dots per Dense layer (forward `x @ W`, input gradient `g @ W^T`, weight
gradient `x^T @ g`, contracting over all tokens) and four per attention block (scores `q k^T`,
context `p v` and their gradients). Each is timed here as float32, bf16 x bf16 -> bf16 (what
`nnx.Linear(dtype=bfloat16)` asks for) and bf16 x bf16 -> float32 (`preferred_element_type`), at a
model's shapes (16 x 384 tokens by default). XLA flags are per process, so the script runs itself
once per flag set (none, `--xla_cpu_use_xnnpack=true`, ...) and prints one table.

    python benchmarks/dot_kinds.py [--model minilm|bert-base] [--tokens 6144] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MODELS = {"minilm": dict(hidden=384, mlp=1536, heads=12), "bert-base": dict(hidden=768, mlp=3072, heads=12)}
FLAG_SETS = ["", "--xla_cpu_use_xnnpack=true", "--xla_cpu_use_onednn=true"]
KINDS = ("float32", "bf16->bf16", "bf16->f32")


def dot_cases(model: str, tokens: int, seq: int):
    """(name, lhs shape, rhs shape, einsum) of every dot kind of one layer's train step."""
    m = MODELS[model]
    h, i, heads = m["hidden"], m["mlp"], m["heads"]
    cases = []
    for layer, (n_in, n_out) in {"qkv": (h, 3 * h), "attn out": (h, h), "mlp up": (h, i), "mlp down": (i, h)}.items():
        cases += [(f"{layer} fwd x@W", (tokens, n_in), (n_in, n_out), "tk,kn->tn"),
                  (f"{layer} dx g@W^T", (tokens, n_out), (n_in, n_out), "tn,kn->tk"),
                  (f"{layer} dW x^T@g", (tokens, n_in), (tokens, n_out), "tk,tn->kn")]
    d = h // heads
    cases += [("attn scores q k^T", (heads, seq, d), (heads, seq, d), "hqd,hkd->hqk"),
              ("attn context p v", (heads, seq, seq), (heads, seq, d), "hqk,hkd->hqd"),
              ("attn d_v p^T g", (heads, seq, seq), (heads, seq, d), "hqk,hqd->hkd"),
              ("attn d_q ds k", (heads, seq, seq), (heads, seq, d), "hqk,hkd->hqd")]
    return cases


def time_cases(model: str, tokens: int, seq: int, repeats: int) -> dict:
    """Seconds (best of `repeats`) of each case and kind, in this process (its XLA_FLAGS)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {}
    rng = np.random.default_rng(0)
    for name, lhs_shape, rhs_shape, spec in dot_cases(model, tokens, seq):
        lhs32 = jnp.asarray(rng.standard_normal(lhs_shape, np.float32))
        rhs32 = jnp.asarray(rng.standard_normal(rhs_shape, np.float32))
        row = {}
        for kind in KINDS:
            low = kind != "float32"
            a, b = (lhs32.astype(jnp.bfloat16), rhs32.astype(jnp.bfloat16)) if low else (lhs32, rhs32)
            result = jnp.float32 if kind != "bf16->bf16" else None
            fn = jax.jit(lambda x, y, spec=spec, result=result: jnp.einsum(spec, x, y, preferred_element_type=result))
            fn(a, b).block_until_ready()
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                fn(a, b).block_until_ready()
                best = min(best, time.perf_counter() - start)
            row[kind] = best
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="minilm")
    parser.add_argument("--tokens", type=int, default=16 * 384)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_cases(args.model, args.tokens, args.seq, args.repeats)))
        return
    tables = {}
    for flags in FLAG_SETS:
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
        run = subprocess.run([sys.executable, __file__, "--child", "--model", args.model, "--tokens", str(args.tokens),
                              "--seq", str(args.seq), "--repeats", str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True)
        tables[flags or "(no flags)"] = json.loads(run.stdout.strip().splitlines()[-1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    flags = open("/proc/cpuinfo").read()
    features = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    print(f"{args.model}, {args.tokens} tokens, attention per row of {args.seq}; CPU {cpu}, {os.cpu_count()} cores, "
          f"bf16 features: {', '.join(features) or 'none'}; speed-up over float32 (best of {args.repeats})")
    names = list(tables)
    print("| dot | float32 ms | " + " | ".join(f"{k} {n}" for n in names for k in KINDS[1:]) + " |")
    print("|---" * (2 + 2 * len(names)) + "|")
    for case in tables[names[0]]:
        base = tables[names[0]][case]["float32"]
        cells = [f"{base * 1e3:.2f}"] + [f"{base / tables[n][case][k]:.2f}x" for n in names for k in KINDS[1:]]
        print(f"| {case} | " + " | ".join(cells) + " |")
    for n in names[1:]:
        print(f"float32 with {n}: " + ", ".join(f"{c} {tables[names[0]][c]['float32'] / tables[n][c]['float32']:.2f}x"
                                                for c in tables[n]))


if __name__ == "__main__":
    main()

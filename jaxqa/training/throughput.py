"""How fast a run goes and where its time went: model FLOPs, utilisation of the chip, goodput.

Model FLOPs are counted analytically from the encoder's shape (matmuls and attention, forward and
backward), not from XLA's cost model, so the figure is comparable across compilers and papers.
"""

from __future__ import annotations

import contextlib
import re
import time

import jax
import numpy as np

# Dense (not sparse) matmul peak per chip, FLOP/s, by dtype, from the vendors' datasheets (NVIDIA's
# print "with sparsity" figures: dense is half). GPU float32 = TF32 tensor cores, which XLA uses for
# float32 matmuls at default precision; TPU float32 matmuls run on the bf16 MXU at default precision.
PEAK_FLOPS = {
    "H100 SXM": {"bfloat16": 989e12, "float32": 495e12},
    "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},
    "H100 NVL": {"bfloat16": 835e12, "float32": 418e12},  # per GPU (the 2024 datasheet; the first quoted a pair)
    "H200 SXM": {"bfloat16": 989e12, "float32": 495e12},
    "H200 NVL": {"bfloat16": 835e12, "float32": 418e12},
    "GH200": {"bfloat16": 989e12, "float32": 495e12},  # its Hopper GPU is the H100/H200 SXM's
    "A100": {"bfloat16": 312e12, "float32": 156e12},  # SXM4 and PCIe alike
    "L40S": {"bfloat16": 362e12, "float32": 183e12},
    "L40": {"bfloat16": 181e12, "float32": 90.5e12},
    "L4": {"bfloat16": 121e12, "float32": 60e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
    "TPU v6e": {"bfloat16": 918e12, "float32": 918e12},
}

# The words of JAX's `device_kind` that name each entry ("NVIDIA H100 PCIe" -> {nvidia, h100, pcie}):
# whole words, so "NVIDIA L40S" is not an L40 or an L4; the entry with the most words matched wins, so
# an H100 PCIe or NVL ("NVIDIA H100 PCIe", "NVIDIA H100 NVL") is not given the SXM ("NVIDIA H100 80GB
# HBM3") peak. JAX names v5e and v6e "TPU v5 lite" and "TPU v6 lite", and v5p "TPU v5p" (older: "TPU v5").
CHIP_WORDS = {
    "H100 SXM": [("h100",)],
    "H100 PCIe": [("h100", "pcie")],
    "H100 NVL": [("h100", "nvl")],
    "H200 SXM": [("h200",)],
    "H200 NVL": [("h200", "nvl")],
    "GH200": [("gh200",)],
    "A100": [("a100",)],
    "L40S": [("l40s",)],
    "L40": [("l40",)],
    "L4": [("l4",)],
    "TPU v4": [("tpu", "v4")],
    "TPU v5e": [("tpu", "v5", "lite"), ("tpu", "v5e")],
    "TPU v5p": [("tpu", "v5p"), ("tpu", "v5")],
    "TPU v6e": [("tpu", "v6", "lite"), ("tpu", "v6e")],
}


def chip(device_kind: str) -> str | None:
    """The PEAK_FLOPS entry a JAX `device_kind` names, e.g. "NVIDIA L40S" -> "L40S"; None if none does."""
    words = set(re.findall(r"[a-z0-9]+", device_kind.lower()))
    matches = [(len(need), name) for name, options in CHIP_WORDS.items() for need in options if words >= set(need)]
    return max(matches, key=lambda match: match[0])[1] if matches else None


def train_flops(model_config, batch: int, seq_len: int) -> float:
    """FLOPs of one training step on [batch, seq_len]: 3x the forward (backward = 2x forward).

    Per token and layer the forward does 2*(4*h*h + 2*h*i) for the QKV, output and FFN matmuls and
    2*2*seq_len*h for attention scores and the weighted sum; plus the QA head (2*h*2)."""
    h, i, layers = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
    if hasattr(model_config, "layer_schedule"):  # layers run, not stored: ALBERT runs each group's inner layers
        layers = len(model_config.layer_schedule())
    embedding_size = getattr(model_config, "embedding_size", h) or h
    per_token = layers * (2 * (4 * h * h + 2 * h * i) + 4 * seq_len * h) + 4 * h
    if embedding_size != h:  # a projection from a smaller embedding (ELECTRA/ALBERT-style)
        per_token += 2 * embedding_size * h
    return 3.0 * batch * seq_len * per_token


def peak_matmul(dtype: str, size: int = 2048):
    """(jitted [size x size] @ [size x size] matmul, its operand) in `dtype` as the model's dots run it:
    float32 accumulation and result (for bfloat16, bf16 x bf16 -> float32, the dot a bf16 run computes)."""
    import jax.numpy as jnp

    operand = jnp.ones((size, size), dtype)
    return jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32)), operand


PEAK_TRIALS = 5  # short runs of the peak matmul at start-up; the fastest counts


def measure_matmul_peak(size: int = 2048, dtype: str = "float32", trials: int = PEAK_TRIALS, pause: float = 0.05,
                        timer=time.perf_counter) -> float:
    """FLOP/s of `peak_matmul` on the default device (the CPU's practical peak): the fastest of `trials`
    short runs `pause` seconds apart, so that a moment when another process has the cores does not
    lower the peak (and inflate the MFU measured against it)."""
    matmul, operand = peak_matmul(dtype, size)
    matmul(operand).block_until_ready()  # compiled, and the operand in place
    best = float("inf")
    for trial in range(trials):
        if trial:
            time.sleep(pause)
        start = timer()
        matmul(operand).block_until_ready()
        best = min(best, timer() - start)
    return 2.0 * size**3 / best


def device_peak(device, dtype: str) -> tuple[float | None, str]:
    """(peak FLOP/s per device, where the figure comes from) for `device` computing in `dtype`."""
    kind = getattr(device, "device_kind", "")
    name = chip(kind)
    if name:
        return PEAK_FLOPS[name][dtype], f"{name} datasheet"
    if device.platform == "cpu":
        dot = "bfloat16 x bfloat16 -> float32" if dtype == "bfloat16" else dtype
        return measure_matmul_peak(dtype=dtype), f"measured 2048^3 {dot} matmul, best of {PEAK_TRIALS}"
    return None, f"unknown device kind {kind!r}"


class Goodput:
    """Wall time since launch split by what it was spent on; `timer(kind)` adds a block's duration to
    `kind`; what no timer claimed is idle (imports, tokenisation outside startup, Python overhead)."""

    KINDS = ("startup", "compile", "train_steps", "data_wait", "eval", "checkpoint")

    def __init__(self, launched: float | None = None):
        self.launched = launched or time.perf_counter()
        self.seconds = dict.fromkeys(self.KINDS, 0.0)

    @contextlib.contextmanager
    def timer(self, kind: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] += time.perf_counter() - start

    def summary(self) -> dict:
        wall = time.perf_counter() - self.launched
        parts = {k: round(v, 2) for k, v in self.seconds.items()}
        parts["idle"] = round(max(0.0, wall - sum(self.seconds.values())), 2)
        return {"wall_seconds": round(wall, 2), **parts,
                "goodput": round(self.seconds["train_steps"] / wall, 4) if wall else 0.0}

    def table(self) -> str:
        summary = self.summary()
        wall = summary["wall_seconds"] or 1.0
        rows = [f"{kind:<12} {summary[kind]:9.1f} s {100 * summary[kind] / wall:5.1f}%"
                for kind in (*self.KINDS, "idle")]
        return "\n".join([f"goodput {100 * summary['goodput']:.1f}% of {wall:.1f} s wall:", *rows])


class Window:
    """Throughput since the last log line: examples, real and padded tokens, model FLOPs of the shapes
    run (padding included), and their rate against the devices' peak. Eval and checkpoint time spent
    inside the window is excluded with `exclude`."""

    def __init__(self, model_config, peak_flops: float | None, n_devices: int):
        self.model_config, self.peak, self.n_devices = model_config, peak_flops, n_devices
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.examples = self.real_tokens = self.padded_tokens = 0
        self.flops = 0.0

    def add(self, batch, lengths: np.ndarray) -> None:
        real = batch.rows >= 0
        self.examples += int(real.sum())
        self.real_tokens += int(lengths[batch.rows[real]].sum())
        self.padded_tokens += len(batch.rows) * batch.seq_len
        self.flops += train_flops(self.model_config, len(batch.rows), batch.seq_len)

    def exclude(self, seconds: float) -> None:
        self.start += seconds

    def rates(self) -> dict:
        """The window's rates; starts the next window."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        rates = {"examples_per_s": self.examples / seconds, "tokens_per_s": self.real_tokens / seconds,
                 "padded_tokens_per_s": self.padded_tokens / seconds, "model_tflops": self.flops / seconds / 1e12,
                 "window_seconds": seconds}
        if self.peak:
            rates["mfu"] = self.flops / seconds / (self.peak * self.n_devices)
        self.reset()
        return rates

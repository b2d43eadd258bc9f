"""Precision: which compute dtype a run uses (`--dtype auto` resolved for the device it runs on)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

# --- which dtype runs -------------------------------------------------------------------------------------
# bf16 only where the device computes bf16 matmuls natively: elsewhere the compiler converts bf16 operands
# to float32, so bf16 costs accuracy and buys nothing (XLA:CPU without these instructions does just that).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags: AMD Zen 4+ / Intel Cooper Lake+; Intel AMX
CUDA_BF16_CAPABILITY = (8, 0)  # Ampere (A100) and later: bf16 tensor cores
ROCM_BF16_ARCHES = ("gfx90a", "gfx94", "gfx95")  # MI200 (gfx90a), MI300 (gfx940-942), MI350 (gfx950)
# "AMD Instinct MI250X" and later by name. MI100 (gfx908) has bf16 matrix cores too but is left out, to be
# conservative: unmeasured here, and a wrong bf16 costs more than a missed one.
ROCM_BF16_FIRST_MI = 200


def choose_dtype(platform: str, *, compute_capability: tuple[int, int] | None = None, device_kind: str = "",
                 cpuinfo: str | None = None) -> tuple[str, str]:
    """("bfloat16" | "float32", why) for a device of `platform` ("cpu", "cuda", "rocm", "tpu").
    `cpuinfo`: the text of /proc/cpuinfo (None: not Linux, or unreadable); `compute_capability`: a CUDA
    GPU's (major, minor); `device_kind`: a ROCm GPU's name or gfx architecture as JAX reports it. Where
    native bf16 cannot be confirmed the answer is float32: a wrong bf16 is slower and less accurate."""
    if platform == "tpu":
        return "bfloat16", "TPU: bf16 is its native matmul type"
    if platform == "cuda":
        if compute_capability is None:
            return "float32", "CUDA GPU of unknown compute capability: can't tell whether it has bf16 tensor cores"
        version = ".".join(map(str, compute_capability))
        if tuple(compute_capability) >= CUDA_BF16_CAPABILITY:
            return "bfloat16", f"CUDA GPU of compute capability {version} has bf16 tensor cores"
        return "float32", f"CUDA GPU of compute capability {version} has no bf16 tensor cores (8.0 and later have)"
    if platform == "rocm":
        return _rocm_dtype(device_kind)
    if platform == "cpu":
        return _cpu_dtype(cpuinfo)
    return "float32", f"{platform}: no known native bf16"


def _rocm_dtype(device_kind: str) -> tuple[str, str]:
    kind = device_kind.lower()
    names = [int(n) for n in re.findall(r"\bmi(\d{3})", kind)]
    if any(arch in kind for arch in ROCM_BF16_ARCHES) or (names and names[0] >= ROCM_BF16_FIRST_MI):
        return "bfloat16", f"ROCm GPU {device_kind!r} (MI200 or later) computes bf16 natively"
    if names or "gfx" in kind:
        return "float32", f"ROCm GPU {device_kind!r} is older than MI200 (bf16 is chosen from MI200 on)"
    return "float32", f"ROCm GPU {device_kind!r}: can't tell whether it is an MI200 or later"


def cpu_bf16_features(cpuinfo: str) -> list[str]:
    """The CPU_BF16_FLAGS that /proc/cpuinfo's text lists among the CPU's flags."""
    flags = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            flags.update(value.split())
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def _cpu_dtype(cpuinfo: str | None) -> tuple[str, str]:
    if cpuinfo is None:
        return "float32", "can't tell whether this CPU computes bf16 natively (no /proc/cpuinfo: not Linux)"
    found = cpu_bf16_features(cpuinfo)
    if found:
        return "bfloat16", f"CPU has {' and '.join(found)}"
    return "float32", "CPU has neither avx512_bf16 nor amx_bf16: bf16 matmuls would run as float32"


def device_facts(device) -> dict:
    """What `choose_dtype` needs to know of a JAX device: platform (CUDA and ROCm told apart), compute
    capability, device kind and, for a CPU, /proc/cpuinfo's text (None where there is none)."""
    platform = device.platform
    if platform == "gpu":
        platform = "rocm" if "rocm" in device.client.platform_version.lower() else "cuda"
    facts = {"platform": platform, "device_kind": getattr(device, "device_kind", "")}
    if platform == "cuda":
        try:
            major, minor = str(device.compute_capability).split(".")[:2]
            facts["compute_capability"] = (int(major), int(minor))
        except (AttributeError, ValueError):
            pass
    if platform == "rocm":  # the gfx architecture, where this JAX reports one, names the chip best
        facts["device_kind"] = " ".join(filter(None, [facts["device_kind"],
                                                      str(getattr(device, "compute_capability", "") or "")]))
    if platform == "cpu":
        facts["cpuinfo"] = read_cpuinfo()
    return facts


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> str | None:
    """/proc/cpuinfo's text on Linux; None elsewhere or when it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def resolve_dtype(requested: str, device, given_as: str = "--dtype") -> tuple[str, str]:
    """(dtype the run computes in, why): `requested` as given, or for "auto" what `device` computes
    natively. `given_as`: how the reason names the setting (run_qa.py's flag by default)."""
    if requested != "auto":
        return requested, f"{given_as} {requested}"
    dtype, why = choose_dtype(**device_facts(device))
    return dtype, f"{given_as} auto: {why}"

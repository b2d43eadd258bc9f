"""--dtype auto: bf16 where the device computes it natively, float32 elsewhere, decided once at set-up
and said in the log; the run, its MFU peak, its saved settings and QuestionAnswerer follow it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import ROOT

from jaxqa.models import precision
from jaxqa.scoring.answer import QuestionAnswerer

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n")
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n"
SKYLAKE = "flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\nvmx flags\t: vnmi avx512_bf16\n"  # not a CPU flag line
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm\n"  # ARM's bf16: XLA:CPU's bf16 dots there are not established
NO_BF16 = "float32", "CPU has neither avx512_bf16 nor amx_bf16: bf16 matmuls would run as float32"

RESOLUTIONS = [
    ("tpu", {}, "bfloat16", "TPU: bf16 is its native matmul type"),
    ("cuda", dict(compute_capability=(8, 0)), "bfloat16", "CUDA GPU of compute capability 8.0 has bf16 tensor cores"),
    ("cuda", dict(compute_capability=(9, 0)), "bfloat16", "CUDA GPU of compute capability 9.0 has bf16 tensor cores"),
    ("cuda", dict(compute_capability=(7, 5)), "float32",
     "CUDA GPU of compute capability 7.5 has no bf16 tensor cores (8.0 and later have)"),
    ("cuda", {}, "float32", "CUDA GPU of unknown compute capability: can't tell whether it has bf16 tensor cores"),
    ("rocm", dict(device_kind="AMD Instinct MI250X"), "bfloat16",
     "ROCm GPU 'AMD Instinct MI250X' (MI200 or later) computes bf16 natively"),
    ("rocm", dict(device_kind="AMD Instinct MI300X gfx942"), "bfloat16",
     "ROCm GPU 'AMD Instinct MI300X gfx942' (MI200 or later) computes bf16 natively"),
    ("rocm", dict(device_kind="gfx90a"), "bfloat16", "ROCm GPU 'gfx90a' (MI200 or later) computes bf16 natively"),
    ("rocm", dict(device_kind="AMD Instinct MI100"), "float32",
     "ROCm GPU 'AMD Instinct MI100' is older than MI200 (bf16 is chosen from MI200 on)"),
    ("rocm", dict(device_kind="gfx908"), "float32", "ROCm GPU 'gfx908' is older than MI200 (bf16 is chosen from MI200 on)"),
    ("rocm", dict(device_kind="AMD Radeon RX 7900 XTX"), "float32",
     "ROCm GPU 'AMD Radeon RX 7900 XTX': can't tell whether it is an MI200 or later"),
    ("cpu", dict(cpuinfo=ZEN4), "bfloat16", "CPU has avx512_bf16"),
    ("cpu", dict(cpuinfo=SAPPHIRE_RAPIDS), "bfloat16", "CPU has avx512_bf16 and amx_bf16"),
    ("cpu", dict(cpuinfo=SKYLAKE), *NO_BF16),
    ("cpu", dict(cpuinfo=GRAVITON3), *NO_BF16),
    ("cpu", dict(cpuinfo=None), "float32",
     "can't tell whether this CPU computes bf16 natively (no /proc/cpuinfo: not Linux)"),
    ("metal", {}, "float32", "metal: no known native bf16"),
]


NAMES = ["tpu", "cuda-8.0", "cuda-9.0", "cuda-7.5", "cuda-unknown", "rocm-MI250X", "rocm-MI300X", "rocm-gfx90a",
         "rocm-MI100", "rocm-gfx908", "rocm-RX7900", "cpu-zen4", "cpu-sapphire-rapids", "cpu-skylake", "cpu-graviton3",
         "cpu-not-linux", "metal"]


@pytest.mark.parametrize("platform, facts, dtype, reason", RESOLUTIONS, ids=NAMES)
def test_auto_picks_bf16_only_where_the_device_computes_it_natively(platform, facts, dtype, reason):
    assert precision.choose_dtype(platform, **facts) == (dtype, reason)


def test_the_dtype_of_a_jax_device_is_resolved_from_what_it_reports(monkeypatch):
    """A CUDA device's capability, a ROCm device's name, a CPU's /proc/cpuinfo; a dtype given stays."""
    h100 = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                                 client=types.SimpleNamespace(platform_version="PJRT C API\ncuda 12080"))
    mi250 = types.SimpleNamespace(platform="gpu", device_kind="AMD Instinct MI250X",
                                  client=types.SimpleNamespace(platform_version="PJRT C API\nrocm 60300"))
    cpu = types.SimpleNamespace(platform="cpu", device_kind="cpu")
    assert precision.read_cpuinfo(Path("/nonexistent/cpuinfo")) is None
    with monkeypatch.context() as patch:  # macOS, Windows: no /proc/cpuinfo to ask
        patch.setattr(sys, "platform", "darwin")
        assert precision.read_cpuinfo() is None
    monkeypatch.setattr(precision, "read_cpuinfo", lambda: SAPPHIRE_RAPIDS)
    assert precision.resolve_dtype("auto", h100) == (
        "bfloat16", "--dtype auto: CUDA GPU of compute capability 9.0 has bf16 tensor cores")
    assert precision.resolve_dtype("auto", mi250) == (
        "bfloat16", "--dtype auto: ROCm GPU 'AMD Instinct MI250X' (MI200 or later) computes bf16 natively")
    assert precision.resolve_dtype("auto", cpu) == ("bfloat16", "--dtype auto: CPU has avx512_bf16 and amx_bf16")
    assert precision.resolve_dtype("float32", cpu) == ("float32", "--dtype float32")


def this_cpu_auto() -> tuple[str, str]:
    """What --dtype auto must pick on the CPU running the tests (this project's AMD EPYC has avx512_bf16)."""
    text = Path("/proc/cpuinfo").read_text() if sys.platform.startswith("linux") else ""
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    found = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return ("bfloat16", f"CPU has {' and '.join(found)}") if found else NO_BF16


def test_dtype_auto_run_logs_its_choice_and_computes_in_it(tmp_path, tiny_bert_dir, data_dir):
    """One step of a --dtype auto run: the log line says which dtype and why, the MFU peak is measured on
    that dtype's dot, and run_config.json records the dtype the run computed in."""
    dtype, why = this_cpu_auto()
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--model_name_or_path", str(tiny_bert_dir),
                           "--train_file", str(data_dir / "fixtures/flat_sample.json"), "--do_train",
                           "--max_steps", "1", "--max_train_samples", "4", "--per_device_train_batch_size", "4",
                           "--max_seq_length", "64", "--doc_stride", "16", "--max_query_length", "16",
                           "--save_strategy", "no", "--dtype", "auto",
                           "--accelerator", "cpu", "--output_dir", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert f"compute dtype {dtype} (--dtype auto: {why})" in log
    dot = "bfloat16 x bfloat16 -> float32" if dtype == "bfloat16" else "float32"
    assert re.search(rf"utilisation \(mfu\) against [\d.]+ TFLOP/s per device \(measured 2048\^3 {dot} matmul, "
                     r"best of 5\)", log), log[-3000:]
    assert json.loads((out / "run_config.json").read_text())["dtype"] == dtype


def test_question_answerer_computes_in_the_dtype_asked(tiny_bert_dir, monkeypatch):
    """from_pretrained(dtype=...): bfloat16 answers from bf16 compute (scores a bf16 rounding away from
    float32's), "auto" is this device's choice and the default; anything else is refused by name."""
    windows = dict(max_seq_length=64, doc_stride=16, max_query_length=16)
    context = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(12))
    results = {dtype: QuestionAnswerer.from_pretrained(tiny_bert_dir, dtype=dtype, **windows)("Which topic?", context)
               for dtype in ("float32", "bfloat16", "auto")}
    assert QuestionAnswerer.from_pretrained(tiny_bert_dir, **windows)("Which topic?", context) == results["auto"]
    assert results["auto"] == results[this_cpu_auto()[0]]
    f32, bf16 = results["float32"]["score"], results["bfloat16"]["score"]
    assert bf16 != f32 and bf16 == pytest.approx(f32, abs=0.05 * max(1.0, abs(f32)))
    with pytest.raises(ValueError, match=r"^dtype 'float16': use one of auto, float32, bfloat16$"):
        QuestionAnswerer.from_pretrained(tiny_bert_dir, dtype="float16")

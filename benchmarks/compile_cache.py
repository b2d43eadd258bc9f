"""First-step latency with and without JAX's persistent compilation cache.

Runs the same short fine-tune twice with one fresh `--compilation_cache_dir`: the first run
compiles every length bucket, the second finds them in the cache. For each run it reports the
seconds from process launch to the first train step (timed from outside, and as the run logs it)
and the run's own compile report.

    python benchmarks/compile_cache.py [--runs 2] [-- extra run_qa.py flags]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxqa.config import SAMPLE_DIR  # noqa: E402

FIRST_STEP = re.compile(r"first train step at ([\d.]+)s after launch")
COMPILED = re.compile(r"compiled the train step for (\d+) batch shape\(s\) in ([\d.]+)s "
                      r"\(persistent cache: (\d+) hit\(s\), (\d+) miss\(es\); (\d+) traced")


def launch_to_first_step(flags: list[str]) -> dict:
    """Seconds from Popen to the 'first train step' log line (the run is stopped there)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_qa.py"), *flags], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    out = {"compile": None}
    for line in proc.stderr:
        if m := COMPILED.search(line):
            out["compile"] = dict(zip(("programs", "seconds", "hits", "misses", "traced"), map(float, m.groups())))
        if m := FIRST_STEP.search(line):
            out["outside_s"] = time.perf_counter() - start
            out["logged_s"] = float(m.group(1))
            break
    proc.kill()
    proc.wait()
    if "outside_s" not in out:
        raise SystemExit(f"run_qa.py ended before its first train step: {' '.join(flags)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--train_file", str(SAMPLE_DIR / "squad_sample_train.json"), "--output_dir", f"{tmp}/run", "--compilation_cache_dir", f"{tmp}/cache", "--overwrite_output_dir", "--do_train",
                 "--max_seq_length", "256", "--per_device_train_batch_size", "16", "--num_train_epochs", "1",
                 "--accelerator", "cpu", *[a for a in extra if a != "--"]]
        results = [launch_to_first_step(flags) for _ in range(args.runs)]
    for i, r in enumerate(results):
        c = r["compile"] or {}
        print(f"run {i + 1}: first train step {r['outside_s']:.1f}s after launch ({r['logged_s']:.1f}s logged); "
              f"compiled {c.get('programs', 0):.0f} shape(s) in {c.get('seconds', 0):.1f}s, "
              f"{c.get('hits', 0):.0f} cache hit(s), {c.get('misses', 0):.0f} miss(es), {c.get('traced', 0):.0f} traced")
    for i, r in enumerate(results[1:], 2):
        print(f"run {i} reaches its first step {results[0]['outside_s'] / r['outside_s']:.2f}x sooner than run 1")


if __name__ == "__main__":
    main()

"""The default job (`python run_qa.py`, no data or model flags) at several seeds: F1 before and after on
its 201 held-out questions, wall time of each run, and `jaxqa compare` between the seeds.

It is what a new user sees first, so it must learn the same way at every seed (issue 19: F1 >= 45 at
seeds 42, 43 and 44, each run under 6 minutes on 2 CPU cores). Extra flags go to every run, so a
candidate recipe is measured the same way: `--flags "--learning_rate 3e-4 --layerwise_lr_decay 0.8"`.

    python benchmarks/default_run_seeds.py [--seeds 42 43 44] [--flags "..."] [--out outputs/default_seeds]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_seed(seed: int, flags: list[str], out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), "--seed", str(seed), "--output_dir", str(out),
                           *flags], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"seed {seed} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    before = json.loads((out / "before_training_results.json").read_text())
    after = json.loads((out / "eval_results.json").read_text())
    return {"seed": seed, "wall_seconds": round(wall, 1), "before_f1": before["f1"], "f1": after["f1"],
            "exact_match": after["exact_match"], "step": after["step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--flags", default="", help="extra flags for every run, as one string")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "default_seeds")
    args = parser.parse_args()
    flags = shlex.split(args.flags)
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(seed, flags, args.out / f"seed{seed}"))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nflags: default job {args.flags}".rstrip())
    print("| seed | F1 before | F1 after | EM after | wall time |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['before_f1']:.2f} | {r['f1']:.2f} | {r['exact_match']:.2f} | "
              f"{r['wall_seconds'] / 60:.1f} min |")
    for a, b in zip(rows, rows[1:]):
        proc = subprocess.run([sys.executable, "-m", "jaxqa", "compare", str(args.out / f"seed{a['seed']}"),
                               str(args.out / f"seed{b['seed']}")], capture_output=True, text=True, cwd=ROOT)
        print(f"\nseed {a['seed']} -> seed {b['seed']}:\n{proc.stdout.strip()}")


if __name__ == "__main__":
    main()

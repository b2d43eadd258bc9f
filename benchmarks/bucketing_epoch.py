"""One epoch of SQuAD v1.1 fine-tuning with length buckets against every window padded to 384.

Both runs: MiniLM, the shared train split, the same features (one feature cache), batch 16,
max_seq_length 384, doc_stride 128, lr 1e-4 with 10% warmup, seed 42, then dev scored. Reports
each run's wall time (launch to exit), its train-step time (goodput.json) and dev EM/F1.

    python benchmarks/bucketing_epoch.py [--out outputs/bucketing_epoch] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "squad_v1.1"


def run(out: Path, epochs: float, *extra: str) -> dict:
    flags = ["--train_file", DATA / "train.json", "--validation_file", DATA / "dev.json", "--do_train", "--do_eval",
             "--max_seq_length", 384, "--doc_stride", 128, "--per_device_train_batch_size", 16,
             "--per_device_eval_batch_size", 64, "--learning_rate", 1e-4, "--warmup_ratio", 0.1,
             "--weight_decay", 0.01, "--num_train_epochs", epochs, "--seed", 42, "--logging_steps", 50,
             "--save_steps", 100000, "--accelerator", "cpu", "--feature_cache_dir", out.parent / "feature_cache",
             "--output_dir", out, "--overwrite_output_dir", *extra]
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "run_qa.py"), *map(str, flags)], check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    result = json.loads((out / "eval_results.json").read_text())
    goodput = json.loads((out / "goodput.json").read_text())
    return {"wall_s": wall, "train_steps_s": goodput["train_steps"], "exact_match": result["exact_match"],
            "f1": result["f1"], "features": result.get("num_features")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bucketing_epoch")
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    out = Path(args.out).absolute()
    runs = {"bucketed": run(out / "bucketed", args.epochs),
            "padded_384": run(out / "padded_384", args.epochs, "--pad_to_max_length")}
    for name, r in runs.items():
        print(f"{name:>10}: wall {r['wall_s']:7.1f} s, train steps {r['train_steps_s']:7.1f} s, "
              f"dev EM {r['exact_match']:.2f} F1 {r['f1']:.2f}")
    b, p = runs["bucketed"], runs["padded_384"]
    print(f"bucketed / padded: wall {b['wall_s'] / p['wall_s']:.2f}x, train steps "
          f"{b['train_steps_s'] / p['train_steps_s']:.2f}x; F1 difference {b['f1'] - p['f1']:+.2f}")
    (out / "summary.json").write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()

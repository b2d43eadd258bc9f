"""What a run records as it goes: `metrics.jsonl`, TensorBoard event files and, at the end,
`training_curves.png`. One object so the loop calls `train`/`eval` and never thinks about formats.

On resume the records past the restored step are dropped (they are trained again), from the JSON log
and, through TensorBoard's `purge_step`, from the event files' view.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from jaxqa import atomic

log = logging.getLogger("jaxqa")

TENSORBOARD_SUBDIR = "tensorboard"
SCALARS = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm",
           "examples_per_s": "train/examples_per_s"}


class RunLog:
    def __init__(self, out_dir: Path, start_step: int, enabled: bool = True):
        self.out_dir, self.enabled = out_dir, enabled
        self.path = out_dir / "metrics.jsonl"
        self.file = self.tensorboard = None
        if not enabled:  # processes other than 0 write nothing
            return
        kept = []
        if start_step and self.path.exists():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True)
                    if (record := _parse(line)) and record.get("step", 0) <= start_step]
        atomic.write_text(self.path, "".join(kept))
        self.file = open(self.path, "a", encoding="utf-8")
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # an optional extra: the JSON log is always written
            log.warning("tensorboardX is not installed: no TensorBoard event files (pip install tensorboardX)")
        else:
            self.tensorboard = SummaryWriter(str(out_dir / TENSORBOARD_SUBDIR), purge_step=start_step or None,
                                             flush_secs=30)

    def train(self, record: dict) -> None:
        self._write(record)
        if self.tensorboard:
            for key, tag in SCALARS.items():
                if key in record:
                    self.tensorboard.add_scalar(tag, record[key], record["step"])

    def eval(self, step: int, result: dict) -> None:
        self._write({"step": step, "eval": result})
        if self.tensorboard:
            for key, value in result.items():
                if isinstance(value, (int, float)) and key not in ("step", "num_examples", "num_features"):
                    self.tensorboard.add_scalar(f"eval/{key}", value, step)

    def _write(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def flush(self) -> None:
        if self.tensorboard:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tensorboard:
            self.tensorboard.close()


def _parse(line: str) -> dict | None:
    """A record of the log, or None for a blank line or the torn last line of a killed run."""
    try:
        return json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        return None


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(train records, eval records) of a metrics.jsonl."""
    records = [r for line in path.read_text(encoding="utf-8").splitlines() if (r := _parse(line))]
    return [r for r in records if "loss" in r], [r for r in records if "eval" in r]


def plot_curves(out_dir: Path) -> Path | None:
    """`training_curves.png`: training loss and eval F1 (or EM) against steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no training_curves.png (pip install matplotlib)")
        return None
    train, evals = read_metrics(out_dir / "metrics.jsonl")
    if not train:
        return None
    points = [(r["step"], r["eval"]) for r in evals]
    metric = next((m for m in ("f1", "best_f1", "exact_match") if points and m in points[-1][1]), None)
    fig, loss_axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    loss_axis.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    loss_axis.grid(alpha=0.3)
    if metric:
        eval_axis = loss_axis.twinx()
        steps, values = zip(*sorted((s, r[metric]) for s, r in points if metric in r))
        eval_axis.plot(steps, values, "o-", color="tab:orange", label=f"eval {metric}")
        eval_axis.set_ylabel(f"eval {metric}", color="tab:orange")
    loss_axis.set_title(f"jaxqa: {out_dir.name}")
    fig.tight_layout()
    path = out_dir / "training_curves.png"
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path

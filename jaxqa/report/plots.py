"""`training_curves.png`: the story of a run in one picture.

Three panels over the same step axis: the training loss as logged (each point is the mean over one
`--logging_steps` window, drawn as a step line so no single point reads as a trend), every
evaluation's F1 and EM (the before-training evaluation at step 0, evaluations during training, the
final one), and the learning rate. The axes are fixed to what the numbers mean, not to the data's
range: loss from 0, EM/F1 from 0 to 100, so one noisy point is not blown up across the panel.
"""

from __future__ import annotations

import logging
from pathlib import Path

from jaxqa import atomic
from jaxqa.training.run_log import kept_note, read_json, read_records

log = logging.getLogger("jaxqa")

FILE_NAME = "training_curves.png"
# The headline figures, in order of preference, as each metric names them.
F1_KEYS, EM_KEYS = ("f1",), ("exact_match", "exact")


def curve_data(out_dir: str | Path) -> dict:
    """What the curves show, from a run's files: {"train": [{step, loss, learning_rate}], "evals":
    [{step, f1, em, label}] (sorted by step, before-training first; the final evaluation labelled
    "final"), "logging_steps", "kept": `run_log.kept_note` of the final evaluation, when
    --load_best_model_at_end kept an earlier step}. The page draws the same data (`jaxqa.report.charts`)."""
    out_dir = Path(out_dir)
    records = read_records(out_dir / "metrics.jsonl")
    train = [{"step": r["step"], "loss": r["loss"], "learning_rate": r.get("learning_rate")}
             for r in records if "loss" in r and "step" in r]
    by_step: dict[int, dict] = {}
    for r in records:
        if isinstance(r.get("eval"), dict) and "step" in r:
            by_step[int(r["step"])] = {**r["eval"], "_label": "final" if r.get("kept") else "eval"}
    final = read_json(out_dir / "eval_results.json")
    if final and "step" in final:
        by_step.setdefault(int(final["step"]), {**final, "_label": "final"})
        by_step[int(final["step"])]["_label"] = "final"
    before = read_json(out_dir / "before_training_results.json")
    evals = []
    if before:
        evals.append(_eval_point(before, int(before.get("step", 0)), "before training"))
    for step in sorted(by_step):
        evals.append(_eval_point(by_step[step], step, by_step[step]["_label"]))
    config = read_json(out_dir / "run_config.json") or {}
    return {"train": train, "evals": [e for e in evals if e["f1"] is not None or e["em"] is not None],
            "logging_steps": config.get("logging_steps"), "kept": kept_note(final or {})}


def curves_title(out_dir: Path, data: dict) -> str:
    """"jaxqa: NAME  F1 before -> final": the final evaluation's F1 (with --load_best_model_at_end, of an
    earlier step than the last evaluated), and then which step that is of how many trained."""
    evals = data["evals"]
    last = next((e for e in evals if e["label"] == "final"), evals[-1] if evals else None)
    title = f"jaxqa: {Path(out_dir).resolve().name}"
    if last and last["f1"] is not None:
        first = evals[0]
        title += (f"  F1 {first['f1']:.1f} -> {last['f1']:.1f}" if first is not last and first["f1"] is not None
                  else f"  F1 {last['f1']:.1f}")
    return title + (f"; {data['kept']}" if data["kept"] else "")


def _eval_point(result: dict, step: int, label: str) -> dict:
    f1 = next((result[k] for k in F1_KEYS if isinstance(result.get(k), (int, float))), None)
    em = next((result[k] for k in EM_KEYS if isinstance(result.get(k), (int, float))), None)
    return {"step": step, "f1": f1, "em": em, "label": label}


def plot_training_curves(out_dir: str | Path) -> Path | None:
    """Draw `OUT_DIR/training_curves.png` (written atomically) and return its path; None when the
    run logged no training step and no evaluation, or matplotlib is missing."""
    out_dir = Path(out_dir)
    data = curve_data(out_dir)
    train, evals = data["train"], data["evals"]
    if not train and not evals:
        return None
    plt = _pyplot()
    if plt is None:
        return None
    has_lr = any(r["learning_rate"] is not None for r in train)
    heights = [3, 3] + ([1.4] if has_lr else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(8, 1.9 * sum(heights) / 2 + 1.4), dpi=110, sharex=True,
                             gridspec_kw={"height_ratios": heights})
    _draw_loss(axes[0], train, data["logging_steps"])
    _draw_evals(axes[1], evals, data["kept"])
    if has_lr:
        _draw_learning_rate(axes[2], train)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
    axes[-1].set_xlabel("step")
    fig.suptitle(curves_title(out_dir, data), fontsize=10)
    fig.tight_layout()
    path = out_dir / FILE_NAME
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display); None, said once, when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no %s (pip install matplotlib)", FILE_NAME)
        return None
    return plt


def _draw_loss(ax, train: list[dict], window: int | None) -> None:
    """The logged training loss as a step line, its last value written beside it; loss from 0."""
    if train:
        steps = [r["step"] for r in train]
        losses = [r["loss"] for r in train]
        # Each logged loss is the mean of the `window` steps that end at its step: a step line
        # shows it as what it is, a level held over that window.
        first = max(0, steps[0] - (window or steps[0]))  # where the first window starts
        ax.step([first] + steps, losses[:1] + losses, where="pre", color="tab:blue", lw=1.6,
                label=f"train loss (mean over each {window}-step window)" if window else "train loss")
        ax.plot(steps, losses, "o", color="tab:blue", ms=2.5)
        ax.set_ylim(0, max(losses) * 1.08)
        ax.annotate(f"{losses[-1]:.3f}", (steps[-1], losses[-1]), textcoords="offset points", xytext=(4, 6),
                    fontsize=8, color="tab:blue")
    else:
        ax.text(0.5, 0.5, "no training steps logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8, frameon=False)


def _draw_evals(ax, evals: list[dict], kept: str | None) -> None:
    """Every evaluation's F1 and EM, each value written beside its point; 0 to 100."""
    for key, name, color, marker in (("f1", "F1", "tab:orange", "o"), ("em", "EM", "tab:green", "s")):
        points = [(e["step"], e[key], e["label"]) for e in evals if e[key] is not None]
        if not points:
            continue
        xs, ys, labels = zip(*points)
        # dotted between evaluations: nothing was measured there
        ax.plot(xs, ys, marker + ":", color=color, ms=5, lw=1.4, label=f"eval {name}")
        notes = {"before training": " (before training)", "final": " (kept)" if kept else ""}
        for x, y, label in points:
            ax.annotate(f"{y:.1f}" + (notes.get(label, "") if key == "f1" else ""),
                        (x, y), textcoords="offset points", xytext=(5, 7 if key == "f1" else -12), fontsize=8,
                        color=color)
    ax.set_ylim(0, 100)
    ax.set_ylabel("eval (%)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)


def _draw_learning_rate(ax, train: list[dict]) -> None:
    ax.plot([r["step"] for r in train], [r["learning_rate"] for r in train], color="tab:purple", lw=1.2)
    ax.set_ylim(0, max(r["learning_rate"] or 0 for r in train) * 1.1 or 1)
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))

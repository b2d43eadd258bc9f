"""The page's charts, drawn as inline SVG (no plotting library, nothing fetched): the training
curves of `plots.curve_data` (loss per logging window, learning rate, evaluations over steps) and
any line chart the page asks for (`svg_chart`: the SQuAD v2.0 threshold curve)."""

from __future__ import annotations

import dataclasses
import html
import math

from jaxqa.report import plots
from jaxqa.report.runs import Run

COLORS = ["#1f6fd1", "#e67e00", "#2e9e4f", "#8e44ad", "#c0392b"]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo if hi > lo else 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    start = math.ceil(lo / step - 1e-9) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) < 1e-2 or abs(value) >= 1e5:
        return f"{value:.1e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:.4g}"


def _beside(x: float, text: str, width: float, size: float = 10.0, gap: float = 3.0) -> tuple[float, str]:
    """Where a label of `text` (`size` px font) beside position x goes: (x, text-anchor). Right of x
    where it fits in the chart's `width`, else left of it, else pushed inside: an SVG clips at its
    edges, so a label of a mark at the edge would show its first letters only. The width is an upper
    estimate: 0.62 em a character (headless Chromium's sans-serif: 0.52 em for a mark's label, 0.57
    for a bold title)."""
    w = 0.62 * size * len(text)
    if x + gap + w <= width - 1:
        return x + gap, "start"
    if x - gap - w >= 1:
        return x - gap, "end"
    return max(1.0, min(x - w / 2, width - 1 - w)), "start"



@dataclasses.dataclass(frozen=True)
class _Frame:
    """A chart's box and its data ranges: where a data point is drawn, in pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int
    left: int = 54
    right: int = 14
    top: int = 40
    bottom: int = 38

    @property
    def pw(self) -> int:
        return self.width - self.left - self.right

    @property
    def ph(self) -> int:
        return self.height - self.top - self.bottom

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.pw

    def py(self, y: float) -> float:
        return self.top + self.ph - (min(max(y, self.y0), self.y1) - self.y0) / (self.y1 - self.y0) * self.ph


def svg_chart(series: list[dict], *, title: str, y_label: str, x_label: str = "step",
              y_range: tuple[float, float] | None = None, marks: list[dict] = (), width: int = 380,
              height: int = 230) -> str:
    """A line chart. `series`: [{name, points [(x, y)], color, dash, step_from (x where the first
    step-level starts, for windowed means), markers}]; `marks`: vertical lines [{x, label, color}].
    Points that are not finite are not drawn (a coordinate "nan" would break the whole line)."""
    series = [{**s, "points": [p for p in s["points"] if math.isfinite(p[0]) and math.isfinite(p[1])]} for s in series]
    xs = [x for s in series for x, _ in s["points"]] + [m["x"] for m in marks]
    ys = [y for s in series for _, y in s["points"]]
    if not xs or not ys:
        return ""
    x0, x1 = min(min(xs), 0) if x_label == "step" else min(xs), max(xs)
    y0, y1 = y_range or (min(0.0, min(ys)), max(ys) * 1.08 if max(ys) > 0 else 1.0)
    frame = _Frame(x0, x1 if x1 > x0 else x0 + 1, y0, y1, width, height)
    esc = html.escape
    title_x = max(4.0, min(frame.left, width - 4 - 0.62 * 13 * len(title)))  # a long title starts further left
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{esc(title)}"><text x="{title_x:.1f}" y="16" class="ct">{esc(title)}</text>']
    out += _axes(frame, x_label, y_label) + _marks(frame, marks) + _lines(frame, series)
    out.append("</svg>")
    return "".join(out)


def _axes(f: _Frame, x_label: str, y_label: str) -> list[str]:
    """Grid lines and ticks of both axes, the axes and their labels."""
    left, top, pw, ph, esc = f.left, f.top, f.pw, f.ph, html.escape
    out = []
    for t in _ticks(f.y0, f.y1):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{f.py(t):.1f}" y2="{f.py(t):.1f}" class="grid"/>'
                   f'<text x="{left - 5}" y="{f.py(t) + 3.5:.1f}" class="tk" text-anchor="end">{_num(t)}</text>')
    for t in _ticks(f.x0, f.x1):
        out.append(f'<line x1="{f.px(t):.1f}" x2="{f.px(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
                   f'<text x="{f.px(t):.1f}" y="{top + ph + 15}" class="tk" text-anchor="middle">{_num(t)}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
               f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>'
               f'<text x="{left + pw / 2}" y="{f.height - 4}" class="al" text-anchor="middle">{esc(x_label)}</text>'
               f'<text transform="translate(12 {top + ph / 2}) rotate(-90)" class="al" text-anchor="middle">'
               f'{esc(y_label)}</text>')
    return out


def _marks(f: _Frame, marks: list[dict]) -> list[str]:
    """Vertical dashed lines at marked x values, each with its label (a second `row` below the first)."""
    out = []
    for m in marks:
        color = m.get("color", "#555")
        at, anchor = _beside(f.px(m["x"]), m["label"], f.width)
        out.append(f'<line x1="{f.px(m["x"]):.1f}" x2="{f.px(m["x"]):.1f}" y1="{f.top}" y2="{f.top + f.ph}" '
                   f'stroke="{color}" stroke-dasharray="4 3" stroke-width="1.3"/><text x="{at:.1f}" '
                   f'text-anchor="{anchor}" y="{f.top + 10 + 11 * m.get("row", 0)}" class="tk" fill="{color}">'
                   f'{html.escape(m["label"])}</text>')
    return out


def _path(f: _Frame, pts: list[tuple[float, float]], step_from: float | None) -> str:
    """An SVG path through `pts`; with `step_from`, a level held from the previous x (from `step_from` for the first)."""
    if step_from is None or not pts:
        return "".join(f'{"M" if k == 0 else "L"}{f.px(x):.1f},{f.py(y):.1f}' for k, (x, y) in enumerate(pts))
    d, prev = [], step_from
    for k, (x, y) in enumerate(pts):
        d.append(f'{"M" if k == 0 else "L"}{f.px(max(prev, f.x0)):.1f},{f.py(y):.1f}H{f.px(x):.1f}')
        prev = x
    return "".join(d)


def _lines(f: _Frame, series: list[dict]) -> list[str]:
    """Each series: its line, its points (a tooltip each), its value labels and its legend entry."""
    out, legend_x, esc = [], f.left, html.escape
    for s in series:
        pts = sorted(s["points"])
        dash = s.get("dash")
        color, dash = s.get("color", COLORS[0]), f' stroke-dasharray="{dash if isinstance(dash, str) else "5 3"}"' if dash else ""
        out.append(f'<path d="{_path(f, pts, s.get("step_from"))}" fill="none" stroke="{color}" stroke-width="1.7"{dash}/>')
        if s.get("markers", True):
            for x, y in pts:
                out.append(f'<circle cx="{f.px(x):.1f}" cy="{f.py(y):.1f}" r="2.6" fill="{color}"><title>'
                           f'{esc(s["name"])}: step {_num(x)}: {_num(y)}</title></circle>')
        for x, y, text in s.get("labels", []):
            at, anchor = _beside(f.px(x), text, f.width, gap=4)
            out.append(f'<text x="{at:.1f}" y="{f.py(y) - 5:.1f}" class="tk" text-anchor="{anchor}" '
                       f'fill="{color}">{esc(text)}</text>')
        out.append(f'<rect x="{legend_x}" y="24" width="10" height="3" fill="{color}"/>'
                   f'<text x="{legend_x + 13}" y="28" class="lg">{esc(s["name"])}</text>')
        legend_x += 18 + 6.2 * len(s["name"])
    return out


def curve_charts(runs: list[Run]) -> str:
    """Loss (mean per logging window), learning rate, eval metrics over steps; one series per run
    directory (before vs after training of one run share them)."""
    seen, curves = set(), []
    for k, run in enumerate(runs):
        if run.prefix is None or run.directory.resolve() in seen:
            continue
        seen.add(run.directory.resolve())
        data = plots.curve_data(run.directory)
        if data["train"] or data["evals"]:
            curves.append((k, run, data))
    if not curves:
        return '<p class="note">No metrics.jsonl or results files: no training curves.</p>'
    tag = len(curves) > 1
    loss, lr, evals, windows, notes = [], [], [], set(), []
    for k, _run, data in curves:
        name = "AB"[k] + ": " if tag else ""
        train = data["train"]
        window = data["logging_steps"] or 1
        finite = [r for r in train if math.isfinite(r["loss"])]
        if len(finite) < len(train):
            first = next(r["step"] for r in train if not math.isfinite(r["loss"]))
            notes.append(f"{name}the training loss diverged (not finite) at {len(train) - len(finite)} of "
                         f"{len(train)} logged steps, the first at step {first}: those are not drawn")
        if finite:
            windows.add(window)
            loss.append({"name": f"{name}loss", "color": COLORS[k],
                         "points": [(r["step"], r["loss"]) for r in finite],
                         "step_from": max(0, finite[0]["step"] - window), "markers": len(finite) <= 60})
            if any(r["learning_rate"] is not None for r in train):
                lr.append({"name": f"{name}learning rate", "color": COLORS[k], "markers": False,
                           "points": [(r["step"], r["learning_rate"]) for r in train if r["learning_rate"] is not None]})
        for key, label, dash in (("f1", "F1", "2 3"), ("em", "EM", "6 3")):  # broken lines: measured at the dots only
            pts = [(e["step"], e[key]) for e in data["evals"] if e[key] is not None]
            if pts:
                labels = [(x, y, f"{y:.1f}") for x, y in (pts[-1:] if tag else pts)]
                evals.append({"name": f"{name}{label}", "color": COLORS[k] if tag else COLORS[1 if key == "f1" else 2],
                              "dash": dash, "points": pts, "labels": labels if key == "f1" else []})
    charts = []
    if loss:
        mean = f" (mean of each {windows.pop()}-step window)" if len(windows) == 1 else " (mean per logging window)"
        charts.append(svg_chart(loss, title="Training loss" + mean, y_label="loss"))
    if lr:
        charts.append(svg_chart(lr, title="Learning rate", y_label="learning rate"))
    if evals:
        charts.append(svg_chart(evals, title="Evaluation (step 0: before training)", y_label="%", y_range=(0, 100)))
    warnings = "".join(f'<p class="warn">{html.escape(n[0].upper() + n[1:])}.</p>' for n in notes)
    return warnings + '<div class="charts">' + "".join(charts) + "</div>"

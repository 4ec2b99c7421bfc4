"""Pareto plots of a study: proxy accuracy vs measured throughput.

One :class:`ParetoView` (built from the study) drawn two ways: a PNG with matplotlib and an
interactive, self-contained HTML with plotly (works offline; hover shows each trial's config).
Both show the feasible and under-budget trials, the budget line, the Pareto front and the
M0-M5 reference points, with the device and measurement protocol in the title. After
``search --train-top K --baseline M0`` the trained models and the baseline are drawn too, on a
second y axis (trained top-1, mean ± std over seeds, at the re-measured median throughput).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effvit_nas.proxy.registry import is_accuracy
from effvit_nas.errors import UserError
from effvit_nas.trials.pareto import pareto_trials
from effvit_nas.results.references import ReferencePoint
from effvit_nas.results.studies import StudyInfo
from effvit_nas.trials.records import TrialRecord
from effvit_nas.proxy.registry import SUPERNET

if TYPE_CHECKING:
    import optuna
    from matplotlib.transforms import Bbox


@dataclass(frozen=True)
class Point:
    throughput: float  # img/s
    accuracy: float | None  # proxy value, None when the proxy did not run (under budget)
    label: str  # trial number and hash
    hover: str = ""  # config summary for the HTML


@dataclass(frozen=True)
class TrainedPoint:
    """A fully trained model of the study's comparison (``comparison`` attribute)."""

    name: str  # "trial 12" or the baseline preset's name
    throughput: float  # re-measured median, img/s
    top1: float  # mean over seeds, in [0, 1]
    top1_std: float
    baseline: bool


@dataclass
class ParetoView:
    title: str
    subtitle: str
    y_label: str
    budget: float
    percent: bool  # proxy values are accuracies in [0, 1], shown as %
    front: list[Point] = field(default_factory=list)
    feasible: list[Point] = field(default_factory=list)  # feasible, not on the front
    under_budget: list[Point] = field(default_factory=list)  # measured, proxy skipped
    skipped: int = 0  # predicted infeasible, never measured: not drawn
    references: list[ReferencePoint] = field(default_factory=list)
    trained: list[TrainedPoint] = field(default_factory=list)

    def y(self, value: float) -> float:
        return 100 * value if self.percent else value


def _point(r: TrialRecord) -> Point:
    if r.throughput is None:
        raise ValueError(f"trial {r.number} has no measured throughput to plot")
    c = r.config or {}
    hover = f"widths {c.get('widths')}, depths {c.get('depths')}, heads {c.get('heads')}; {(r.params or 0) / 1e6:.2f} M params, {(r.macs or 0) / 1e6:.0f} M MACs"
    return Point(float(r.throughput), r.accuracy, f"#{r.number} {r.config_hash or ''}", hover)


def _shown_proxy(proxy: str) -> str:
    """The proxy as a title names it: a supernet by its folder's name (the absolute path
    would push the title off the figure)."""

    return SUPERNET + Path(proxy.removeprefix(SUPERNET)).name if proxy.startswith(SUPERNET) else proxy


def _y_label(proxy: str) -> str:
    if proxy.startswith("supernet:"):
        return "proxy top-1 (%, inherited supernet weights)"
    return "proxy top-1 (%, short training)" if is_accuracy(proxy) else f"{proxy} score (higher is better)"


def pareto_view(study: optuna.Study, info: StudyInfo, device: dict[str, Any] | None, references: list[ReferencePoint]) -> ParetoView:
    """Everything the plots draw, from the study's complete trials."""
    import optuna  # lazy: Optuna costs a second to import

    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if not complete:
        raise UserError(f"study {study.study_name!r} has no complete trials to plot")
    front_numbers = {t.number for t in pareto_trials(study)}
    seen: set[str] = set()
    view = ParetoView(
        title=f"{study.study_name}: {_shown_proxy(info.proxy)} proxy vs throughput, budget {info.budget:,.0f} img/s",
        subtitle=f"{(device or {}).get('name', info.device)} [{info.device}] · {info.protocol()}",
        y_label=_y_label(info.proxy),
        budget=info.budget,
        percent=is_accuracy(info.proxy),
        references=[r for r in references if r.throughput is not None],
    )
    for r in sorted((TrialRecord.of(t) for t in complete), key=lambda r: r.number):
        if r.key() in seen:  # a re-proposed architecture: drawn once
            continue
        seen.add(r.key())
        if not r.measured or r.throughput is None:
            view.skipped += 1
        elif r.number in front_numbers:
            view.front.append(_point(r))
        elif r.feasible:
            view.feasible.append(_point(r))
        else:
            view.under_budget.append(_point(r))
    view.front.sort(key=lambda p: p.throughput)
    view.trained = trained_points(study.user_attrs.get("comparison"))
    return view


def trained_points(comparison: dict[str, Any] | None) -> list[TrainedPoint]:
    """The comparison's rows as points (the baseline is its last row); none without one."""
    rows = (comparison or {}).get("rows", [])
    return [
        TrainedPoint(r["name"], float(r["throughput_median"]), float(r["top1_mean"]), float(r["top1_std"]), i == len(rows) - 1)
        for i, r in enumerate(rows)
    ]


def _under_budget_y(view: ParetoView) -> float:
    """Where trials without a proxy value are drawn: just below the lowest value shown."""
    ys = [view.y(p.accuracy) for p in view.front + view.feasible if p.accuracy is not None]
    ys += [view.y(r.accuracy) for r in view.references if r.accuracy is not None]
    if not ys:
        return 0.0
    lo, hi = min(ys), max(ys)
    return lo - 0.08 * max(hi - lo, abs(lo) * 0.05, 1e-9)


def separate_labels(fig: Any, labels: list, step_pt: float = 9.0, tries: int = 12) -> int:
    """Move point labels apart until no two overlap: each label, in order, is shifted up and
    down by growing steps (points) from where it was put until it clears the ones placed
    before it. Returns the number of labels still overlapping (0 unless ``tries`` ran out)."""
    renderer = fig.canvas.get_renderer()
    placed: list[Bbox] = []
    left = 0
    for label in labels:
        x0, y0 = label.xyann
        for k in range(tries + 1):
            label.xyann = (x0, y0 + step_pt * ((k + 1) // 2) * (1 if k % 2 else -1))
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        else:
            left += 1
        placed.append(label.get_window_extent(renderer))
    return left


def save_png(view: ParetoView, path: Path) -> None:
    # A figure on its own Agg canvas: no pyplot, so no global backend is chosen for the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib only for plots
    from matplotlib.figure import Figure  # lazy: matplotlib only for plots

    fig = Figure(figsize=(9, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    floor = _under_budget_y(view)
    labels: list = []
    if view.under_budget:
        ax.scatter(
            [p.throughput for p in view.under_budget],
            [floor] * len(view.under_budget),
            marker="x",
            c="0.6",
            label=f"under budget, proxy not run ({len(view.under_budget)})",
        )
    if view.feasible:
        ax.scatter(
            [p.throughput for p in view.feasible],
            [view.y(p.accuracy) if p.accuracy is not None else floor for p in view.feasible],
            c="tab:blue",
            alpha=0.7,
            label=f"feasible ({len(view.feasible)})",
        )
    if view.front:
        xs = [p.throughput for p in view.front]
        ys = [view.y(p.accuracy) if p.accuracy is not None else floor for p in view.front]
        ax.plot(xs, ys, "-o", c="tab:red", lw=1.5, ms=7, drawstyle="steps-pre", label=f"Pareto front ({len(view.front)})")
        for p, y in zip(view.front, ys, strict=True):
            labels.append(
                ax.annotate(p.label.split()[0], (p.throughput, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color="tab:red")
            )
    refs = [r for r in view.references if r.throughput is not None]  # all of them: see pareto_view
    if refs:
        ry = [view.y(r.accuracy) if r.accuracy is not None else floor for r in refs]
        ax.scatter(
            [r.throughput for r in refs if r.throughput is not None],
            ry,
            marker="*",
            s=160,
            c="black",
            label="EfficientViT M0-M5 (same device, protocol, proxy)",
        )
        for r, y in zip(refs, ry, strict=True):
            labels.append(ax.annotate(r.name, (r.throughput, y), textcoords="offset points", xytext=(5, -10), fontsize=9))
    ax.axvline(view.budget, ls="--", c="tab:green", label=f"budget {view.budget:,.0f} img/s")
    ax.set_xscale("log")
    labels += _draw_trained(ax, view.trained)
    from matplotlib.ticker import FuncFormatter  # lazy: matplotlib only for plots

    plain = FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if str(round(v))[0] in "2358" else ""))
    ax.set_xlabel("throughput (images/s, log scale)")
    ax.set_ylabel(view.y_label)
    extra = f"; {view.skipped} predicted infeasible, not measured (not drawn)" if view.skipped else ""
    ax.set_title(f"{view.title}\n{view.subtitle}{extra}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    for other in ax.figure.axes[1:]:  # the trained axis' entries in the same legend
        more = other.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    ax.legend(handles, names, fontsize=8, loc="best")
    fig.tight_layout()
    separate_labels(fig, labels)
    try:
        fig.savefig(path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def _draw_trained(ax: Any, trained: list[TrainedPoint]) -> list:
    """Trained top-1 (mean ± std) on a second y axis sharing the throughput axis; its labels."""
    if not trained:
        return []
    ax2 = ax.twinx()
    labels = []
    for baseline, colour, what in ((False, "tab:purple", "found, trained"), (True, "black", "baseline, trained")):
        pts = [p for p in trained if p.baseline == baseline]
        if not pts:
            continue
        ax2.errorbar(
            [p.throughput for p in pts], [100 * p.top1 for p in pts], yerr=[100 * p.top1_std for p in pts],
            fmt="D", c=colour, mfc="none", ms=8, capsize=3, label=f"{what}: top-1 mean ± std over seeds (right axis)",
        )  # fmt: skip
        for p in pts:
            labels.append(ax2.annotate(p.name.replace("trial ", "#"), (p.throughput, 100 * p.top1), textcoords="offset points",
                                       xytext=(6, 2), fontsize=8, color=colour))  # fmt: skip
    ax2.set_ylabel("trained top-1 (%, held-out split)")
    return labels


def save_html(view: ParetoView, path: Path) -> None:
    import plotly.graph_objects as go  # lazy: plotly only for HTML plots

    fig = go.Figure()
    floor = _under_budget_y(view)

    def trace(points: list[Point], name: str, **kw: Any) -> None:
        fig.add_trace(
            go.Scatter(
                x=[p.throughput for p in points],
                y=[view.y(p.accuracy) if p.accuracy is not None else floor for p in points],
                text=[f"{p.label}<br>{p.hover}" for p in points],
                hovertemplate="%{text}<br>%{x:,.0f} img/s, %{y:.4g}<extra></extra>",
                name=name,
                **kw,
            )
        )

    trace(
        view.under_budget, f"under budget, proxy not run ({len(view.under_budget)})", mode="markers", marker=dict(symbol="x", color="gray")
    )
    trace(view.feasible, f"feasible ({len(view.feasible)})", mode="markers", marker=dict(color="royalblue"))
    trace(
        view.front, f"Pareto front ({len(view.front)})", mode="lines+markers", line=dict(shape="vh", color="crimson"), marker=dict(size=9)
    )
    if view.references:
        fig.add_trace(
            go.Scatter(
                x=[r.throughput for r in view.references],
                y=[view.y(r.accuracy) if r.accuracy is not None else floor for r in view.references],
                text=[r.name for r in view.references],
                mode="markers+text",
                textposition="bottom right",
                marker=dict(symbol="star", size=14, color="black"),
                name="EfficientViT M0-M5",
                hovertemplate="%{text}<br>%{x:,.0f} img/s, %{y:.4g}<extra></extra>",
            )
        )
    for baseline, colour in ((False, "purple"), (True, "black")):
        pts = [p for p in view.trained if p.baseline == baseline]
        if pts:
            fig.add_trace(
                go.Scatter(
                    x=[p.throughput for p in pts], y=[100 * p.top1 for p in pts], text=[p.name for p in pts],
                    error_y=dict(type="data", array=[100 * p.top1_std for p in pts]), mode="markers+text", textposition="top right",
                    marker=dict(symbol="diamond-open", size=12, color=colour), yaxis="y2",
                    name=("baseline" if baseline else "found") + ", trained top-1 (right axis)",
                    hovertemplate="%{text}<br>%{x:,.0f} img/s, trained top-1 %{y:.1f} %<extra></extra>",
                )
            )  # fmt: skip
    fig.add_vline(x=view.budget, line_dash="dash", line_color="green", annotation_text=f"budget {view.budget:,.0f} img/s")
    extra = f"; {view.skipped} predicted infeasible, not measured" if view.skipped else ""
    fig.update_layout(
        title=dict(text=f"{view.title}<br><sup>{view.subtitle}{extra}</sup>"),
        xaxis=dict(title="throughput (images/s, log scale)", type="log"),
        yaxis=dict(title=view.y_label),
        **({"yaxis2": dict(title="trained top-1 (%, held-out split)", overlaying="y", side="right")} if view.trained else {}),
        template="plotly_white",
        width=1000,
        height=650,
    )
    try:
        fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def view_json(view: ParetoView) -> dict[str, Any]:
    """The plotted numbers (for --json and tests)."""

    def pts(ps: list[Point]) -> list[dict[str, Any]]:
        return [{"label": p.label, "throughput": p.throughput, "accuracy": p.accuracy} for p in ps]

    return {
        "title": view.title,
        "subtitle": view.subtitle,
        "budget": view.budget,
        "front": pts(view.front),
        "feasible": pts(view.feasible),
        "under_budget": pts(view.under_budget),
        "skipped": view.skipped,
        "references": [{"name": r.name, "throughput": r.throughput, "accuracy": r.accuracy} for r in view.references],
        "trained": [asdict(p) for p in view.trained],
    }

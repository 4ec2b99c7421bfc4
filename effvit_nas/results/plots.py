"""Pareto plots of a study: proxy accuracy vs each target's measured figure, one panel per target
(throughput in images/s, a latency target's p50 in ms at batch 1).

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
from effvit_nas.trials.records import StudyTarget, TrialRecord
from effvit_nas.proxy.registry import SUPERNET

if TYPE_CHECKING:
    import optuna
    from matplotlib.transforms import Bbox


@dataclass(frozen=True)
class Point:
    throughput: float  # img/s (-equivalent) on the first target
    accuracy: float | None  # proxy value, None when the proxy did not run (under budget)
    label: str  # trial number and hash
    hover: str = ""  # config summary for the HTML
    figures: tuple[float | None, ...] = ()  # images/s-equivalent on every target, in the study's order


@dataclass(frozen=True)
class Panel:
    """One target's panel: accuracy against that target's figure in its unit."""

    target: StudyTarget
    index: int  # the target's place in the study
    subtitle: str  # device and protocol

    def x(self, p: Point) -> float | None:
        """``p``'s figure on this target in its unit (None when it has none)."""
        f = p.figures[self.index] if self.index < len(p.figures) else None
        return self.target.shown(f) if f else None

    def at(self, throughput: float) -> float:
        """An images/s(-equivalent) figure of the first target's protocol (M0-M5, trained models) in this panel's unit."""
        return self.target.shown(throughput)

    @property
    def budget(self) -> float:
        return self.target.shown(self.target.budget)

    @property
    def x_label(self) -> str:
        return "p50 latency at batch 1 (ms, log scale)" if self.target.latency else "throughput (images/s, log scale)"

    def title(self) -> str:
        return f"{self.target.name}: budget {self.target.budget_text()}"

    def fmt(self, v: float) -> str:
        return f"{v:.3g}" if self.target.latency else f"{v:,.0f}"


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
    panels: list[Panel] = field(default_factory=list)  # one per target

    def y(self, value: float) -> float:
        return 100 * value if self.percent else value


def _point(r: TrialRecord) -> Point:
    if r.throughput is None:
        raise ValueError(f"trial {r.number} has no measured throughput to plot")
    c = r.config or {}
    hover = f"widths {c.get('widths')}, depths {c.get('depths')}, heads {c.get('heads')}; {(r.params or 0) / 1e6:.2f} M params, {(r.macs or 0) / 1e6:.0f} M MACs"
    figures = tuple(f.figure if f.measured else None for f in r.targets)
    return Point(float(r.throughput), r.accuracy, f"#{r.number} {r.config_hash or ''}", hover, figures)


def _shown_proxy(proxy: str) -> str:
    """The proxy as a title names it: a supernet by its folder's name (the absolute path
    would push the title off the figure)."""

    return SUPERNET + Path(proxy.removeprefix(SUPERNET)).name if proxy.startswith(SUPERNET) else proxy


def _y_label(proxy: str) -> str:
    if proxy.startswith("supernet:"):
        return "proxy top-1 (%, inherited supernet weights)"
    return "proxy top-1 (%, short training)" if is_accuracy(proxy) else f"{proxy} score (higher is better)"


def pareto_view(study: optuna.Study, info: StudyInfo, devices: list[dict[str, Any] | None], references: list[ReferencePoint]) -> ParetoView:
    """Everything the plots draw, from the study's complete trials; ``devices``: the
    fingerprint of each target's device (None where unknown)."""
    import optuna  # lazy: Optuna costs a second to import

    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if not complete:
        raise UserError(f"study {study.study_name!r} has no complete trials to plot")
    front_numbers = {t.number for t in pareto_trials(study)}
    seen: set[str] = set()
    panels = [Panel(t, i, _subtitle(t, devices[i] if i < len(devices) else None)) for i, t in enumerate(info.targets)]
    vs = f"{len(panels)} targets (Pareto set over all)" if info.several else f"{'p50 latency' if info.target.latency else 'throughput'}"
    view = ParetoView(
        title=f"{study.study_name}: {_shown_proxy(info.proxy)} proxy vs {vs}, budget {info.budget_text().removeprefix('>= ')}",
        subtitle=panels[0].subtitle,
        y_label=_y_label(info.proxy),
        budget=info.budget,
        percent=is_accuracy(info.proxy),
        references=[r for r in references if r.throughput is not None],
        panels=panels,
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


def _subtitle(target: StudyTarget, device: dict[str, Any] | None) -> str:
    return f"{(device or {}).get('name', target.device)} [{target.device}] · {target.protocol()}"


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
    """One panel per target side by side, sharing the proxy axis."""
    # A figure on its own Agg canvas: no pyplot, so no global backend is chosen for the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib only for plots
    from matplotlib.figure import Figure  # lazy: matplotlib only for plots

    n = len(view.panels)
    fig = Figure(figsize=(9 if n == 1 else 7 * n, 6), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    labels: list = []
    for panel, ax in zip(view.panels, axes, strict=True):
        labels += _draw_panel(ax, view, panel)
    extra = f"; {view.skipped} predicted infeasible, not measured (not drawn)" if view.skipped else ""
    if n == 1:
        axes[0].set_title(f"{view.title}\n{view.subtitle}{extra}", fontsize=10)
    else:
        fig.suptitle(f"{view.title}{extra}", fontsize=11)
    axes[0].set_ylabel(view.y_label)
    fig.tight_layout()
    separate_labels(fig, labels)
    try:
        fig.savefig(path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def _xy(view: ParetoView, panel: Panel, points: list[Point], floor: float) -> tuple[list[float], list[float], list[Point]]:
    """The points with a figure on ``panel``'s target: x in its unit, y the proxy (``floor`` without one)."""
    shown = [p for p in points if panel.x(p) is not None]
    return [panel.x(p) or 0.0 for p in shown], [view.y(p.accuracy) if p.accuracy is not None else floor for p in shown], shown


def _draw_panel(ax: Any, view: ParetoView, panel: Panel) -> list:
    """One target's panel; its point labels (moved apart later)."""
    floor = _under_budget_y(view)
    labels: list = []
    xs, ys, _ = _xy(view, panel, view.under_budget, floor)
    if xs:
        ax.scatter(xs, [floor] * len(xs), marker="x", c="0.6", label=f"under budget, proxy not run ({len(xs)})")
    xs, ys, _ = _xy(view, panel, view.feasible, floor)
    if xs:
        ax.scatter(xs, ys, c="tab:blue", alpha=0.7, label=f"feasible ({len(xs)})")
    xs, ys, shown = _xy(view, panel, sorted(view.front, key=lambda p: panel.x(p) or 0.0), floor)
    if xs:
        # several targets: the set is non-dominated over all of them, no staircase in one panel
        # the best proxy reachable at a figure: the next faster point's (throughput), the last faster one's (latency)
        steps = "steps-post" if panel.target.latency else "steps-pre"
        line = dict(ls="-", drawstyle=steps) if len(view.panels) == 1 else dict(ls="none")
        what = "Pareto front" if len(view.panels) == 1 else "Pareto set over all targets"
        ax.plot(xs, ys, marker="o", c="tab:red", lw=1.5, ms=7, label=f"{what} ({len(xs)})", **line)
        for p, x, y in zip(shown, xs, ys, strict=True):
            labels.append(ax.annotate(p.label.split()[0], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color="tab:red"))
    if panel.index == 0:  # M0-M5 and trained models were measured on the first target's protocol
        labels += _draw_references(ax, view, panel, floor)
    ax.axvline(panel.budget, ls="--", c="tab:green", label=f"budget {panel.target.budget_text()}")
    ax.set_xscale("log")
    if panel.index == 0:
        labels += _draw_trained(ax, view.trained, panel)
    _style_axes(ax, view, panel)
    return labels


def _draw_references(ax: Any, view: ParetoView, panel: Panel, floor: float) -> list:
    refs = [r for r in view.references if r.throughput is not None]  # all of them: see pareto_view
    if not refs:
        return []
    xs = [panel.at(r.throughput) for r in refs if r.throughput is not None]
    ys = [view.y(r.accuracy) if r.accuracy is not None else floor for r in refs]
    ax.scatter(xs, ys, marker="*", s=160, c="black", label="EfficientViT M0-M5 (same device, protocol, proxy)")
    return [
        ax.annotate(r.name, (x, y), textcoords="offset points", xytext=(5, -10), fontsize=9) for r, x, y in zip(refs, xs, ys, strict=True)
    ]


def _style_axes(ax: Any, view: ParetoView, panel: Panel) -> None:
    from matplotlib.ticker import FuncFormatter  # lazy: matplotlib only for plots

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: panel.fmt(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: panel.fmt(v) if f"{v:.3g}".lstrip("0.")[:1] in "2358" else ""))
    ax.set_xlabel(panel.x_label)
    if len(view.panels) > 1:
        ax.set_title(f"{panel.title()}\n{panel.subtitle}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    for other in ax.figure.axes:  # a trained axis twinned with this one: its entries in the same legend
        if other is not ax and other.bbox.bounds == ax.bbox.bounds:
            more = other.get_legend_handles_labels()
            handles, names = handles + more[0], names + more[1]
    ax.legend(handles, names, fontsize=8, loc="best")


def _draw_trained(ax: Any, trained: list[TrainedPoint], panel: Panel) -> list:
    """Trained top-1 (mean ± std) on a second y axis sharing the figure axis; its labels."""
    if not trained:
        return []
    ax2 = ax.twinx()
    labels = []
    for baseline, colour, what in ((False, "tab:purple", "found, trained"), (True, "black", "baseline, trained")):
        pts = [p for p in trained if p.baseline == baseline]
        if not pts:
            continue
        ax2.errorbar(
            [panel.at(p.throughput) for p in pts], [100 * p.top1 for p in pts], yerr=[100 * p.top1_std for p in pts],
            fmt="D", c=colour, mfc="none", ms=8, capsize=3, label=f"{what}: top-1 mean ± std over seeds (right axis)",
        )  # fmt: skip
        for p in pts:
            labels.append(ax2.annotate(p.name.replace("trial ", "#"), (panel.at(p.throughput), 100 * p.top1), textcoords="offset points",
                                       xytext=(6, 2), fontsize=8, color=colour))  # fmt: skip
    ax2.set_ylabel("trained top-1 (%, held-out split)")
    return labels


def _hover(panel: Panel) -> str:
    return "%{x:.3g} ms p50" if panel.target.latency else "%{x:,.0f} img/s"


def _html_trials(fig: Any, view: ParetoView, panel: Panel) -> None:
    """``panel``'s trials (legend entries once, from the first panel)."""
    import plotly.graph_objects as go  # lazy: plotly only for HTML plots

    floor = _under_budget_y(view)
    what = "Pareto front" if len(view.panels) == 1 else "Pareto set over all targets"
    shape = "hv" if panel.target.latency else "vh"  # as the PNG's steps
    front_line = dict(shape=shape, color="crimson") if len(view.panels) == 1 else dict(color="crimson", width=0)
    groups: list[tuple[list[Point], str, dict[str, Any]]] = [
        (view.under_budget, "under budget, proxy not run", dict(mode="markers", marker=dict(symbol="x", color="gray"))),
        (view.feasible, "feasible", dict(mode="markers", marker=dict(color="royalblue"))),
        (
            sorted(view.front, key=lambda p: panel.x(p) or 0.0),
            what,
            dict(mode="lines+markers", line=front_line, marker=dict(size=9, color="crimson")),
        ),
    ]
    for points, name, kw in groups:
        xs, ys, shown = _xy(view, panel, points, floor)
        if points is view.under_budget:
            ys = [floor] * len(xs)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, text=[f"{p.label}<br>{p.hover}" for p in shown], name=f"{name} ({len(xs)})", legendgroup=name,
                showlegend=panel.index == 0, hovertemplate=f"%{{text}}<br>{_hover(panel)}, %{{y:.4g}}<extra></extra>", **kw,
            ),
            row=1, col=panel.index + 1,
        )  # fmt: skip


def _html_references(fig: Any, view: ParetoView, panel: Panel) -> None:
    import plotly.graph_objects as go  # lazy: plotly only for HTML plots

    floor = _under_budget_y(view)
    refs = [r for r in view.references if r.throughput is not None]
    if refs:
        fig.add_trace(
            go.Scatter(
                x=[panel.at(r.throughput) for r in refs if r.throughput is not None],
                y=[view.y(r.accuracy) if r.accuracy is not None else floor for r in refs],
                text=[r.name for r in refs], mode="markers+text", textposition="bottom right",
                marker=dict(symbol="star", size=14, color="black"), name="EfficientViT M0-M5",
                hovertemplate=f"%{{text}}<br>{_hover(panel)}, %{{y:.4g}}<extra></extra>",
            ),
            row=1, col=1,
        )  # fmt: skip


def _html_trained(fig: Any, view: ParetoView, panel: Panel) -> dict[str, Any]:
    """The trained models on their own right axis over the first panel; that axis' layout."""
    import plotly.graph_objects as go  # lazy: plotly only for HTML plots

    axis = len(view.panels) + 1  # after the panels' own y axes
    for baseline, colour in ((False, "purple"), (True, "black")):
        pts = [p for p in view.trained if p.baseline == baseline]
        if pts:
            fig.add_trace(
                go.Scatter(
                    x=[panel.at(p.throughput) for p in pts], y=[100 * p.top1 for p in pts], text=[p.name for p in pts],
                    error_y=dict(type="data", array=[100 * p.top1_std for p in pts]), mode="markers+text", textposition="top right",
                    marker=dict(symbol="diamond-open", size=12, color=colour), yaxis=f"y{axis}", xaxis="x",
                    name=("baseline" if baseline else "found") + ", trained top-1 (right axis)",
                    hovertemplate=f"%{{text}}<br>{_hover(panel)}, trained top-1 %{{y:.1f}} %<extra></extra>",
                )
            )  # fmt: skip
    if not view.trained:
        return {}
    return {f"yaxis{axis}": dict(title="trained top-1 (%, held-out split)", overlaying="y", side="right", anchor="x")}


def save_html(view: ParetoView, path: Path) -> None:
    """One panel per target side by side (plotly subplots sharing the proxy axis)."""
    from plotly.subplots import make_subplots  # lazy: plotly only for HTML plots

    n = len(view.panels)
    fig = make_subplots(
        rows=1,
        cols=n,
        shared_yaxes=True,
        subplot_titles=[f"{p.title()}<br><sup>{p.subtitle}</sup>" for p in view.panels] if n > 1 else None,
    )
    for panel in view.panels:
        _html_trials(fig, view, panel)
        fig.add_vline(
            x=panel.budget,
            line_dash="dash",
            line_color="green",
            annotation_text=f"budget {panel.target.budget_text()}",
            row=1,
            col=panel.index + 1,
        )
        fig.update_xaxes(title_text=panel.x_label, type="log", row=1, col=panel.index + 1)
    _html_references(fig, view, view.panels[0])
    trained_axis = _html_trained(fig, view, view.panels[0])
    extra = f"; {view.skipped} predicted infeasible, not measured" if view.skipped else ""
    fig.update_yaxes(title_text=view.y_label, row=1, col=1)
    fig.update_layout(
        title=dict(text=f"{view.title}<br><sup>{view.subtitle if n == 1 else ''}{extra}</sup>"),
        **trained_axis,
        template="plotly_white",
        width=1000 if n == 1 else 700 * n,
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
        "panels": [_panel_json(view, panel) for panel in view.panels],
    }


def _panel_json(view: ParetoView, panel: Panel) -> dict[str, Any]:
    """One target's panel: its budget and points in its unit (``x``: img/s, or p50 ms for latency)."""

    def pts(ps: list[Point]) -> list[dict[str, Any]]:
        return [{"label": p.label, "x": panel.x(p), "accuracy": p.accuracy} for p in ps if panel.x(p) is not None]

    t = panel.target
    return {
        "target": t.spec,
        "metric": t.metric,
        "unit": t.unit,
        "budget": panel.budget,
        "title": panel.title(),
        "subtitle": panel.subtitle,
        "front": sorted(pts(view.front), key=lambda p: p["x"]),
        "feasible": pts(view.feasible),
        "under_budget": pts(view.under_budget),
    }

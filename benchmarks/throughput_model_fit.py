"""How well does the search's throughput model rank candidates after N measurements?
(results/throughput_model_cpu.md)

Reads measurements already stored (no timing here): per store and (device, protocol) group of
at least 30 architectures, every measurement in the order they were taken. For N = 10, 20, 40 it fits
:class:`effvit_nas.measure.throughput_model.FeasibilityModel` on the first N, exactly as a search
refits it, and predicts every later one: Spearman of predicted vs measured throughput, and, for
a budget at the median measured throughput, how many later candidates the screen would skip
(optimistic prediction under the budget) and how many of those skips were wrong (measured at or
above the budget).

results/throughput_model_paired.db holds the same 60 random architectures of efficientvit64
measured twice in one session, by two searches that differ only in --paired (a budget of 0.1xM2
screens nothing out, and the random sampler with one seed draws the same candidates):

    for how in paired alone; do
      uv run effvit-nas search --space efficientvit64 --device cpu --budget 0.1xM2 \\
        $([ $how = paired ] && echo --paired) --proxy params --sampler random --trials 60 --seed 5 \\
        --study $how --storage sqlite:///results/throughput_model_paired.db
    done
    uv run python benchmarks/throughput_model_fit.py --storage sqlite:///results/fidelity_fashion.db \\
        sqlite:///results/searched_fashion.db sqlite:///results/throughput_model_paired.db --sizes 10,20,40

Claim reproduced: the feasibility screen's throughput model (docs/results/search-quality.md).
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from benchmarks._report import write_report
from effvit_nas.arch.config import ArchConfig
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.measure.throughput_model import FeasibilityModel, features
from effvit_nas.model.cost import model_cost

MIN_GROUP = 30  # architectures a (device, protocol) group needs to be evaluated at N = 10 and 20
RUN_GAP_S = 3600.0  # a pause this long between two stored measurements separates two sessions
MIN_JUDGED = 8  # predictions a session needs for its own Spearman


def groups(rows: list) -> list[tuple[str, tuple[str, str], list[tuple[ArchConfig, float, float]]]]:
    """Every (device, protocol) group of a store's ``rows`` with at least MIN_GROUP architectures,
    largest first: its description, key and (config, img/s, stored at epoch s) oldest first. A
    paired search (and `bench --anchor`) stores its candidates under the protocol key
    ``<own>-vs-<scale>`` (before 2026-12-03: ``<own>-vs-<reference config hash>``)."""
    by_key: dict[tuple[str, str], dict[str, tuple[ArchConfig, float, float]]] = {}
    for d, p, m in rows:
        by_key.setdefault((d, p), {}).setdefault(m.config_hash, (m.config, m.throughput, m.finished))
    out = []
    for key, _ in Counter((d, p) for d, p, _ in rows).most_common():
        points = [(ArchConfig.from_dict(cfg), tp, at) for cfg, tp, at in by_key[key].values()]
        if len(points) >= MIN_GROUP:
            how = "paired with a reference, drift cancelled" if "-vs-" in key[1] else "alone"
            out.append((f"device {key[0]}, protocol {key[1]}: {how}", key, points))
    return out


def repeat_noise(rows: list, key: tuple[str, str]) -> tuple[float, int] | None:
    """SD of one measurement's log-throughput, from the configs of ``key``'s group measured
    again under another protocol key of the same device (a paired study re-measures them):
    SD of the log ratios around their median (the protocols differ by a constant), over
    sqrt(2); with how many configs. None when fewer than 8 were measured twice."""
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for d, p, m in rows:
        groups.setdefault((d, p), {})[m.config_hash] = m.throughput
    base = groups[key]
    best = max((g for k, g in groups.items() if k != key and k[0] == key[0]), key=lambda g: len(set(g) & set(base)), default={})
    common = sorted(set(best) & set(base))
    if len(common) < 8:
        return None
    logs = np.log([best[c] / base[c] for c in common])
    return float(np.std(logs - np.median(logs), ddof=1) / np.sqrt(2)), len(common)


def noise_ceiling(measured: list[float], noise: float, draws: int = 2000) -> float:
    """Median Spearman between true and measured throughput for a perfect predictor, when each
    measurement carries log-normal noise of SD ``noise`` (true spread: the measured spread less
    the noise)."""
    logs = np.log(measured)
    true_sd = np.sqrt(max(np.var(logs, ddof=1) - noise**2, 1e-12))
    rng = np.random.default_rng(0)
    truth = (logs - logs.mean()) / np.std(logs, ddof=1) * true_sd
    return float(np.median([spearmanr(truth, truth + rng.normal(0, noise, len(truth))).statistic for _ in range(draws)]))


def evaluate(points: list[tuple[object, float]], n: int, budget: float) -> dict:
    model = FeasibilityModel(budget)
    for x, y in points[:n]:
        model.add(x, y)
    rest = points[n:]
    pred = [model.predict(x) for x, _ in rest]
    skipped = [y for x, y in rest if model.clearly_infeasible(x)]
    return {
        "n": n,
        "predicted": len(rest),
        "spearman": float(spearmanr(pred, [y for _, y in rest]).statistic),
        "skipped": len(skipped),
        "wrong_skips": sum(y >= budget for y in skipped),
        "infeasible": sum(y < budget for _, y in rest),
    }


def section(storage: str, sizes: list[int]) -> tuple[list[str], list[dict]]:
    lines, record = [f"## `{storage}`", ""], []
    rows = MeasurementStore(storage).all()
    for key, raw_key, measured in groups(rows):
        more, data = group_section(storage, rows, key, raw_key, measured, sizes)
        lines += more
        record.append(data)
    return lines, record


def group_section(
    storage: str, store_rows: list, key: str, raw_key: tuple[str, str], measured: list, sizes: list[int]
) -> tuple[list[str], dict]:
    points, stamps = [], []
    for cfg, tp, at in measured:
        cost = model_cost(cfg)
        points.append((features(cfg, cost.params, cost.macs), tp))
        stamps.append(at)
    budget = statistics.median(tp for _, tp in points)
    rows = [evaluate(points, n, budget) for n in sizes if n < len(points) - 2]
    noise = repeat_noise(store_rows, raw_key)
    for r in rows:
        r["ceiling"] = noise_ceiling([tp for _, tp in points[r["n"] :]], noise[0]) if noise else None
    lines = [
        f"{len(points)} distinct architectures ({key}), in the order they were measured. Budget for the skip columns: "
        f"the median measured throughput, {budget:,.0f} img/s.",
        "",
        "| N fitted | predicted | Spearman (predicted vs measured) | noise ceiling | skipped | wrong skips | infeasible among predicted |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['n']} | {r['predicted']} | {r['spearman']:+.3f} | {_ceiling(r)} | {r['skipped']} | {r['wrong_skips']} | {r['infeasible']} |"
            for r in rows
        ),
        "",
        (
            f"Noise ceiling: the Spearman a perfect predictor would reach against these measurements, given the "
            f"measurement noise ({100 * noise[0]:.1f} % SD of one measurement, from {noise[1]} architectures this store "
            "measured twice under two protocols, differences around the median ratio)."
            if noise
            else "Noise ceiling: n/a (fewer than 8 architectures were measured twice in this store)."
        ),
        "",
    ]
    by_run = run_rows(points, stamps, budget, sizes)
    lines += run_table(by_run)
    return lines, {"storage": storage, "key": key, "budget": budget, "noise_sd": noise and noise[0], "rows": rows, "runs": by_run}


def runs(stamps: list[float]) -> list[range]:
    """Index ranges of the measurement sessions in ``stamps`` (oldest first): a new one begins
    after a pause of more than RUN_GAP_S."""
    cuts = [i for i in range(1, len(stamps)) if stamps[i] - stamps[i - 1] > RUN_GAP_S]
    return [range(a, b) for a, b in zip([0, *cuts], [*cuts, len(stamps)], strict=True)]


def run_rows(points: list, stamps: list[float], budget: float, sizes: list[int]) -> list[dict]:
    """Per session: its machine speed against one fit over the whole group (median residual of
    log-throughput), and the model's Spearman when fitted and judged inside the session only."""
    everything = FeasibilityModel(budget)
    for x, y in points:
        everything.add(x, y)
    out = []
    for r in runs(stamps):
        part = [points[i] for i in r]
        offset = float(np.median([np.log(y / everything.predict(x)) for x, y in part]))
        inside = [evaluate(part, n, budget) for n in sizes if n <= len(part) - MIN_JUDGED]
        start = datetime.fromtimestamp(stamps[r.start], UTC).strftime("%Y-%m-%d %H:%M")
        out.append(
            {"start": start, "hours": (stamps[r.stop - 1] - stamps[r.start]) / 3600, "count": len(part), "speed": offset, "inside": inside}
        )
    return out


def run_table(by_run: list[dict]) -> list[str]:
    if len(by_run) < 2:
        return []
    lines = [
        f"The same group split into measurement sessions (a pause of over {RUN_GAP_S / 3600:.0f} h starts a new one). Speed: the session's",
        "median residual of log-throughput under one fit over the whole group, as a percentage (the machine's speed that",
        f"session against the others); within: the model fitted and judged inside the session (at least {MIN_JUDGED} judged).",
        "",
        "| session (UTC) | measurements | hours | speed | Spearman within, by N fitted |",
        "|---|---|---|---|---|",
    ]
    for r in by_run:
        within = ", ".join(f"N={e['n']}: {e['spearman']:+.3f}" for e in r["inside"]) or "too few"
        lines.append(f"| {r['start']} | {r['count']} | {r['hours']:.1f} | {100 * np.expm1(r['speed']):+.0f} % | {within} |")
    return [*lines, ""]


def _ceiling(row: dict) -> str:
    return "n/a" if row["ceiling"] is None else f"{row['ceiling']:+.3f}"


NOTES = "## Variants tried"


def kept_notes(path: Path) -> list[str]:
    """The hand-written record from ``NOTES`` on in an earlier report, so a rerun refreshes the
    numbers without erasing the record of which model designs were tried."""
    text = path.read_text() if path.exists() else ""
    return [*text[text.index(NOTES) :].splitlines(), ""] if NOTES in text else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", nargs="+", default=["sqlite:///results/fidelity_fashion.db"])
    ap.add_argument("--sizes", default="10,20,40")
    ap.add_argument("--out", type=Path, default=Path("results/throughput_model_cpu.md"))
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    lines = [
        "# The throughput model behind the feasibility screen, on stored CPU measurements",
        "",
        "Fit on the first N measurements (as a search refits), predict every later one; a skip needs the optimistic end",
        "of the prediction interval (z = 3 as a Student-t quantile of the fit's degrees of freedom, widened by the",
        "candidate's leverage) under the budget.",
        "",
    ]
    record = []
    for storage in args.storage:
        more, data = section(storage, sizes)
        lines += more
        record += data
    lines += [f"Command: `uv run python benchmarks/throughput_model_fit.py --storage {' '.join(args.storage)} --sizes {args.sizes}`", ""]
    lines += kept_notes(args.out)
    write_report(args.out, "\n".join(lines), record)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

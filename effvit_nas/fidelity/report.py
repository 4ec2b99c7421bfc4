"""The fidelity table: each proxy's agreement with the reference (mean top-1 over the seeds),
with the seed-to-seed agreement of the reference itself as the ceiling. Built from what the
study has stored, so it can be printed while (or after) a run is partly done."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from effvit_nas.fidelity.ranking import Agreement, agreement
from effvit_nas.fidelity.settings import FidelitySettings
from effvit_nas.fidelity.store import FidelityStore
from effvit_nas.proxy.halving import Halving, replay

TOP_K = 5


@dataclass(frozen=True)
class ProxyRow:
    """One proxy: its agreement with the reference (None below 3 complete architectures) and
    its median seconds per candidate."""

    proxy: str
    agreement: Agreement | None
    seconds: float | None
    note: str = ""


@dataclass(frozen=True)
class FidelityReport:
    study: str
    settings: dict[str, Any]
    archs: int  # architectures drawn
    complete: int  # architectures with every reference seed
    rows: list[ProxyRow]  # best Kendall first
    ceiling: Agreement | None  # reference seed vs seed (the first two seeds)
    reference_seconds: float | None
    per_arch: list[dict[str, Any]]
    first_seed: int = 0  # architectures with the first seed's reference
    first_seed_rows: list[ProxyRow] = field(default_factory=list)  # against that seed alone, while incomplete

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reference(settings: FidelitySettings, store: FidelityStore, h: str) -> list[float] | None:
    values = []
    for s in range(settings.seeds):
        result = store.get("reference", h, str(settings.seed + s))
        if result is None:
            return None
        values.append(result.value)
    return values


def _median_seconds(results: list) -> float | None:
    return statistics.median(r.seconds for r in results) if results else None


def _rows(
    settings: FidelitySettings,
    store: FidelityStore,
    archs: list[dict[str, Any]],
    done: list[dict[str, Any]],
    ref: list[float],
    resamples: int,
) -> list[ProxyRow]:
    """Every proxy's agreement with ``ref`` (one value per architecture of ``done``), best first."""
    rows = []
    for spec in settings.proxies:
        results = {a["hash"]: store.get("proxy", a["hash"], str(spec)) for a in archs}
        paired = [(r.value, m) for a, m in zip(done, ref, strict=True) if (r := results[a["hash"]]) is not None]
        agr = None
        if len(paired) >= 3:
            agr = agreement([p for p, _ in paired], [m for _, m in paired], top_k=TOP_K, resamples=resamples, seed=settings.seed)
        rows.append(ProxyRow(str(spec), agr, _median_seconds([r for r in results.values() if r is not None])))
    halving = _halving_row(settings, store, done, ref, resamples)
    rows += [halving] if halving else []
    return sorted(rows, key=lambda r: -(r.agreement.kendall if r.agreement else -2))


def build_report(settings: FidelitySettings, store: FidelityStore, archs: list[dict[str, Any]], resamples: int = 2000) -> FidelityReport:
    """The table over the architectures whose reference is complete (every seed); while some
    are not, also the table against the first seed alone over those that have it."""
    refs = {a["hash"]: ref for a in archs if (ref := _reference(settings, store, a["hash"])) is not None}
    done = [a for a in archs if a["hash"] in refs]
    rows = _rows(settings, store, archs, done, [statistics.fmean(refs[a["hash"]]) for a in done], resamples)
    ceiling = None
    if settings.seeds >= 2 and len(done) >= 3:
        ceiling = agreement([refs[a["hash"]][0] for a in done], [refs[a["hash"]][1] for a in done], TOP_K, resamples, settings.seed)
    first = {a["hash"]: r.value for a in archs if (r := store.get("reference", a["hash"], str(settings.seed)))}
    first_done = [a for a in archs if a["hash"] in first]
    first_rows = []
    if len(done) < len(archs) and len(first_done) >= 3:
        first_rows = _rows(settings, store, archs, first_done, [first[a["hash"]] for a in first_done], resamples)
    ref_results = [r for a in archs for s in range(settings.seeds) if (r := store.get("reference", a["hash"], str(settings.seed + s)))]
    return FidelityReport(
        study=store.name,
        settings=settings.identity(),
        archs=len(archs),
        complete=len(done),
        rows=rows,
        ceiling=ceiling,
        reference_seconds=_median_seconds(ref_results),
        per_arch=[_arch_row(settings, store, a) for a in archs],
        first_seed=len(first_done),
        first_seed_rows=first_rows,
    )


def _arch_row(settings: FidelitySettings, store: FidelityStore, arch: dict[str, Any]) -> dict[str, Any]:
    """One architecture: throughput, the reference top-1 of each seed it has so far (``complete``
    when it has them all) and its proxy values."""
    proxies = {str(p): r.value for p in settings.proxies if (r := store.get("proxy", arch["hash"], str(p))) is not None}
    ref = [r.value for s in range(settings.seeds) if (r := store.get("reference", arch["hash"], str(settings.seed + s)))]
    row = {"hash": arch["hash"], "throughput": arch["throughput"], "reference": ref, "complete": len(ref) == settings.seeds}
    return {**row, "proxies": proxies, "config": arch["config"]}


def _halving_row(
    settings: FidelitySettings, store: FidelityStore, done: list[dict[str, Any]], ref_mean: list[float], resamples: int
) -> ProxyRow | None:
    """The longest train proxy under successive halving (eta 3, rungs at 1/9 and 1/3),
    replayed in sampling order on its recorded history: its agreement, and its seconds scaled
    by the steps it would have trained."""

    longest = max(settings.proxies, key=lambda p: p.steps or 0)
    if not longest.steps:
        return None
    halving, runs, refs = Halving(), [], []
    for arch, ref in zip(done, ref_mean, strict=True):
        r = store.get("proxy", arch["hash"], str(longest))
        history = {int(s): acc for s, acc in (r.details.get("history") or [])} if r else {}
        if r is not None and all(s in history for s in halving.rung_steps(longest.steps)):
            runs.append((r, history, arch["throughput"]))
            refs.append(ref)
    if len(runs) < 3:
        return None
    replayed = replay([(h, r.value, thr) for r, h, thr in runs], halving, longest.steps)
    share = sum(x.steps for x in replayed) / (len(replayed) * longest.steps)
    agr = agreement([x.score for x in replayed], refs, top_k=TOP_K, resamples=resamples, seed=settings.seed)
    seconds = statistics.median(r.seconds * x.steps / longest.steps for (r, _, _), x in zip(runs, replayed, strict=True))
    return ProxyRow(f"{longest}+halving", agr, seconds, f"{100 * share:.0f} % of {longest}'s steps")

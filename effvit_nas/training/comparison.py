"""Found models against a hand-designed preset, on equal terms: the K best Pareto models of a
study and the preset (at the space's resolution and classes) trained with one recipe, on one
data set, with the same seeds, then re-measured interleaved in one run on the study's device
with its protocol. The table lands in the study (``comparison`` attribute, shown by `show`)
and in every model's card.

Each (model, seed) trains into ``<folder>/seed-<s>``; a run that finds its ``train.json``
reuses it, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from effvit_nas.arch.config import PRESETS, ArchConfig, load_config
from effvit_nas.data import DataConfig
from effvit_nas.errors import SettingError
from effvit_nas.measure.actor import live_worker, measure_configs
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.model.cost import model_cost
from effvit_nas.results.cards import set_section
from effvit_nas.results.export import export_trials
from effvit_nas.results.studies import StudyInfo, load_study
from effvit_nas.training.recipe import TrainRecipe
from effvit_nas.training.runner import Progress, TrainExecution, latest_checkpoint, train
from effvit_nas.trials.pareto import pareto_trials

if TYPE_CHECKING:
    import optuna


MEASURE_ROUNDS = 5  # interleaved re-measurements per model: the median and IQR come from these


@dataclass
class Contender:
    """One model of the comparison and what it reached: top-1 per seed, throughput per round
    (images/s), params and MACs at its resolution."""

    name: str  # "trial 12" or the preset's name
    trial: int | None
    config_hash: str
    config: dict[str, Any]
    folder: str
    params: int
    macs: int
    top1: dict[int, float] = field(default_factory=dict)
    throughput: list[float] = field(default_factory=list)
    dominates: bool | None = None  # found models: mean top-1 above and median throughput at least the baseline's
    beyond_spread: bool | None = None  # ... and the top-1 margin larger than both seed spreads together

    @property
    def top1_mean(self) -> float:
        return statistics.fmean(self.top1.values())

    @property
    def top1_std(self) -> float:
        return statistics.stdev(self.top1.values()) if len(self.top1) > 1 else 0.0

    @property
    def throughput_median(self) -> float:
        return statistics.median(self.throughput)

    def throughput_iqr(self) -> tuple[float, float]:
        q1, q3 = np.percentile(self.throughput, [25, 75])
        return float(q1), float(q3)

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "top1_mean": self.top1_mean,
            "top1_std": self.top1_std,
            "throughput_median": self.throughput_median,
            "throughput_iqr": self.throughput_iqr(),
        }


def _contenders(study: optuna.Study, storage: str, k: int, baseline: str, out: Path) -> list[Contender]:
    """The k best Pareto models (exported) and the baseline preset (a folder with its config)."""

    info = StudyInfo.of(study)
    exported = export_trials(study, info, storage, pareto_trials(study)[:k], out)
    space = info.search_space()
    base = PRESETS[baseline].replace(img_size=max(space.img_sizes), num_classes=space.num_classes)
    base_folder = out / f"baseline-{baseline}"
    base_folder.mkdir(parents=True, exist_ok=True)
    (base_folder / "config.yaml").write_text(base.to_yaml())
    rows = []
    for name, trial, cfg, folder in [
        *((f"trial {e.trial}", e.trial, load_config(e.folder), e.folder) for e in exported),
        (baseline, None, base, base_folder),
    ]:
        cost = model_cost(cfg)
        rows.append(Contender(name, trial, cfg.short_hash(), cfg.to_dict(), str(folder), cost.params, cost.macs))
    return rows


def _train_seed(c: Contender, data: DataConfig, recipe: TrainRecipe, run: TrainExecution, seed: int, on_progress) -> None:
    seed_out = Path(c.folder).resolve() / f"seed-{seed}"
    record = seed_out / "train.json"
    if record.exists():  # trained by an earlier run
        c.top1[seed] = json.loads(record.read_text())["top1"]
        return
    arch = ArchConfig.from_dict(c.config)
    resume = latest_checkpoint(seed_out) is not None  # cut short by an earlier run: go on from its checkpoint
    seed_run = replace(run, out=seed_out, resume=resume)
    res = train(arch, replace(data, img_size=arch.img_size), replace(recipe, seed=seed), seed_run, None, on_progress)
    c.top1[seed] = res.top1


def _measure_interleaved(rows: list[Contender], info: Any, storage: str, ray_address: str | None, rounds: int) -> None:
    """Each round measures every model once, in turn, so that drift of the machine over the
    run touches all of them alike."""

    bench, store = info.bench_settings(), MeasurementStore(storage)
    worker, _ = live_worker(info.device, bench, ray_address)
    configs = [ArchConfig.from_dict(c.config) for _ in range(rounds) for c in rows]  # round after round, in order
    measured = measure_configs(configs, info.device, bench, store, fresh=True, ray_address=ray_address, worker=worker)
    for i, m in enumerate(measured):
        rows[i % len(rows)].throughput.append(m.throughput)


def _judge(rows: list[Contender]) -> None:
    base = rows[-1]
    for c in rows[:-1]:
        margin = c.top1_mean - base.top1_mean
        c.dominates = margin > 0 and c.throughput_median >= base.throughput_median
        c.beyond_spread = c.dominates and margin > c.top1_std + base.top1_std


def compare(
    study_name: str,
    storage: str,
    k: int,
    baseline: str,
    data: DataConfig,
    recipe: TrainRecipe,
    seeds: list[int],
    run: TrainExecution = TrainExecution(),
    out: Path | None = None,
    rounds: int = MEASURE_ROUNDS,
    on_progress: Progress | None = None,
    on_trained: Callable[[Contender], None] | None = None,
) -> list[Contender]:
    """Train and re-measure the ``k`` best Pareto models of ``study_name`` and ``baseline``
    (see the module doc); the baseline is the last row. ``on_trained`` is called after each
    (model, seed). Empty when nothing is feasible."""

    if baseline not in PRESETS:
        raise SettingError("compare.baseline", f"{baseline!r} is no preset (choose from {', '.join(PRESETS)})")
    if run.out is not None:
        raise SettingError("compare.run", "out must be None: each model trains in its own folder (compare.out)")
    study = load_study(study_name, storage)
    if not pareto_trials(study):
        return []
    rows = _contenders(study, storage, k, baseline, out or Path(f"{study_name}-models"))
    # seed after seed, the baseline first in each: a comparison cut short (hours of training
    # per seed at full scale) already holds every model, baseline included, at the seeds it reached
    for seed in seeds:
        for c in [rows[-1], *rows[:-1]]:
            _train_seed(c, data, recipe, run, seed, on_progress)
            if on_trained:
                on_trained(c)
    _measure_interleaved(rows, StudyInfo.of(study), storage, run.ray_address, rounds)
    _judge(rows)
    record = {"baseline": baseline, "seeds": seeds, "recipe": asdict(recipe), "data": asdict(data), "rows": [c.summary() for c in rows]}
    study.set_user_attr("comparison", record)
    for c in rows:
        _write_card(Path(c.folder), rows)
    return rows


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The comparison (:meth:`Contender.summary` of each row) as printable rows."""
    out = []
    for c in rows:
        q1, q3 = c["throughput_iqr"]
        verdict = "baseline" if c["dominates"] is None else "no"
        if c["dominates"]:
            verdict = "yes, beyond the seed spread" if c["beyond_spread"] else "yes, within the seed spread"
        top1 = f"{100 * c['top1_mean']:.1f} ± {100 * c['top1_std']:.1f} ({len(c['top1'])} seeds)"
        tp = f"{c['throughput_median']:,.0f} [{q1:,.0f}-{q3:,.0f}]"
        out.append([c["name"], top1, tp, f"{c['params'] / 1e6:.2f}", f"{c['macs'] / 1e6:.1f}", verdict])
    return out


TABLE_HEADERS = ["model", "top-1 % (mean ± std)", "img/s median [IQR]", "params (M)", "MACs (M)", "dominates baseline"]


def _write_card(folder: Path, rows: list[Contender]) -> None:
    lines = ["Same recipe, data and seeds; throughput re-measured interleaved in one run.", ""]
    lines += ["| " + " | ".join(TABLE_HEADERS) + " |", "|" + "---|" * len(TABLE_HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows([c.summary() for c in rows])]
    set_section(folder / "README.md", "## Compared with the baseline", "\n".join(lines))

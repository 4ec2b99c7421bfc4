"""M0-M5 as reference points of a study: measured on the study's device with its protocol, scored
by its proxy on its data, so they sit on the same axes as the searched candidates.

Throughputs live in the measurement store (keyed like every other measurement); proxy values
are kept in the study's ``presets`` attribute, keyed by architecture hash, so they are computed
once per study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.results.studies import StudyInfo, device_description
from effvit_nas.data import DataConfig, load_data
from effvit_nas.measure.actor import measure_configs
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.proxy.registry import evaluate_proxy
from effvit_nas.proxy.short_training import ShortTrainSettings
from effvit_nas.search.budget import parse_relative

if TYPE_CHECKING:
    import optuna
    from effvit_nas.arch.space import SearchSpace


@dataclass(frozen=True)
class ReferencePoint:
    name: str  # M0..M5, with the resolution when it is not the paper's 224 px
    config: ArchConfig
    throughput: float | None  # img/s on the study's device and protocol
    accuracy: float | None  # the study's proxy


def preset_configs(space: SearchSpace) -> dict[str, ArchConfig]:
    """M0-M5 with the space's class count, at 224 px when the space has it, else at the space's
    largest resolution (a search at 64 px is compared with M0-M5 at 64 px)."""
    size = 224 if 224 in space.img_sizes else max(space.img_sizes)
    return {
        (name if size == 224 else f"{name}@{size}px"): p.replace(num_classes=space.num_classes, img_size=size)
        for name, p in PRESETS.items()
    }


def reference_points(
    study: optuna.Study, info: StudyInfo, storage: str, measure: bool = False, ray_address: str | None = None, on_progress: Any = None
) -> list[ReferencePoint]:
    """M0-M5 for ``study``. Stored figures are used as they are; with ``measure`` the missing
    ones are measured (device actor, measurement store) and scored (proxy, stored in the study)."""

    configs = preset_configs(info.search_space())
    store = MeasurementStore(storage)
    bench = info.bench_settings()
    scores: dict[str, float] = dict(study.user_attrs.get("presets", {}))
    throughputs: dict[str, float] = {}
    if measure:
        for m in measure_configs(list(configs.values()), info.device, bench, store, ray_address=ray_address, on_result=on_progress):
            throughputs[m.config_hash] = m.throughput
        missing = {n: c for n, c in configs.items() if c.short_hash() not in scores}
        if missing:
            data = load_data(DataConfig(**info.data))
            for cfg in missing.values():
                r = evaluate_proxy(info.proxy, cfg, data, ShortTrainSettings(**info.train))
                scores[cfg.short_hash()] = r.value
                if on_progress:
                    on_progress(r)
            study.set_user_attr("presets", scores)
    else:
        device = device_description(study, info, storage)
        for cfg in configs.values():
            stored = store.get(cfg.short_hash(), device["id"], bench.key()) if device else None
            if stored is not None:
                throughputs[cfg.short_hash()] = stored.throughput
    throughputs.update(_budget_preset_throughput(info, configs))
    return [ReferencePoint(name, cfg, throughputs.get(cfg.short_hash()), scores.get(cfg.short_hash())) for name, cfg in configs.items()]


def _budget_preset_throughput(info: StudyInfo, configs: dict[str, ArchConfig]) -> dict[str, float]:
    """The preset a relative budget names (or the anchor an absolute one was paired with), at
    the figure the study resolved it to (the median of its reference runs): the store keeps only
    the newest run, which can lie far from it, and the plot must show the preset where the
    budget line (or the paired figures' scale) says."""

    relative = parse_relative(info.budget_spec) if info.budget_spec else None
    name = info.anchor or (relative[1] if relative else None)
    if name is None or not info.budget_reference:
        return {}
    cfg = next((c for n, c in configs.items() if n.split("@")[0] == name), None)
    return {cfg.short_hash(): float(info.budget_reference)} if cfg is not None else {}

"""A target's profile: the efficiency predictor fitted on its calibration, how it did held out,
the noise ceiling beside it, and what the calibration cost, stored as one record per (device
fingerprint, protocol, metric, space) in the measurement store's database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from effvit_nas.arch.config import PRESETS, ArchConfig, preset_name
from effvit_nas.arch.space import SearchSpace
from effvit_nas.errors import UserError
from effvit_nas.measure.settings import BenchSettings, Measurement
from effvit_nas.measure.store import MeasurementStore, StorageError, default_storage
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.calibration import Calibration, calibrate, engine_measure, noise_ceiling, preset_configs
from effvit_nas.predict.efficiency import EfficiencyPredictor, fit_efficiency
from effvit_nas.predict.features import BEST, FEATURE_SETS, choose
from effvit_nas.predict.store import PredictorStore


def fit_profile(
    cal: Calibration, space: SearchSpace, settings: BenchSettings, metric: str, feature_set: str, folds: int, seed: int, url: str
) -> dict[str, Any]:
    """Fit every feature set (held out), keep ``feature_set``'s predictor (:data:`BEST`: the
    set :func:`choose` picks from the held-out figures), store the record."""
    features = [analytic_features(c) for c in cal.configs]
    fits = {name: fit_efficiency(features, cal.throughput, name, folds, seed) for name in FEATURE_SETS}
    chosen_by = "held out, best of every set" if feature_set == BEST else "given"
    if feature_set == BEST:
        feature_set = choose({name: (h.within_10, h.spearman) for name, (_, h) in fits.items()})
    predictor, held = fits[feature_set]
    noise = noise_ceiling(cal.repeats, cal.throughput, seed)
    record = {
        "space": space.name,
        "img_sizes": list(space.img_sizes),
        "metric": metric,
        "device": cal.device,
        "protocol": asdict(settings),
        "protocol_key": settings.key(),
        "anchor": cal.anchor,
        "predictor": predictor.to_dict(),
        "feature_set_chosen": chosen_by,
        "terms": predictor.terms(),
        "held_out": held.to_dict(),
        # the presets are often far outside the space (M5 in the tiny space): judged apart
        "held_out_sampled": held.subset(cal.throughput, np.array([label not in PRESETS for label in cal.labels])).to_dict(),
        "other_feature_sets": {n: h.to_dict() for n, (_, h) in fits.items() if n != feature_set},
        "noise": asdict(noise) if noise else None,
        "calibration": {
            "archs": len(cal.labels),
            "labels": list(cal.labels),
            "configs": [c.to_dict() for c in cal.configs],  # so a predicted search can refit on them
            "throughput": cal.throughput.tolist(),
            "measured_now": cal.measured_now,
            "reused": cal.reused,
            "seconds": cal.seconds,
            "repeats": [list(r) for r in cal.repeats],
        },
        "fitted_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "storage": url,
    }
    PredictorStore(url).put(cal.device["id"], settings.key(), metric, space.name, record)
    return record


def run_profile(
    space: SearchSpace,
    items: list[tuple[str, ArchConfig]],
    device: str,
    settings: BenchSettings,
    store: MeasurementStore,
    anchor: str | None,
    fit: tuple[int, int, int, str],
    on_result: Callable[[Measurement], None] | None = None,
) -> dict[str, Any]:
    """Measure the calibration ``items`` (figures anchored to the preset named ``anchor`` at the
    space's resolution, or plain for None), fit and store the profile; ``fit``: (repeats,
    folds, seed, feature set)."""
    repeats, folds, seed, feature_set = fit
    presets = preset_configs(space)
    measure = engine_measure(device, settings, store, presets[anchor] if anchor else None, on_result)
    cal = calibrate(items, measure, repeats, f"{anchor}@{max(space.img_sizes)}px" if anchor else None)
    return fit_profile(cal, space, settings, settings.metric, feature_set, folds, seed, store.url)


def _figures(h: dict[str, Any]) -> str:
    return f"within ±5 %: {100 * h['within_5']:.1f} %, within ±10 %: {100 * h['within_10']:.1f} %, Spearman {h['spearman']:+.3f}"


def profile_lines(r: dict[str, Any]) -> list[str]:
    """What `profile` prints: the calibration, the held-out figures, the ceiling, the terms."""
    c, h, d = r["calibration"], r["held_out"], r["device"]
    scale = f"figures anchored to {r['anchor']}" if r["anchor"] else "plain figures"
    lines = [
        f"profile {r['metric']} of space {r['space']} on {d['name']} [{d['id']}], protocol {r['protocol_key']} "
        f"(batch {r['protocol']['batch']}, {r['protocol']['backend']}, {r['protocol']['threads']} thread(s)); {scale}",
        f"calibration: {c['archs']} architectures (M0..M5 + {c['archs'] - 6} sampled), {c['measured_now']} measured now "
        f"({len(c['repeats'])} of them repeats), {c['reused']} reused from the store; cost {c['seconds']:.1f} s",
        f"held out ({h['folds']}-fold, {h['n']} archs, features {r['predictor']['feature_set']}"
        + (" (the best held-out set: slightly optimistic)" if r.get("feature_set_chosen", "given") != "given" else "")
        + f"): {_figures(h)}, "
        f"median |error| {100 * h['median_abs_error']:.1f} %",
        f"  of them the {r['held_out_sampled']['n']} sampled from the space: {_figures(r['held_out_sampled'])}, "
        f"median |error| {100 * r['held_out_sampled']['median_abs_error']:.1f} %",
    ]
    n = r["noise"]
    if n:
        lines.append(f"noise ceiling ({n['pairs']} repeats, one measurement's spread {100 * n['sd']:.1f} %): {_figures(n)}")
    else:
        lines.append("noise ceiling: not measured (--repeats 0)")
    lines += [f"  other features {name}: {_figures(o)}" for name, o in r["other_feature_sets"].items()]
    terms = ", ".join(f"{k} {v:.3g}" for k, v in r["terms"].items() if v > 0)
    lines.append(f"cost terms (s/image per unit, zero ones left out): {terms}")
    lines.append(f"stored in {r['storage']} (predict --device ... with the same protocol flags uses it)")
    return lines


def load_profile(
    storage: str | None, fp: dict[str, Any], settings: BenchSettings, metric: str, space: str | None, device: str
) -> dict[str, Any]:
    """The latest stored record for the target; UserError naming `profile` when there is none."""
    url = storage or default_storage()
    hint = f"run 'effvit-nas profile --device {device} --space {space or 'SPACE'}' with the same protocol flags first"
    try:
        found = PredictorStore(url, existing=True).find(fp["id"], settings.key(), metric, space)
    except StorageError as e:
        raise UserError(f"{e}; no profile to predict from: {hint}") from None
    if not found:
        what = f"space {space!r}, " if space else ""
        raise UserError(f"no profile for {what}device {device} [{fp['id']}], protocol {settings.key()}, {metric} in {url}: {hint}")
    return found[0]


def predict_configs(record: dict[str, Any], specs: tuple[str, ...], configs: list[ArchConfig]) -> list[dict[str, Any]]:
    """One prediction per config, noting one the calibration did not cover (another resolution)."""
    predictor = EfficiencyPredictor.from_dict(record["predictor"])
    rows = []
    for spec, cfg in zip(specs, configs, strict=True):
        p = predictor.predict(analytic_features(cfg))
        note = "" if cfg.img_size in record["img_sizes"] else f"{cfg.img_size} px, profiled at {record['img_sizes']}: extrapolated"
        rows.append(
            {
                "name": preset_name(cfg) or spec,
                "hash": cfg.short_hash(),
                "throughput": p.throughput,
                "low": p.low,
                "high": p.high,
                "note": note,
            }
        )
    return rows

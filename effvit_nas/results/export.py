"""Exporting chosen trials of a study as self-contained model folders.

Per model, ``OUT/trial-<number>-<hash>/`` holds:

* ``config.yaml``: the architecture (``effvit-nas model info``, ``load_config``/``build_model``
  and ``effvit-nas train`` all read it, or the folder itself);
* ``timm.json``: kwargs for timm's ``EfficientVitMsra`` when timm can express the config;
* ``measurement.json``: throughput with its spread, the device fingerprint and the protocol,
  and with ``remeasure`` a second, fresh measurement and its drift (of the first target); under
  ``targets`` every target's figure in its unit (img/s, or p50/p90 ms for latency), and with
  ``remeasure`` its re-measured figure and drift in that unit;
* ``proxy.json``: the proxy, its value and the data/recipe it was computed with;
* ``model.onnx`` when asked (deployment form: fused, batch axis symbolic);
* ``README.md``: a short model card, with a row per target.

``OUT/index.json`` lists the exported models, each with its figure on every target. Training (``effvit-nas train``) later adds
weights and the trained accuracy to the same folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effvit_nas.proxy.registry import is_accuracy
from effvit_nas.arch.config import ArchConfig, preset_name
from effvit_nas.errors import SettingError, UserError
from effvit_nas.results.cards import replace_text, write_card
from effvit_nas.trials.pareto import pareto_trials
from effvit_nas.results.studies import StudyInfo, device_description
from effvit_nas.trials.records import StudyTarget, TargetFigure, TrialRecord, fmt_ms
from effvit_nas.measure.actor import measure_configs
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.model.deploy import export_onnx
from effvit_nas.model.efficientvit import build_model
from effvit_nas.model.timm_compat import timm_kwargs

if TYPE_CHECKING:
    import optuna


DRIFT_LIMIT = 0.05  # re-measured throughput off by more than this fraction is flagged


@dataclass
class Exported:
    trial: int
    config_hash: str
    folder: Path
    throughput: float | None
    accuracy: float | None
    remeasured: float | None = None
    drift: float | None = None  # remeasured / stored - 1
    targets: list[dict[str, Any]] = field(default_factory=list)  # every target's figure (see target_measurements)

    @property
    def drifted(self) -> bool:
        return self.drift is not None and abs(self.drift) > DRIFT_LIMIT


def select_trials(study: optuna.Study, pareto: bool = False, trial: list[int] | None = None, top: int | None = None) -> list:
    """The trials to export: the Pareto set (default), given trial numbers, or the ``top``
    feasible architectures by proxy value. UserError when that selects nothing usable."""
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise UserError(f"study {study.study_name!r} is empty")
    if trial:
        return [_numbered(study, trials, n) for n in trial]
    if top is not None:
        chosen = _top(trials, top)
    else:
        chosen = pareto_trials(study)
    if not chosen:
        complete = sum(TrialRecord.of(t).complete for t in trials)
        raise UserError(f"study {study.study_name!r} has no feasible trials yet ({complete} complete)")
    return chosen


def _numbered(study: optuna.Study, trials: list, n: int) -> Any:
    by_number = {t.number: t for t in trials}
    if n not in by_number:
        raise UserError(f"study {study.study_name!r} has no trial {n} (trials 0-{max(by_number)})")
    _config(TrialRecord.of(by_number[n]), study.study_name)
    return by_number[n]


def _config(r: TrialRecord, study_name: str) -> dict[str, Any]:
    if not r.config:
        raise UserError(f"trial {r.number} of {study_name!r} has no config ({r.state}: {r.fail_reason or 'never sampled'})")
    return r.config


def _top(trials: list, top: int) -> list:
    """The ``top`` feasible, measured architectures by proxy value, each once (its first trial)."""
    if top < 1:
        raise SettingError("select_trials.top", f"must be positive, got {top}")
    seen, ranked = set(), []
    records = sorted((TrialRecord.of(t) for t in trials), key=lambda r: (-(r.values or (0,))[0], r.number))
    by_number = {t.number: t for t in trials}
    for r in records:
        if r.feasible and r.measured and r.key() not in seen:
            seen.add(r.key())
            ranked.append(by_number[r.number])
    return ranked[:top]


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingError("export_trials.out", f"{str(out)!r} cannot be created: {e.strerror or e}") from None
    if not out.is_dir() or not os.access(out, os.W_OK):
        raise SettingError("export_trials.out", f"{str(out)!r} is not a writable directory")


def _card(cfg: ArchConfig, r: TrialRecord, info: StudyInfo, record: dict[str, Any], timm: dict | None, device: dict | None) -> str:
    m = record.get("measurement") or {}
    acc = r.accuracy
    proxy = "not run" if acc is None else f"{100 * acc:.1f} % top-1" if is_accuracy(info.proxy) else f"{acc:.4g}"
    rows = [
        f"| {i + 1} | {cfg.widths[i]} | {cfg.depths[i]} | {cfg.heads[i]} | {cfg.qk_dims[i]} | {cfg.v_ratios[i]:g} | {cfg.ffn_ratios[i]:g} | {cfg.windows[i]} |"
        for i in range(cfg.num_stages)
    ]
    lines = [
        f"# EfficientViT {cfg.short_hash()} (study `{info.name}`, trial {r.number})",
        "",
        (
            f"Found by `effvit-nas search` on {len(info.targets)} targets ({info.budget_text()})"
            if info.several
            else f"Found by `effvit-nas search` on `{info.device}` under a budget of {info.budget_text()[3:]}"
        )
        + (f"; identical to {preset_name(cfg)}." if preset_name(cfg) else "."),
        "",
        "| | |",
        "|---|---|",
        f"| params | {(r.params or 0) / 1e6:.2f} M |",
        f"| MACs | {(r.macs or 0) / 1e6:.1f} M at {cfg.img_size} px |",
        *_figure_rows(m.get("targets") or [], info.several),
        f"| proxy ({info.proxy}) | {proxy} |",
        f"| feasible / Pareto | {r.feasible} / {r.number in record.get('pareto_numbers', ())} |",
    ]
    if m.get("remeasured") is not None and not info.several:
        lines.append(f"| re-measured | {_remeasured_text(info.target, m['remeasured'], m.get('drift'))} |")
    lines += [f"| re-measured ({t['name']}) | {_remeasured_row(t)} |" for t in m.get("targets") or [] if info.several and "remeasured" in t]
    lines += [
        "",
        "| stage | width | depth | heads | QK dim | V ratio | FFN ratio | window |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Q kernels per head: {list(cfg.kernels)}. Image size {cfg.img_size} px, {cfg.num_classes} classes.",
        "",
        "## Use",
        "",
        "```",
        "effvit-nas model info config.yaml",
        "python -c \"from effvit_nas import build_model, load_config; m = build_model(load_config('config.yaml'))\"",
        "effvit-nas train . --data PATH  # full training; writes weights here",
        "```",
    ]
    if timm is not None:
        lines += ["", "timm: `EfficientVitMsra(**json.load(open('timm.json'))['kwargs'])` builds the same network (same state-dict keys)."]
    else:
        lines += ["", "timm cannot express this config (value/FFN ratios or windows outside its constructor); use `build_model`."]
    lines += ["", "The proxy value ranks candidates; it is not an ImageNet accuracy. Train the model to know that.", ""]
    return "\n".join(lines)


def unit_drift(target: StudyTarget, drift: float) -> float:
    """A drift of the images/s(-equivalent) figure in ``target``'s unit: a latency 5 % longer is
    +5 %, whatever its images/s did."""
    return 1 / (1 + drift) - 1 if target.latency else drift


def _remeasured_text(target: StudyTarget, figure: float, drift: float | None) -> str:
    if drift is None:
        return target.text(figure)
    return f"{target.text(figure)} (drift {100 * unit_drift(target, drift):+.1f} %{', over 5 %' if abs(drift) > DRIFT_LIMIT else ''})"


def _remeasured_row(t: dict[str, Any]) -> str:
    """A target row's re-measured figure in its unit and its drift (already in that unit)."""
    figure = f"p50 {fmt_ms(t['remeasured'])} ms" if t["metric"] == "latency" else f"{t['remeasured']:,.0f} img/s"
    if t.get("drift") is None:
        return figure
    return f"{figure} (drift {100 * t['drift']:+.1f} %{', over 5 %' if abs(t['drift']) > DRIFT_LIMIT else ''})"


def _figure_text(t: dict[str, Any]) -> str:
    if not t["figure"] or not t["measured"]:
        return "not measured"
    if t["metric"] != "latency":
        return f"{t['figure']:,.0f} img/s"
    p90 = f", p90 {fmt_ms(t['p90_ms'])} ms" if t.get("p90_ms") else ""
    return f"p50 {fmt_ms(t['p50_ms'])} ms{p90} at batch 1"


def _figure_rows(targets: list[dict[str, Any]], several: bool) -> list[str]:
    """The card's row per target: its figure in its unit, the device and the protocol (one
    target: ``throughput`` or ``latency``, as a card always had)."""
    rows = []
    for t in targets:
        what = f"{t['name']} {t['metric']}" if several else t["metric"]
        where = (t["device"] or {}).get("name", t["name"].split("/")[0])
        rows.append(f"| {what} | {_figure_text(t)} ({where}; {t['protocol_text']}) |")
    return rows


def target_measurements(r: TrialRecord, info: StudyInfo, store: MeasurementStore, devices: list[Any]) -> list[dict[str, Any]]:
    """``r``'s figure on every target of the study in its unit (``throughput`` img/s, or
    ``p50_ms``/``p90_ms``), with the device, the protocol and the stored record behind it (a
    one-target latency study keeps its p90 only there)."""
    out = []
    for i, t in enumerate(info.targets):
        f = r.targets[i] if i < len(r.targets) else TargetFigure(None)
        stored = (
            store.get(r.config_hash, f.device_id, BenchSettings.from_stored(t.bench).key()) if f.measured and f.device_id and r.config_hash else None
        )
        row: dict[str, Any] = {
            "target": t.spec,
            "name": t.name,
            "metric": t.metric,
            "figure": f.figure,
            "measured": f.measured,
            "iqr": list(f.iqr) if f.iqr else None,
        }
        row.update(_in_unit(t, f, stored))
        row.update(device=devices[i] if i < len(devices) else None, protocol=t.bench, protocol_text=t.protocol())
        if stored is not None:
            row["record"] = stored.to_dict()
        out.append(row)
    return out


def _in_unit(t: StudyTarget, f: TargetFigure, stored: Any) -> dict[str, Any]:
    if not t.latency:
        return {"throughput": f.figure, "unit": "images/s"}
    p90 = f.p90_ms if f.p90_ms is not None else getattr(stored, "p90_ms", None)
    return {"p50_ms": t.shown(f.figure) if f.figure else None, "p90_ms": None if p90 is None or math.isnan(p90) else p90, "unit": "ms"}


def export_trials(
    study: optuna.Study,
    info: StudyInfo,
    storage: str,
    trials: list,
    out: Path,
    onnx: bool = False,
    remeasure: bool = False,
    ray_address: str | None = None,
    force: bool = False,
) -> list[Exported]:
    """Write one folder per trial under ``out`` (see the module doc). ``out`` holding another
    study's exports is refused (SettingError) unless ``force``."""

    records = [TrialRecord.of(t) for t in trials]
    configs = [ArchConfig.from_dict(_config(r, info.name)) for r in records]
    if not force:
        _check_owner(out, info.name, _shown_storage(storage), [_folder_name(r, c) for r, c in zip(records, configs, strict=True)])
    _check_writable(out)
    store = MeasurementStore(storage)
    bench = info.bench_settings()
    stored = {  # read before --remeasure replaces them in the store
        r.number: store.get(cfg.short_hash(), r.device_id, bench.key())
        for r, cfg in zip(records, configs, strict=True)
        if r.measured and r.device_id
    }
    devices = [device_description(study, info, storage, i) for i in range(len(info.targets))]
    figures = {r.number: target_measurements(r, info, store, devices) for r in records}  # before --remeasure replaces the records
    fresh: dict[str, Any] = {}
    if remeasure:
        every = _remeasure(configs, info, store, ray_address)
        fresh = every[0]
        _add_remeasured(figures, records, configs, info, every)
    context = {"info": info, "device": devices[0], "pareto_numbers": {t.number for t in pareto_trials(study)}, "figures": figures}
    try:
        exported = [
            _write_folder(out, r, cfg, stored.get(r.number), fresh.get(cfg.short_hash()), onnx, context)
            for r, cfg in zip(records, configs, strict=True)
        ]
        _write_index(out, info, storage, exported)
    except OSError as e:  # a full disk: each file is replaced whole or kept (replace_text)
        where = f" ({e.filename})" if e.filename else ""
        raise SettingError(
            "export_trials.out",
            f"{str(out)!r}: writing failed{where}: {e.strerror or e}; the study is unchanged: free space and export again",
        ) from None
    return exported


def _remeasure(configs: list[ArchConfig], info: StudyInfo, store: MeasurementStore, ray_address: str | None) -> list[dict[str, Any]]:
    """Every config measured afresh on every target (the store's records replaced): by config hash, per target."""
    return [
        {m.config_hash: m for m in measure_configs(configs, t.device, BenchSettings.from_stored(t.bench), store, fresh=True, ray_address=ray_address)}
        for t in info.targets
    ]


def _add_remeasured(
    figures: dict[int, list[dict[str, Any]]], records: list[TrialRecord], configs: list[ArchConfig], info: StudyInfo, fresh: list[dict[str, Any]]
) -> None:
    """Each target's re-measured figure in its unit (``remeasured``) and its drift from the
    stored one in that unit (``drift``) into the trials' target rows."""
    for r, cfg in zip(records, configs, strict=True):
        for t, row, by_hash in zip(info.targets, figures[r.number], fresh, strict=True):
            m = by_hash.get(cfg.short_hash())
            if m is not None:
                row["remeasured"] = t.shown(m.throughput)
                row["drift"] = unit_drift(t, m.throughput / row["figure"] - 1) if row["figure"] else None


def _measurement(r: TrialRecord, item: Exported, info: StudyInfo, device: dict | None, stored: Any, fresh: Any) -> dict[str, Any]:
    """measurement.json; fills ``item``'s re-measured figure and drift when ``fresh`` is given."""
    measurement: dict[str, Any] = {
        "throughput": r.throughput,
        "unit": "images/s",
        "iqr": list(r.throughput_iqr) if r.throughput_iqr else None,
        "measured": r.measured,
        "device": device,
        "protocol": info.bench,
        "protocol_text": info.protocol(),
    }
    if stored is not None:
        measurement["record"] = stored.to_dict()
    measurement["targets"] = item.targets
    if fresh is not None:
        item.remeasured = fresh.throughput
        measurement.update(remeasured=fresh.throughput, remeasured_record=fresh.to_dict())
        if r.throughput:
            item.drift = fresh.throughput / r.throughput - 1
            measurement.update(drift=item.drift, drift_flag=item.drifted)
    return measurement


def _folder_name(r: TrialRecord, cfg: ArchConfig) -> str:
    return f"trial-{r.number}-{cfg.short_hash()}"


def _shown_storage(storage: str) -> str:
    from sqlalchemy.engine import make_url  # lazy: SQLAlchemy is loaded with Optuna

    return make_url(storage).render_as_string(hide_password=True)


def _check_owner(out: Path, study: str, storage: str, folders: list[str]) -> None:
    """Refuse to write into ``out`` when its index.json, or a model folder this export would
    rewrite, belongs to another study: index.json would list only this study's models and the
    folder's card and proxy would describe the other study's trained model."""
    owner = _read_json(out / "index.json")
    if owner is not None and (owner.get("study"), owner.get("storage")) != (study, storage):
        raise SettingError(
            "export_trials.out",
            f"{str(out)!r} holds the exports of study {owner.get('study')!r} ({owner.get('storage')}): "
            "export into another folder, or pass --force to make it this study's (same-named model folders are overwritten)",
        )
    for name in folders:
        proxy = _read_json(out / name / "proxy.json")
        if proxy is not None and proxy.get("study") != study:
            raise SettingError(
                "export_trials.out",
                f"{str(out / name)!r} holds a model of study {proxy.get('study')!r}: export into another folder, or pass --force to overwrite it",
            )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_folder(out: Path, r: TrialRecord, cfg: ArchConfig, stored: Any, fresh: Any, onnx: bool, context: dict[str, Any]) -> Exported:
    info = context["info"]
    folder = out / _folder_name(r, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    replace_text(
        folder / "config.yaml",
        f"# EfficientViT {cfg.short_hash()}: study {info.name!r}, trial {r.number} (effvit-nas export)\n" + cfg.to_yaml(),
    )
    tk = timm_kwargs(cfg)
    if tk is not None:
        replace_text(
            folder / "timm.json", json.dumps({"model": "timm.models.efficientvit_msra.EfficientVitMsra", "kwargs": tk}, indent=1) + "\n"
        )
    item = Exported(r.number, cfg.short_hash(), folder, r.throughput, r.accuracy, targets=context["figures"][r.number])
    measurement = _measurement(r, item, info, context["device"], stored, fresh)
    replace_text(folder / "measurement.json", json.dumps(measurement, indent=1) + "\n")
    proxy = {
        "proxy": info.proxy,
        "value": r.accuracy,
        "seconds": r.proxy_seconds,
        "data": info.data,
        "train": info.train,
        "study": info.name,
        "trial": r.number,
    }
    replace_text(folder / "proxy.json", json.dumps(proxy, indent=1) + "\n")
    if onnx:
        _write_onnx(cfg, folder / "model.onnx")
    record = {"measurement": measurement, "pareto_numbers": context["pareto_numbers"]}
    write_card(folder / "README.md", _card(cfg, r, info, record, tk, context["device"]))
    return item


def _write_onnx(cfg: ArchConfig, path: Path) -> None:
    import torch  # lazy: torch costs seconds to import

    model = build_model(cfg).eval().deploy()
    export_onnx(model, torch.randn(1, 3, cfg.img_size, cfg.img_size), str(path), dynamic_batch=True)


def _write_index(out: Path, info: StudyInfo, storage: str, exported: list[Exported]) -> None:
    index = [
        {
            "trial": e.trial,
            "hash": e.config_hash,
            "folder": e.folder.name,
            "throughput": e.throughput,
            "accuracy": e.accuracy,
            "remeasured": e.remeasured,
            "drift": e.drift,
            "targets": [
                {k: t.get(k) for k in ("target", "metric", "throughput", "p50_ms", "p90_ms", "measured") if k in t} for t in e.targets
            ],
        }
        for e in exported
    ]
    where = _shown_storage(storage)
    index += _earlier_exports(out / "index.json", info.name, where, {e.folder.name for e in exported})
    replace_text(
        out / "index.json",
        json.dumps(
            {
                "study": info.name,
                "storage": where,
                "device": info.device,
                "budget": info.budget,
                "proxy": info.proxy,
                "targets": [
                    {"target": t.spec, "metric": t.metric, "budget": t.budget, "budget_text": t.budget_text()} for t in info.targets
                ],
                "models": index,
            },
            indent=1,
        )
        + "\n",
    )


def _earlier_exports(path: Path, study: str, storage: str, now: set[str]) -> list[dict[str, Any]]:
    """The entries of an index.json already in OUT for the same study whose folders this export
    did not rewrite and that are still there: exporting one more trial keeps the others listed."""
    earlier = _read_json(path)
    if earlier is None or (earlier.get("study"), earlier.get("storage")) != (study, storage):
        return []
    models = earlier.get("models")
    return [
        m
        for m in (models if isinstance(models, list) else [])
        if isinstance(m, dict) and m.get("folder") not in now and (path.parent / str(m.get("folder"))).is_dir()
    ]

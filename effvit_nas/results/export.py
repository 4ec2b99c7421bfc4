"""Exporting chosen trials of a study as self-contained model folders.

Per model, ``OUT/trial-<number>-<hash>/`` holds:

* ``config.yaml``: the architecture (``effvit-nas model info``, ``load_config``/``build_model``
  and ``effvit-nas train`` all read it, or the folder itself);
* ``timm.json``: kwargs for timm's ``EfficientVitMsra`` when timm can express the config;
* ``measurement.json``: throughput with its spread, the device fingerprint and the protocol,
  and with ``remeasure`` a second, fresh measurement and its drift;
* ``proxy.json``: the proxy, its value and the data/recipe it was computed with;
* ``model.onnx`` when asked (deployment form: fused, batch axis symbolic);
* ``README.md``: a short model card.

``OUT/index.json`` lists the exported models. Training (``effvit-nas train``) later adds
weights and the trained accuracy to the same folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effvit_nas.arch.config import ArchConfig, preset_name
from effvit_nas.errors import UserError
from effvit_nas.results.pareto import is_feasible, pareto_trials
from effvit_nas.results.studies import StudyInfo, device_description

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

    @property
    def drifted(self) -> bool:
        return self.drift is not None and abs(self.drift) > DRIFT_LIMIT


def select_trials(study: Any, pareto: bool = False, trial: list[int] | None = None, top: int | None = None) -> list:
    """The trials to export: the Pareto set (default), given trial numbers, or the ``top``
    feasible architectures by proxy value. UserError when that selects nothing usable."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if not study.get_trials(deepcopy=False):
        raise UserError(f"study {study.study_name!r} is empty")
    if trial:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        chosen = []
        for n in trial:
            if n not in by_number:
                raise UserError(f"study {study.study_name!r} has no trial {n} (trials 0-{max(by_number)})")
            if not by_number[n].user_attrs.get("config"):
                raise UserError(f"trial {n} of {study.study_name!r} has no config ({by_number[n].state.name}: "
                                f"{by_number[n].user_attrs.get('fail_reason', 'never sampled')})")
            chosen.append(by_number[n])
        return chosen
    if top is not None:
        if top < 1:
            raise UserError(f"--top must be positive, got {top}")
        seen, ranked = set(), []
        for t in sorted((t for t in complete if is_feasible(t) and t.user_attrs.get("measured", True)), key=lambda t: (-t.values[0], t.number)):
            if t.user_attrs.get("config_hash") not in seen:
                seen.add(t.user_attrs.get("config_hash"))
                ranked.append(t)
        chosen = ranked[:top]
    else:
        chosen = pareto_trials(study)
    if not chosen:
        raise UserError(f"study {study.study_name!r} has no feasible trials yet ({len(complete)} complete)")
    return chosen


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {str(out)!r}: {e.strerror or e}") from None
    if not out.is_dir() or not os.access(out, os.W_OK):
        raise UserError(f"cannot write to --out {str(out)!r}: not a writable directory")


def _card(cfg: ArchConfig, t: Any, info: StudyInfo, record: dict[str, Any], timm: dict | None, device: dict | None) -> str:
    ua = t.user_attrs
    m = record.get("measurement") or {}
    tp = f"{ua['throughput']:,.0f} img/s" if ua.get("throughput") else "not measured"
    acc = ua.get("accuracy")
    proxy = "not run" if acc is None else f"{100 * acc:.1f} % top-1" if info.proxy == "train" else f"{acc:.4g}"
    rows = [
        f"| {i + 1} | {cfg.widths[i]} | {cfg.depths[i]} | {cfg.heads[i]} | {cfg.qk_dims[i]} | {cfg.v_ratios[i]:g} | {cfg.ffn_ratios[i]:g} | {cfg.windows[i]} |"
        for i in range(cfg.num_stages)
    ]
    lines = [
        f"# EfficientViT {cfg.short_hash()} (study `{info.name}`, trial {t.number})",
        "",
        f"Found by `effvit-nas search` on `{info.device}` under a budget of {info.budget:,.0f} img/s"
        + (f"; identical to {preset_name(cfg)}." if preset_name(cfg) else "."),
        "",
        "| | |",
        "|---|---|",
        f"| params | {ua.get('params', 0) / 1e6:.2f} M |",
        f"| MACs | {ua.get('macs', 0) / 1e6:.1f} M at {cfg.img_size} px |",
        f"| throughput | {tp} ({(device or {}).get('name', info.device)}; {info.protocol()}) |",
        f"| proxy ({info.proxy}) | {proxy} |",
        f"| feasible / Pareto | {is_feasible(t)} / {t.number in record.get('pareto_numbers', ())} |",
    ]
    if m.get("remeasured") is not None:
        lines.append(f"| re-measured | {m['remeasured']:,.0f} img/s (drift {100 * m['drift']:+.1f} %{', over 5 %' if abs(m['drift']) > DRIFT_LIMIT else ''}) |")
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


def export_trials(study: Any, info: StudyInfo, storage: str, trials: list, out: Path, onnx: bool = False,
                  remeasure: bool = False, ray_address: str | None = None) -> list[Exported]:
    """Write one folder per trial under ``out`` (see the module doc)."""
    from effvit_nas.measure.store import MeasurementStore
    from effvit_nas.model.timm_compat import timm_kwargs

    _check_writable(out)
    store = MeasurementStore(storage)
    bench = info.bench_settings()
    device = device_description(study, info, storage)
    pareto_numbers = {t.number for t in pareto_trials(study)}
    configs = [ArchConfig.from_dict(t.user_attrs["config"]) for t in trials]
    stored = {  # read before --remeasure replaces them in the store
        t.number: store.get(cfg.short_hash(), t.user_attrs["device_id"], bench.key())
        for t, cfg in zip(trials, configs) if t.user_attrs.get("measured") and t.user_attrs.get("device_id")
    }
    fresh: dict[str, Any] = {}
    if remeasure:
        from effvit_nas.measure.actor import measure_configs

        for m in measure_configs(configs, info.device, bench, store, fresh=True, ray_address=ray_address):
            fresh[m.config_hash] = m
    exported = []
    for t, cfg in zip(trials, configs):
        ua = t.user_attrs
        folder = out / f"trial-{t.number}-{cfg.short_hash()}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(
            f"# EfficientViT {cfg.short_hash()}: study {info.name!r}, trial {t.number} (effvit-nas export)\n" + cfg.to_yaml()
        )
        tk = timm_kwargs(cfg)
        if tk is not None:
            (folder / "timm.json").write_text(json.dumps({"model": "timm.models.efficientvit_msra.EfficientVitMsra", "kwargs": tk}, indent=1) + "\n")
        measurement: dict[str, Any] = {
            "throughput": ua.get("throughput"), "unit": "images/s", "iqr": ua.get("throughput_iqr"),
            "measured": ua.get("measured"), "device": device, "protocol": info.bench, "protocol_text": info.protocol(),
        }
        if stored.get(t.number) is not None:
            measurement["record"] = stored[t.number].to_dict()
        item = Exported(t.number, cfg.short_hash(), folder, ua.get("throughput"), ua.get("accuracy"))
        if cfg.short_hash() in fresh:
            m = fresh[cfg.short_hash()]
            item.remeasured = m.throughput
            measurement["remeasured"] = m.throughput
            measurement["remeasured_record"] = m.to_dict()
            if ua.get("throughput"):
                item.drift = m.throughput / ua["throughput"] - 1
                measurement["drift"] = item.drift
                measurement["drift_flag"] = item.drifted
        (folder / "measurement.json").write_text(json.dumps(measurement, indent=1) + "\n")
        (folder / "proxy.json").write_text(json.dumps({
            "proxy": info.proxy, "value": ua.get("accuracy"), "seconds": ua.get("proxy_seconds"),
            "data": info.data, "train": info.train, "study": info.name, "trial": t.number,
        }, indent=1) + "\n")
        if onnx:
            import torch

            from effvit_nas.model.efficientvit import build_model
            from effvit_nas.model.deploy import export_onnx

            model = build_model(cfg).eval().deploy()
            export_onnx(model, torch.randn(1, 3, cfg.img_size, cfg.img_size), str(folder / "model.onnx"), dynamic_batch=True)
        record = {"measurement": measurement, "pareto_numbers": pareto_numbers}
        (folder / "README.md").write_text(_card(cfg, t, info, record, tk, device))
        exported.append(item)
    index = [
        {"trial": e.trial, "hash": e.config_hash, "folder": e.folder.name, "throughput": e.throughput, "accuracy": e.accuracy,
         "remeasured": e.remeasured, "drift": e.drift}
        for e in exported
    ]
    from sqlalchemy.engine import make_url

    where = make_url(storage).render_as_string(hide_password=True)
    (out / "index.json").write_text(json.dumps({"study": info.name, "storage": where, "device": info.device, "budget": info.budget,
                                                "proxy": info.proxy, "models": index}, indent=1) + "\n")
    return exported

"""Proxy accuracy: every proxy behind one name -> result interface.

| name       | kind     | what                                                       |
|------------|----------|------------------------------------------------------------|
| ``train``  | accuracy | short training from scratch, top-1 on held-out data         |
| ``synflow``| score    | data-free synaptic-flow saliency                            |
| ``naswot`` | score    | activation-pattern kernel log-determinant                   |
| ``gradnorm``| score   | gradient norm at initialisation                             |
| ``dss``    | score    | TF-TAS's DSS indicator for vision transformers (CVPR 2022)   |
| ``params`` | score    | parameter count (baseline)                                  |
| ``macs``   | score    | multiply-accumulates at the proxy resolution (baseline)     |
| ``supernet:DIR`` | accuracy | inherited weights of a trained supernet, BN recalibrated, top-1 |

Higher is better for every proxy. The search's default is ``macs``
(:data:`effvit_nas.search.problem.DEFAULT_PROXY`): on real images it ranked trained accuracy
as well as any proxy measured, at the lowest cost (results/proxy_fidelity_fashion.md).
``params``, ``macs`` and ``synflow`` read no images, only the data's resolution and classes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import SearchSpace
from effvit_nas.data import Dataset
from effvit_nas.errors import UserError
from effvit_nas.model.cost import model_cost
from effvit_nas.proxy import zero_cost
from effvit_nas.proxy.short_training import Reporter, ShortTrainSettings, preload_training, train_proxy
from effvit_nas.supernet.scoring import load_supernet, subnet_top1


@dataclass
class ProxyResult:
    """One proxy evaluation. ``value`` is top-1 in [0, 1] for ``kind == 'accuracy'``."""

    proxy: str
    kind: str
    value: float
    seconds: float
    config_hash: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy" if self.kind == "accuracy" else "score"] = self.value
        return d


def _zero_cost(fn_name: str) -> Callable[..., tuple[float, dict]]:
    def run(config: ArchConfig, data: Dataset, settings: ShortTrainSettings, report: Reporter | None) -> tuple[float, dict]:
        return getattr(zero_cost, fn_name)(config, data, seed=settings.seed), {}

    return run


def _train(config: ArchConfig, data: Dataset, settings: ShortTrainSettings, report: Reporter | None) -> tuple[float, dict]:
    r = train_proxy(config, data, settings, report)
    details = {"steps": r.steps, "final_loss": r.final_loss, "history": r.history, "stopped_early": r.stopped_early}
    return r.top1, {**details, "eval_seconds": r.eval_seconds}


def _params(config: ArchConfig, data: Dataset, settings: ShortTrainSettings, report: Reporter | None) -> tuple[float, dict]:
    return float(model_cost(config.replace(img_size=data.img_size, num_classes=data.num_classes)).params), {}


def _macs(config: ArchConfig, data: Dataset, settings: ShortTrainSettings, report: Reporter | None) -> tuple[float, dict]:
    return float(model_cost(config.replace(img_size=data.img_size, num_classes=data.num_classes)).macs), {}


PROXIES: dict[str, tuple[str, Callable[..., tuple[float, dict]]]] = {
    "train": ("accuracy", _train),
    "synflow": ("score", _zero_cost("synflow")),
    "naswot": ("score", _zero_cost("naswot")),
    "gradnorm": ("score", _zero_cost("grad_norm")),
    "dss": ("score", _zero_cost("dss")),
    "params": ("score", _params),
    "macs": ("score", _macs),
}


IMAGE_FREE = frozenset({"synflow", "params", "macs"})  # see the module doc

SUPERNET = "supernet:"
CALIBRATION_IMAGES = 512  # BN recalibration images of the supernet proxy (OFA uses 2,000 at ImageNet scale)


def _supernet(folder: str) -> Callable[..., tuple[float, dict]]:
    def run(config: ArchConfig, data: Dataset, settings: ShortTrainSettings, report: Reporter | None) -> tuple[float, dict]:
        net, digest = load_supernet(folder)
        top1 = subnet_top1(net, config, data, CALIBRATION_IMAGES, settings.seed)
        return top1, {"supernet": folder, "weights_sha256": digest, "calibration_images": CALIBRATION_IMAGES}

    return run


def check_proxy(name: str, space: SearchSpace | None = None) -> str:
    """The canonical name of proxy ``name`` (``supernet:DIR`` with DIR absolute); UserError for
    an unknown proxy, a folder that holds no trained supernet, or (given the candidates'
    ``space``) a supernet trained over another space."""
    if not name.startswith(SUPERNET):
        if name not in PROXIES:
            raise UserError(f"unknown proxy {name!r} (choose from {', '.join(PROXIES)}, supernet:DIR)")
        return name

    folder = supernet_name(name)[len(SUPERNET) :]
    net, _ = load_supernet(folder)
    if space is not None and [k.choices for k in space.knobs()] != [k.choices for k in net.space.knobs()]:
        raise UserError(f"the supernet in {folder} covers space {net.space.name!r}, not the search's space {space.name!r}")
    return SUPERNET + folder


def supernet_name(name: str) -> str:
    """The canonical name of ``supernet:DIR`` (DIR absolute), without reading the folder: what
    results stored under it are found by once its weights are gone."""
    return SUPERNET + str(Path(name[len(SUPERNET) :]).resolve())


def is_accuracy(name: str | None) -> bool:
    """Whether proxy ``name`` gives top-1 in [0, 1] (shown as a percentage) rather than a score."""
    return name is not None and (name.startswith(SUPERNET) or PROXIES.get(name, ("score",))[0] == "accuracy")


def _proxy(name: str) -> tuple[str, Callable[..., tuple[float, dict]]]:
    if name.startswith(SUPERNET):
        return "accuracy", _supernet(name[len(SUPERNET) :])
    if name not in PROXIES:
        raise UserError(f"unknown proxy {name!r} (choose from {', '.join(PROXIES)}, supernet:DIR)")
    return PROXIES[name]


def preload(name: str) -> None:
    """Import what evaluating proxy ``name`` needs beyond this module (torch and the model
    code), so that a warmed worker's first evaluation does not pay for it."""
    if name == "train":
        preload_training()


def evaluate_proxy(
    name: str,
    config: ArchConfig,
    data: Dataset,
    settings: ShortTrainSettings = ShortTrainSettings(),
    report: Reporter | None = None,
) -> ProxyResult:
    """Evaluate proxy ``name`` on ``config`` with ``data`` (UserError for unknown names)."""
    kind, fn = _proxy(name)
    start = time.perf_counter()
    value, details = fn(config, data, settings, report)
    return ProxyResult(name, kind, float(value), time.perf_counter() - start, config.short_hash(), details)

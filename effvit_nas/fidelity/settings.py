"""What a fidelity study is (:class:`FidelitySettings`) and the parsing of its compact forms:
a throughput band (``M0±20%``) and proxy specs (``naswot``, ``train@200``)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from effvit_nas.data import DataConfig
from effvit_nas.errors import SettingError, UserError, check_seed
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.proxy.registry import SUPERNET, check_proxy, supernet_name
from effvit_nas.proxy.short_training import ShortTrainSettings
from effvit_nas.search.budget import parse_relative
from effvit_nas.search.problem import parse_budget

DEFAULT_PROXIES = ("params", "macs", "synflow", "naswot", "gradnorm", "dss", "train@50", "train@200")
RUNG_DIVISIONS = 9  # successive halving with eta 3 over two rungs: 1/9 and 1/3 of the steps
_BAND = re.compile(r"\s*(.+?)\s*(?:±|\+-|\+/-)\s*(\d+(?:\.\d+)?)\s*%\s*")


@dataclass(frozen=True)
class Band:
    """Throughputs within ``tolerance`` (0.2 = ±20 %) of ``budget`` (any `search --budget` form:
    ``2.5k``, ``M0``, ``1.5xM0``)."""

    budget: str
    tolerance: float

    @classmethod
    def parse(cls, text: str) -> Band:
        m = _BAND.fullmatch(text)
        if not m:
            raise SettingError("FidelitySettings.band", f"{text!r} is not a band: use BUDGET±X%, e.g. M0±20% or 2.5k+-15%")
        budget, tolerance = m.group(1), float(m.group(2)) / 100
        try:
            if parse_relative(budget) is None:
                parse_budget(budget)  # raises for a malformed budget
        except SettingError as e:  # the budget's own setting: named as the band here
            raise SettingError("FidelitySettings.band", f"{text!r}: {e.problem}") from None
        if not 0 < tolerance < 1:
            raise SettingError("FidelitySettings.band", f"{text!r}: the tolerance must be between 0 and 100 %")
        return cls(budget, tolerance)

    def __str__(self) -> str:
        return f"{self.budget}±{100 * self.tolerance:g}%"


@dataclass(frozen=True)
class ProxySpec:
    """A proxy and, for ``train``, its number of steps (``train@200``)."""

    name: str
    steps: int | None = None

    @classmethod
    def parse(cls, text: str, stored: bool = False) -> ProxySpec:
        """``stored``: only to read stored results, so a ``supernet:DIR`` need not be there."""

        if text.strip().startswith(SUPERNET):
            return cls((supernet_name if stored else check_proxy)(text.strip()))
        name, _, steps = text.strip().partition("@")
        try:
            name = check_proxy(name)
        except UserError as e:
            raise SettingError("FidelitySettings.proxies", f"{e}; train@STEPS") from None
        if name != "train" and steps:
            raise SettingError("FidelitySettings.proxies", f"{text!r}: only train takes @STEPS")
        if name == "train":
            if not steps.isdigit() or int(steps) < 1:
                raise SettingError("FidelitySettings.proxies", f"{text!r}: the train proxy needs its steps, e.g. train@200")
            return cls(name, int(steps))
        return cls(name)

    def __str__(self) -> str:
        return self.name if self.steps is None else f"{self.name}@{self.steps}"


@dataclass(frozen=True)
class FidelitySettings:
    """A fidelity study: which architectures, which proxies, against which reference.

    Attributes:
        space: search space the architectures are drawn from (default ``efficientvit64``).
        data: the proxies' data, as a search would use it.
        archs: number of architectures (default 16).
        band: keep only architectures whose measured throughput lies in this band (None: the
            whole space).
        proxies: proxies to score (default :data:`DEFAULT_PROXIES`).
        reference_epochs: the reference trains this many passes over its training images
            (default 5); ``reference_steps`` overrides it with a number of updates.
        reference_per_class: training images per class of the reference (default 1000); it
            is scored on every held-out image of the data (the official test split).
        seeds: reference trainings per architecture with seeds ``seed``, ``seed+1``, ...
            (default 2: their agreement is the ceiling no proxy can beat).
        seed: architecture sampling, data subsampling, proxies' seed (default 0).
        train: the recipe of the train proxy and of the reference (their steps and seed are
            set per run).
        device / bench: where and how throughput is measured (the search's defaults).
        threads: torch threads per evaluation (default: up to 4, at most the CPUs Ray has).
    """

    space: str = "efficientvit64"
    data: DataConfig = DataConfig("fashion-mnist")
    archs: int = 16
    band: Band | None = None
    proxies: tuple[ProxySpec, ...] = tuple(ProxySpec.parse(p) for p in DEFAULT_PROXIES)
    reference_epochs: float = 5.0
    reference_steps: int | None = None
    reference_per_class: int | None = 1000
    seeds: int = 2
    seed: int = 0
    train: ShortTrainSettings = ShortTrainSettings()
    device: str = "cpu"
    bench: BenchSettings = field(default_factory=lambda: BenchSettings.for_device("cpu"))
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.archs < 3:
            raise SettingError("FidelitySettings.archs", f"rank correlations need at least 3 architectures, got {self.archs}")
        check_seed("FidelitySettings.seed", self.seed)
        if self.seeds < 1:
            raise SettingError("FidelitySettings.seeds", f"must be positive, got {self.seeds}")
        if self.reference_steps is None and not self.reference_epochs > 0:
            raise SettingError("FidelitySettings.reference_epochs", f"must be positive, got {self.reference_epochs}")
        if not self.proxies:
            raise SettingError("FidelitySettings.proxies", "name at least one proxy")

    def reference_data(self) -> DataConfig:
        """The reference's data: its training subset, every held-out image."""
        d = self.data
        return DataConfig(d.source, d.img_size, d.num_classes, self.reference_per_class, None, d.seed)

    def reference_run(self, train_images: int, seed_index: int) -> ShortTrainSettings:
        """The reference training of seed ``seed + seed_index`` over ``train_images`` images."""
        steps = self.reference_steps or math.ceil(self.reference_epochs * train_images / self.train.batch)
        return _with(self.train, steps=steps, seed=self.seed + seed_index, threads=self.threads)

    def proxy_run(self, spec: ProxySpec) -> ShortTrainSettings:
        """The train proxy of ``spec``; the longest one also evaluates at every ninth of its
        steps, so that successive halving can be replayed on its history (the evaluations'
        time is recorded and left out of its seconds)."""
        steps = spec.steps or self.train.steps
        longest = max(p.steps or 0 for p in self.proxies)
        every = steps // RUNG_DIVISIONS if steps == longest and steps >= RUNG_DIVISIONS else 0
        return _with(self.train, steps=steps, seed=self.seed, threads=self.threads, eval_every=every)

    def identity(self) -> dict[str, Any]:
        """What every stored result depends on (a resumed study must match it). The number of
        architectures, proxies and seeds may grow between runs: each result has its own key."""
        return {
            "space": self.space,
            "data": asdict(self.data),
            "band": str(self.band) if self.band else None,
            "reference": {"epochs": self.reference_epochs, "steps": self.reference_steps, "per_class": self.reference_per_class},
            "seed": self.seed,
            "train": {k: v for k, v in asdict(self.train).items() if k not in ("steps", "seed", "threads", "eval_every", "eval_at")},
            "device": self.device,
            "bench": asdict(self.bench),
        }


def _with(s: ShortTrainSettings, **changes: Any) -> ShortTrainSettings:
    return ShortTrainSettings(**{**asdict(s), **changes})

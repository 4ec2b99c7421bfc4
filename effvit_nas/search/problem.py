"""What a study is about: device, throughput budget, space, proxy and the protocols behind
both measurements. Two runs may share a study only when their problems are equal, since
otherwise its trials would not be comparable."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from effvit_nas.arch.space import load_space
from effvit_nas.data import DataConfig
from effvit_nas.errors import SettingError
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.proxy.halving import Halving
from effvit_nas.proxy.registry import SUPERNET
from effvit_nas.proxy.short_training import ShortTrainSettings
from effvit_nas.supernet.scoring import load_supernet

OBJECTIVES = ("accuracy", "throughput")  # both maximised, in this order in every trial's values
# ranked trained accuracy on real images as well as any proxy measured, at the lowest cost
# (results/proxy_fidelity_fashion.md): nothing beat it inside a throughput band
DEFAULT_PROXY = "macs"


# M0, the family's fastest model, runs at ~30k images/s on an A100: a budget a thousand times
# that is a typo, and a digit string that overflows a float would otherwise be accepted as inf
MAX_BUDGET = 1e8


def parse_budget(text: str) -> float:
    """``10k-imgs/s``, ``10000img/s``, ``2.5k``, ``300-imgs/s`` -> images per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:-?\s*imgs?\s*/\s*s)?\s*", text)
    if not m:
        raise SettingError(
            "SearchProblem.budget", f"{text!r} is not a budget: use e.g. 10k-imgs/s, 10000img/s, 2.5k, 300-imgs/s, 5ms, M0 or 1.5xM0"
        )
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if value <= 0:
        raise SettingError("SearchProblem.budget", f"{text!r} must be positive")
    if not value <= MAX_BUDGET:  # also a digit string too long for a float (inf)
        raise SettingError("SearchProblem.budget", f"{text[:40]!r} is above {MAX_BUDGET:g} images/s, which no device reaches")
    return value


@dataclass(frozen=True)
class TargetProblem:
    """One deployment target of a study (``search --target``): what :class:`SearchProblem`'s
    device, budget, bench, budget_spec, budget_reference, paired and anchor say for its first
    target, for each target (same meanings). ``spec``: the target as given (``cpu/trace:2xM0``)."""

    device: str
    budget: float
    bench: BenchSettings
    budget_spec: str | None = None
    budget_reference: float | None = None
    paired: bool = False
    anchor: str | None = None
    spec: str = ""

    def __post_init__(self) -> None:
        _check_target(self)

    def identity(self) -> dict[str, Any]:
        """The target as a study stores it (CONTRACT: the ``targets`` list of a multi-target study)."""
        return {
            "spec": self.spec,
            "device": self.device,
            "backend": self.bench.backend,
            "metric": self.bench.metric,
            "budget": self.budget,
            "budget_spec": self.budget_spec,
            "budget_reference": self.budget_reference,
            "bench": asdict(self.bench),
            "paired": self.paired,
            "anchor": self.anchor,
        }


def _check_target(t: TargetProblem | SearchProblem) -> None:
    """SettingError for a budget, anchor or pairing that cannot work (a study's, or one target's)."""
    if not t.budget > 0:
        raise SettingError("SearchProblem.budget", f"must be positive images/s, got {t.budget}")
    if t.anchor is not None and t.budget_spec:
        raise SettingError("SearchProblem.anchor", f"is for an absolute budget; {t.budget_spec}'s preset is its anchor (use --paired)")
    if t.anchor is not None and not t.paired:
        raise SettingError("SearchProblem.anchor", "is only used to pair candidates with (paired=True)")
    if t.paired and not ((t.budget_spec or t.anchor) and t.budget_reference):
        raise SettingError("SearchProblem.paired", "needs a budget relative to a preset (e.g. M0, 1.5xM0) or an anchor (--anchor M0)")


@dataclass(frozen=True)
class SearchProblem:
    """What a study is about.

    Attributes:
        device: target device as the user named it (``cpu``, ``cuda``, ``v100``, ...).
        budget: minimum throughput of a feasible model, images/s on ``device`` (for the latency
            metric, ``bench.metric``, 1000 / the maximum p50 latency in ms at batch 1).
        budget_spec: for a budget relative to a preset, what it was resolved from
            (``"1.5xM0"``, see :mod:`effvit_nas.search.budget`); None for an absolute one.
        budget_reference: the preset's measured throughput behind ``budget_spec`` (or, for an
            absolute budget, ``anchor``'s), images/s.
        space: search-space name or file (as :func:`effvit_nas.arch.space.load_space` takes it).
        proxy: proxy name (:data:`effvit_nas.proxy.registry.PROXIES`), default ``macs`` (it ranked
            trained accuracy best on real images, results/proxy_fidelity_fashion.md).
        data: the proxy's data.
        short_train: settings of the ``train`` proxy (steps, batch, seed).
        bench: the throughput protocol (default: batch 16, 1 thread, fp32, traced).
        halving: successive halving of the ``train`` proxy (:mod:`effvit_nas.proxy.halving`);
            None (default) trains every candidate for all its steps.
        paired: time each candidate in windows alternating with the budget's preset, or with
            ``anchor`` (ratio mode), and take its throughput as the ratio times
            ``budget_reference``, so drift of the machine's speed cancels out of every
            feasibility decision; needs a relative budget or an anchor. Default False (each
            candidate timed alone).
        anchor: for an absolute budget, the preset (``M0``..``M5``, at the space's resolution
            and classes) candidates are paired with; None (default) for none. A relative
            budget's preset is its own anchor.
        proxy_def: what scored a finished study's candidates, as stored (``supernet@<digest>``),
            for a study resumed only to train its models after the proxy's files are gone;
            None (default) works it out from ``proxy``.
        targets: for a study of several deployment targets, every one of them in ``--target``
            order, the first the same as the fields above; () (default) for one target.
    """

    device: str
    budget: float
    space: str = "efficientvit"
    proxy: str = DEFAULT_PROXY
    data: DataConfig = DataConfig()
    short_train: ShortTrainSettings = ShortTrainSettings()
    bench: BenchSettings = BenchSettings(batch=16)
    budget_spec: str | None = None
    budget_reference: float | None = None
    halving: Halving | None = None
    paired: bool = False
    proxy_def: str | None = None
    anchor: str | None = None
    targets: tuple[TargetProblem, ...] = ()

    def __post_init__(self) -> None:
        _check_target(self)
        if self.targets and self.targets[0] != self.first_target():
            raise SettingError("SearchProblem.targets", "the first target must be the study's device, budget and bench")
        if self.halving is not None and self.proxy != "train":
            raise SettingError("SearchProblem.halving", f"applies to the train proxy only, not {self.proxy!r}")

    def first_target(self) -> TargetProblem:
        """The study's (first) target, from its own fields."""
        spec = self.targets[0].spec if self.targets else ""
        return TargetProblem(self.device, self.budget, self.bench, self.budget_spec, self.budget_reference, self.paired, self.anchor, spec)

    def all_targets(self) -> tuple[TargetProblem, ...]:
        """Every target, in order (one for a single-target study)."""
        return self.targets or (self.first_target(),)

    def identity(self) -> dict[str, Any]:
        """The problem as stored in the study (JSON); its keys are what `show`/`studies` read.
        A study of several targets adds ``targets``; one of one target stores none, as before."""
        more = {"targets": [t.identity() for t in self.targets]} if len(self.targets) > 1 else {}
        return {
            "device": self.device,
            "budget": self.budget,
            "space": self.space,
            "space_def": self.space_definition(),
            "proxy": self.proxy,
            "proxy_def": self.proxy_definition(),
            "data": asdict(self.data),
            "train": {k: v for k, v in asdict(self.short_train).items() if k != "eval_at"},  # eval_at: set per run by halving
            "bench": asdict(self.bench),
            "budget_spec": self.budget_spec,
            "budget_reference": self.budget_reference,
            "halving": asdict(self.halving) if self.halving else None,
            "paired": self.paired,
            "anchor": self.anchor,
            **more,
        }

    def proxy_definition(self) -> str:
        """What scores the candidates, wherever its files live: the proxy's name, or for a
        supernet ``supernet@<digest of its weights>`` (a supernet folder that was moved or copied
        resumes its studies; one retrained in place does not)."""

        if self.proxy_def is not None:
            return self.proxy_def
        if not self.proxy.startswith(SUPERNET):
            return self.proxy

        return f"supernet@{load_supernet(self.proxy[len(SUPERNET) :])[1]}"

    def space_definition(self) -> dict[str, Any]:
        """The space's choices (:meth:`SearchSpace.to_dict`): what a study is about, wherever
        the YAML file lives."""

        return load_space(self.space).to_dict()


LATER_KEYS = {"paired": False, "anchor": None}
"""Keys :meth:`SearchProblem.identity` gained after studies were stored without them, with the
value those studies had in effect."""

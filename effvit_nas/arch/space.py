"""Search spaces: the ranges of every EfficientViT knob, and how to draw configs from them.

A space is parametrised so that every point is a valid :class:`ArchConfig` (no rejection
sampling): each stage picks a head count and a per-head width (``head_dim``), and its width is
their product, so divisibility by heads holds by construction; loading a space checks once
that every combination of the remaining knobs is valid too (stem divisibility, integral value
and FFN widths, enough kernels for the largest head count).

The same :class:`Knob` list serves random sampling (:meth:`SearchSpace.sample`) and Optuna's
define-by-run API (:meth:`SearchSpace.suggest`); :meth:`SearchSpace.config_from_params` turns
a trial's params back into the exact config and :meth:`SearchSpace.params_from_config` goes
the other way (e.g. to enqueue the presets).

YAML form (a flat list applies to every stage, a list of lists gives one list per stage)::

    name: efficientvit
    stages: 3
    heads: [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    head_dims: [16, 32, 48, 64, 80, 96, 112]
    depths: [[1, 2], [1, 2, 3], [1, 2, 3, 4]]
    qk_dims: [16]
    v_ratios: [1.0]
    ffn_ratios: [2.0]
    windows: [7]
    kernels: [[7, 5, 3, 3], [5, 5, 5, 5]]
    img_sizes: [224]
    num_classes: 1000
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from effvit_nas.arch.config import (
    MAX_KERNEL,
    MAX_STAGES,
    PRESETS,
    ArchConfig,
    check_img_size,
    check_max,
    check_stage,
    check_stem,
    read_yaml,
)
from effvit_nas.errors import ConfigError

if TYPE_CHECKING:
    import optuna


Value = int | float | str

# Per-stage knobs: YAML key -> (Optuna param prefix, numeric type, default choices).
STAGE_KNOBS: dict[str, tuple[str, type, tuple]] = {
    "heads": ("heads", int, ()),
    "head_dims": ("head_dim", int, ()),
    "depths": ("depth", int, ()),
    "qk_dims": ("qk_dim", int, (16,)),
    "v_ratios": ("v_ratio", float, (1.0,)),
    "ffn_ratios": ("ffn_ratio", float, (2.0,)),
    "windows": ("window", int, (7,)),
}
REQUIRED = ("heads", "head_dims", "depths")
OTHER_KEYS = ("name", "description", "stages", "kernels", "img_sizes", "num_classes")


def _int_range(values: Sequence[Value]) -> tuple[int, int, int] | None:
    """(first, last, step) if ``values`` are >= 2 ints in increasing arithmetic progression."""
    ints = [v for v in values if isinstance(v, int)]
    if len(ints) < 2 or len(ints) != len(values):
        return None
    step = ints[1] - ints[0]
    if step <= 0 or any(b - a != step for a, b in itertools.pairwise(ints)):
        return None
    return ints[0], ints[-1], step


@dataclass(frozen=True)
class Knob:
    """One Optuna parameter: a name and its finite, ordered choices."""

    name: str
    choices: tuple[Value, ...]

    def suggest(self, trial: optuna.Trial) -> Value:
        """Ask an Optuna trial for this knob (int range when evenly spaced, else categorical)."""
        int_range = _int_range(self.choices)
        if int_range is not None:
            first, last, step = int_range
            return trial.suggest_int(self.name, first, last, step=step)
        # optuna types the answer as any choice type (None, bool...); it is one of ours
        return cast(Value, trial.suggest_categorical(self.name, list(self.choices)))

    def sample(self, rng: np.random.Generator) -> Value:
        return self.choices[int(rng.integers(len(self.choices)))]

    def describe(self) -> str:
        int_range = _int_range(self.choices)
        if int_range is not None and len(self.choices) > 3:
            first, last, step = int_range
            return f"{first}..{last} step {step}"
        return ", ".join(map(str, self.choices))


def _kernels_key(kernels: Sequence[int]) -> str:
    return "-".join(map(str, kernels))


@dataclass(frozen=True)
class SearchSpace:
    """Finite EfficientViT search space; every point is a valid :class:`ArchConfig`.

    Per-stage fields hold one tuple of choices per stage. ``kernels`` holds the choices of
    the whole per-head kernel tuple (shared by all stages, as in the paper).
    """

    name: str
    heads: tuple[tuple[int, ...], ...]
    head_dims: tuple[tuple[int, ...], ...]
    depths: tuple[tuple[int, ...], ...]
    qk_dims: tuple[tuple[int, ...], ...]
    v_ratios: tuple[tuple[float, ...], ...]
    ffn_ratios: tuple[tuple[float, ...], ...]
    windows: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]
    img_sizes: tuple[int, ...] = (224,)
    num_classes: int = 1000
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self._check_all_points_valid()

    @property
    def num_stages(self) -> int:
        return len(self.heads)

    # --- knobs and the params <-> config mapping ----------------------------------------
    def knobs(self) -> list[Knob]:
        out = []
        for i in range(self.num_stages):
            for key, (prefix, _, _) in STAGE_KNOBS.items():
                out.append(Knob(f"{prefix}_{i}", getattr(self, key)[i]))
        out.append(Knob("kernels", tuple(_kernels_key(k) for k in self.kernels)))
        out.append(Knob("img_size", self.img_sizes))
        return out

    def config_from_params(self, params: Mapping[str, Value]) -> ArchConfig:
        """The exact config a trial's params (or :meth:`params_from_config`) describe."""
        for knob in self.knobs():
            if knob.name not in params:
                raise ConfigError(f"param {knob.name!r} missing (space {self.name!r})")
            if params[knob.name] not in knob.choices:
                raise ConfigError(f"param {knob.name}={params[knob.name]!r} is not among the space's choices {list(knob.choices)}")
        n = range(self.num_stages)
        heads = tuple(int(params[f"heads_{i}"]) for i in n)
        return ArchConfig(
            widths=tuple(heads[i] * int(params[f"head_dim_{i}"]) for i in n),
            depths=tuple(int(params[f"depth_{i}"]) for i in n),
            heads=heads,
            qk_dims=tuple(int(params[f"qk_dim_{i}"]) for i in n),
            v_ratios=tuple(float(params[f"v_ratio_{i}"]) for i in n),
            ffn_ratios=tuple(float(params[f"ffn_ratio_{i}"]) for i in n),
            kernels=tuple(int(k) for k in str(params["kernels"]).split("-")),
            windows=tuple(int(params[f"window_{i}"]) for i in n),
            img_size=int(params["img_size"]),
            num_classes=self.num_classes,
        )

    def params_from_config(self, config: ArchConfig) -> dict[str, Value]:
        """Inverse of :meth:`config_from_params`; raises ConfigError if ``config`` is outside."""
        if config.num_stages != self.num_stages:
            raise ConfigError(f"config has {config.num_stages} stages, space {self.name!r} has {self.num_stages}")
        if config.num_classes != self.num_classes:
            raise ConfigError(f"config has num_classes {config.num_classes}, space {self.name!r} has {self.num_classes}")
        params: dict[str, Value] = {}
        for i in range(self.num_stages):
            params[f"heads_{i}"] = config.heads[i]
            params[f"head_dim_{i}"] = config.head_dim(i)
            params[f"depth_{i}"] = config.depths[i]
            params[f"qk_dim_{i}"] = config.qk_dims[i]
            params[f"v_ratio_{i}"] = config.v_ratios[i]
            params[f"ffn_ratio_{i}"] = config.ffn_ratios[i]
            params[f"window_{i}"] = config.windows[i]
        used = max(config.heads)
        # Kernels past the largest head count are unused: any choice agreeing on the used
        # prefix builds the same network.
        match = [k for k in self.kernels if k[:used] == config.kernels[:used]]
        if not match:
            raise ConfigError(f"kernels {list(config.kernels)} not among the space's choices")
        params["kernels"] = _kernels_key(next((k for k in match if k == config.kernels), match[0]))
        params["img_size"] = config.img_size
        for knob in self.knobs():
            if params[knob.name] not in knob.choices:
                raise ConfigError(f"{knob.name}={params[knob.name]!r} outside space {self.name!r} (choices {list(knob.choices)})")
        return params

    def contains(self, config: ArchConfig) -> bool:
        try:
            self.params_from_config(config)
        except ConfigError:
            return False
        return True

    def suggest(self, trial: optuna.Trial) -> ArchConfig:
        """Define-by-run: ask ``trial`` (an ``optuna.Trial``) for every knob."""
        return self.config_from_params({k.name: k.suggest(trial) for k in self.knobs()})

    def sample(self, rng: np.random.Generator) -> ArchConfig:
        """One config drawn uniformly over the knobs' choices."""
        return self.config_from_params({k.name: k.sample(rng) for k in self.knobs()})

    def size(self) -> int:
        """Number of distinct parameter combinations."""
        return math.prod(len(k.choices) for k in self.knobs())

    def presets_inside(self) -> dict[str, bool]:
        """For each released preset (at its 224 px, 1000 classes): is it a point of the space?"""
        return {name: self.contains(p.replace(num_classes=self.num_classes)) for name, p in PRESETS.items()}

    # --- validation ----------------------------------------------------------------------
    def _check_all_points_valid(self) -> None:
        """Fail on load if any point would be an invalid config, naming the first bad one.

        Validity only couples knobs within one stage (and kernels with heads), so checking
        per-stage combinations covers the whole product.
        """
        max_heads = max(max(h) for h in self.heads)
        for ks in self.kernels:
            if len(ks) < max_heads:
                raise ConfigError(f"kernels choice {list(ks)} has {len(ks)} entries, but heads go up to {max_heads}")
            for k in ks:
                if k % 2 == 0:
                    raise ConfigError(f"kernels choice {list(ks)}: sizes must be odd, got {k}")
        for i in range(self.num_stages):
            for h, d, v, f in itertools.product(self.heads[i], self.head_dims[i], self.v_ratios[i], self.ffn_ratios[i]):
                try:
                    check_stage(i, h * d, h, v, f)
                    if i == 0:
                        check_stem(h * d)
                except ConfigError as e:
                    raise ConfigError(f"stage {i} point heads={h} head_dim={d} v_ratio={v} ffn_ratio={f} is invalid: {e}") from None
        for s in self.img_sizes:
            check_img_size(s)
        self._check_largest_point()

    def _check_largest_point(self) -> None:
        """Every knob's largest choice together must be a config within ArchConfig's bounds:
        cost grows with each knob, so that point bounds the whole space's size and cost."""
        check_max("stages", self.num_stages, MAX_STAGES)
        for ks in self.kernels:
            for j, k in enumerate(ks):
                check_max(f"kernels choice {list(ks)}[{j}]", k, MAX_KERNEL)
        n = range(self.num_stages)
        heads = tuple(max(self.heads[i]) for i in n)
        widths = tuple(heads[i] * max(self.head_dims[i]) for i in n)
        largest = dict(widths=widths, depths=tuple(max(self.depths[i]) for i in n), heads=heads)
        largest |= {key: tuple(max(getattr(self, key)[i]) for i in n) for key in ("qk_dims", "v_ratios", "ffn_ratios", "windows")}
        try:
            ArchConfig(**largest, kernels=max(self.kernels), img_size=max(self.img_sizes), num_classes=self.num_classes)
        except ConfigError as e:
            raise ConfigError(f"the space's largest point (widths = heads x head_dims = {list(widths)}) is out of bounds: {e}") from None

    # --- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> SearchSpace:
        if not isinstance(data, Mapping):
            raise ConfigError(f"search space: expected a mapping of knobs, got {type(data).__name__}")
        known = set(STAGE_KNOBS) | set(OTHER_KEYS)
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ConfigError(f"unknown search-space key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for k in REQUIRED:
            if k not in data:
                raise ConfigError(f"search space: missing required key {k!r}")
        n = data.get("stages", 3)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"stages: expected a positive integer, got {n!r}")
        check_max("stages", n, MAX_STAGES)  # before per-stage choices are repeated n times
        fields: dict[str, Any] = {}
        for key, (_, typ, default) in STAGE_KNOBS.items():
            fields[key] = _per_stage_choices(key, data.get(key, list(default)), n, typ)
        kernels = data.get("kernels", [[5, 5, 5, 5]])
        if not isinstance(kernels, list) or not kernels:
            raise ConfigError(f"kernels: expected a list of kernel tuples, got {kernels!r}")
        if all(isinstance(k, int) and not isinstance(k, bool) for k in kernels):
            kernels = [kernels]
        fields["kernels"] = tuple(_numbers(f"kernels[{j}]", k, int) for j, k in enumerate(kernels))
        if len(set(fields["kernels"])) != len(fields["kernels"]):
            raise ConfigError("kernels: duplicate kernel tuples")
        fields["img_sizes"] = _choices("img_sizes", data.get("img_sizes", [224]), int)
        num_classes = data.get("num_classes", 1000)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes: expected a positive integer, got {num_classes!r}")
        return cls(
            name=str(data.get("name", Path(source).stem or "space")),
            description=str(data.get("description", "")).strip(),
            num_classes=num_classes,
            source=source,
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "stages": self.num_stages}
        for key in STAGE_KNOBS:
            d[key] = [list(c) for c in getattr(self, key)]
        d["kernels"] = [list(k) for k in self.kernels]
        d["img_sizes"] = list(self.img_sizes)
        d["num_classes"] = self.num_classes
        return d


def _numbers(key: str, value: Any, typ: type) -> tuple:
    """A non-empty list of positive numbers of type ``typ``, in the given order."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: expected a non-empty list, got {value!r}")
    out = []
    for v in value:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (typ is float or float(v).is_integer())
        if not ok or v <= 0:
            raise ConfigError(f"{key}: {v!r} is not a positive {'number' if typ is float else 'integer'}")
        out.append(typ(v))
    return tuple(out)


def _choices(key: str, value: Any, typ: type) -> tuple:
    """A set of choices: sorted (so Optuna sees ordered ranges), no duplicates."""
    out = _numbers(key, value, typ)
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}: duplicate choices in {value!r}")
    return tuple(sorted(out))


def _per_stage_choices(key: str, value: Any, n: int, typ: type) -> tuple[tuple, ...]:
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        if len(value) != n:
            raise ConfigError(f"{key}: {len(value)} per-stage lists given, the space has {n} stages")
        return tuple(_choices(f"{key}[{i}]", v, typ) for i, v in enumerate(value))
    return (_choices(key, value, typ),) * n


_PACKAGE = Path(__file__).resolve().parent.parent
# installed wheels carry the spaces inside the package; a source checkout has them beside it
SPACES_DIR = next(
    (p for p in (_PACKAGE / "search_spaces", _PACKAGE.parent / "search_spaces") if p.is_dir()),
    _PACKAGE / "search_spaces",
)
DEFAULT_SPACE = "efficientvit"


def load_space(spec: str | Path | None = None) -> SearchSpace:
    """A bundled space by name (default ``efficientvit``) or a YAML file path."""
    spec = str(spec or DEFAULT_SPACE)
    path = Path(spec)
    if not path.exists() and (SPACES_DIR / f"{spec}.yaml").exists():
        path = SPACES_DIR / f"{spec}.yaml"
    if not path.exists():
        bundled = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
        raise ConfigError(f"search space {spec!r} is neither a file nor a bundled space ({', '.join(bundled)})")
    data = read_yaml(path, "search space")
    try:
        return SearchSpace.from_dict(data, source=str(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None

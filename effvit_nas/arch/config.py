"""Architecture configs: the typed, validated, hashable description of one EfficientViT.

An :class:`ArchConfig` is what flows through the whole system: the search space produces
them, :func:`effvit_nas.build_model` turns them into networks, the measurement store and
the study key results by :meth:`ArchConfig.short_hash`.

YAML/JSON form (per-stage fields are lists with one entry per stage; a scalar is accepted
as shorthand and broadcast to every stage)::

    widths: [64, 128, 192]      # channels per stage
    depths: [1, 2, 3]           # EfficientViT blocks per stage
    heads: [4, 4, 4]            # attention heads per stage
    qk_dims: [16, 16, 16]       # per-head query/key dim
    v_ratios: [1.0, 1.0, 1.0]   # all heads' value width / stage width
    ffn_ratios: [2.0, 2.0, 2.0] # FFN hidden width / stage width
    kernels: [5, 5, 5, 5]       # per-head depthwise kernel on Q (shared by all stages)
    windows: [7, 7, 7]          # local attention window per stage
    img_size: 224
    num_classes: 1000
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from effvit_nas.errors import ConfigError

PER_STAGE_INT = ("widths", "depths", "heads", "qk_dims", "windows")
PER_STAGE_FLOAT = ("v_ratios", "ffn_ratios")
REQUIRED = ("widths", "depths", "heads")
STEM_STRIDE = 16  # four stride-2 convs
STEM_DIVISOR = 8  # the first stem conv has widths[0] // 8 channels


def _as_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{field}: expected an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{field}: expected an integer, got {value!r}")
    return int(value)


def _as_float(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{field}: expected a number, got {value!r}")
    return float(value)


def _is_integral(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


# far above any resolution EfficientViT is used at (224-512 px); a larger side is a typo that
# would otherwise end in an out-of-memory traceback, or in minutes of work at a mid-size value
MAX_IMG_SIZE = 2048


# Upper bounds of every knob. The released family (M0-M5) spans widths 64-384, depths 1-4,
# heads 2-4, key dim 16, windows 7, kernels 3-7 and ratios 1-2 at 224 px; the bounds sit one
# to two orders of magnitude above it, so any architecture this tool can sensibly search or
# train passes, while a typo (a width of 100000) is refused before a tensor is allocated
# instead of filling the machine's memory or building for minutes.
MAX_STAGES = 6  # the stem divides by 16, each later stage by 2: at 2048 px stage 6 is 4x4
MAX_WIDTH = 4096  # 10x M5's widest stage
MAX_DEPTH = 64  # blocks per stage, 16x M5's deepest
MAX_HEADS = 64
MAX_QK_DIM = 1024  # per-head key dim (paper: 16)
MAX_RATIO = 16.0  # v_ratio and ffn_ratio (paper: 1 and 2)
MAX_KERNEL = 31  # depthwise kernel on Q (paper: 3-7)
MAX_WINDOW = MAX_IMG_SIZE // STEM_STRIDE  # the largest first-stage feature map; a window covering it is global
MAX_NUM_CLASSES = 100_000  # ImageNet-21k has 21,841
# Whole-model budget, from what one GPU can train: AdamW keeps weights, gradients and two
# moments in fp32 (16 bytes a parameter), so 1e9 parameters take 16 GB before any
# activation, a fifth of an 80 GB H100. MACs: 1e12 per image is ~2000x M5 (522 M) and
# about ViT-H at 448 px; a batch of 64 such images already needs minutes per step.
MAX_PARAMS = 1_000_000_000
MAX_MACS = 1_000_000_000_000


def check_max(field: str, value: float, limit: float) -> None:
    if value > limit:
        raise ConfigError(f"{field}: must be at most {limit:g}, got {value:g}")


def check_img_size(img_size: int) -> None:
    if not STEM_STRIDE <= img_size <= MAX_IMG_SIZE:
        raise ConfigError(f"img_size: must be between {STEM_STRIDE} and {MAX_IMG_SIZE} px, got {img_size}")


def check_stem(width0: int) -> None:
    if width0 % STEM_DIVISOR:
        raise ConfigError(f"widths[0]: stem widths are widths[0]/8, /4, /2, so it must be divisible by 8, got {width0}")


def check_stage(i: int, width: int, heads: int, v_ratio: float, ffn_ratio: float) -> None:
    """The rules that couple one stage's knobs (positivity is checked separately)."""
    if width % heads:
        raise ConfigError(f"widths[{i}]: {width} is not divisible by heads[{i}]={heads}")
    v = v_ratio * width / heads
    if not _is_integral(v) or round(v) < 1:
        raise ConfigError(
            f"v_ratios[{i}]: per-head value dim v_ratio*width/heads = {v_ratio}*{width}/{heads} = {v:g} is not a positive integer"
        )
    f = ffn_ratio * width
    if not _is_integral(f) or round(f) < 1:
        raise ConfigError(f"ffn_ratios[{i}]: hidden width ffn_ratio*width = {ffn_ratio}*{width} = {f:g} is not a positive integer")


@dataclass(frozen=True)
class ArchConfig:
    """One EfficientViT architecture. Immutable; validated on construction.

    Attributes:
        widths: channels of each stage.
        depths: EfficientViT blocks in each stage.
        heads: attention heads in each stage; each head sees ``width / heads`` channels.
        qk_dims: per-head query/key dimension of each stage (paper: 16).
        v_ratios: total value width of all heads / stage width (paper: 1.0), so the per-head
            value dim is ``v_ratio * width / heads``.
        ffn_ratios: FFN hidden width / stage width (paper: 2.0).
        kernels: depthwise kernel on Q for head ``j`` is ``kernels[j]``; odd sizes, at least
            as many entries as the largest head count.
        windows: local attention window side per stage (paper: 7); a stage whose feature map
            is no larger than its window attends globally.
        img_size: square input side in pixels, fixed at build time.
        num_classes: classifier outputs.
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    # Scalar defaults are the paper's values, broadcast to every stage on construction.
    qk_dims: tuple[int, ...] = 16  # type: ignore[assignment]
    v_ratios: tuple[float, ...] = 1.0  # type: ignore[assignment]
    ffn_ratios: tuple[float, ...] = 2.0  # type: ignore[assignment]
    kernels: tuple[int, ...] = (5, 5, 5, 5)
    windows: tuple[int, ...] = 7  # type: ignore[assignment]
    img_size: int = 224
    num_classes: int = 1000

    def __post_init__(self) -> None:
        # Normalise types first so that equal configs compare and hash equal whether they
        # came from YAML ints, Python floats or tuples/lists.
        if not isinstance(self.widths, (list, tuple)):
            raise ConfigError(f"widths: expected a list with one width per stage, got {self.widths!r}")
        n = len(self.widths)
        for name in PER_STAGE_INT + PER_STAGE_FLOAT:
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                value = [value] * n
            conv = _as_float if name in PER_STAGE_FLOAT else _as_int
            object.__setattr__(self, name, tuple(conv(f"{name}[{i}]", v) for i, v in enumerate(value)))
        if not isinstance(self.kernels, (list, tuple)):
            raise ConfigError(f"kernels: expected a list of odd kernel sizes, got {self.kernels!r}")
        object.__setattr__(self, "kernels", tuple(_as_int(f"kernels[{i}]", k) for i, k in enumerate(self.kernels)))
        object.__setattr__(self, "img_size", _as_int("img_size", self.img_size))
        object.__setattr__(self, "num_classes", _as_int("num_classes", self.num_classes))
        self._validate()

    def _validate(self) -> None:
        n = len(self.widths)
        if n == 0:
            raise ConfigError("widths: at least one stage is required")
        for name in PER_STAGE_INT + PER_STAGE_FLOAT:
            values = getattr(self, name)
            if len(values) != n:
                raise ConfigError(f"{name}: expected {n} values (one per stage, like widths), got {len(values)}")
            for i, v in enumerate(values):
                if v <= 0:
                    raise ConfigError(f"{name}[{i}]: must be positive, got {v}")
        if not self.kernels:
            raise ConfigError("kernels: at least one kernel size is required")
        for j, k in enumerate(self.kernels):
            if k <= 0 or k % 2 == 0:
                raise ConfigError(f"kernels[{j}]: must be a positive odd size, got {k}")
        check_img_size(self.img_size)
        if self.num_classes <= 0:
            raise ConfigError(f"num_classes: must be positive, got {self.num_classes}")
        self._check_bounds()
        check_stem(self.widths[0])
        if max(self.heads) > len(self.kernels):
            raise ConfigError(f"heads: stage with {max(self.heads)} heads needs as many kernels, but kernels has {len(self.kernels)}")
        for i in range(n):
            check_stage(i, self.widths[i], self.heads[i], self.v_ratios[i], self.ffn_ratios[i])

    def _check_bounds(self) -> None:
        """Every knob within the MAX_* bounds, then the whole model within MAX_PARAMS/MAX_MACS
        (estimated by arithmetic: nothing is allocated)."""
        check_max("widths (number of stages)", self.num_stages, MAX_STAGES)
        limits: dict[str, float] = {"widths": MAX_WIDTH, "depths": MAX_DEPTH, "heads": MAX_HEADS}
        limits |= {"qk_dims": MAX_QK_DIM, "windows": MAX_WINDOW, "v_ratios": MAX_RATIO, "ffn_ratios": MAX_RATIO}
        for name, limit in limits.items():
            for i, v in enumerate(getattr(self, name)):
                check_max(f"{name}[{i}]", v, limit)
        for j, k in enumerate(self.kernels):
            check_max(f"kernels[{j}]", k, MAX_KERNEL)
        check_max("num_classes", self.num_classes, MAX_NUM_CLASSES)
        params, macs = estimate_cost(self)
        if params > MAX_PARAMS or macs > MAX_MACS:
            raise ConfigError(
                f"config: about {params / 1e6:,.0f} M parameters and {macs / 1e9:,.0f} G MACs per image, above what one GPU "
                f"can train ({MAX_PARAMS / 1e6:,.0f} M parameters, {MAX_MACS / 1e9:,.0f} G MACs); reduce widths, depths or ratios"
            )

    # --- derived quantities -------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def head_dim(self, stage: int) -> int:
        """Input channels of each head (the split width) in ``stage``."""
        return self.widths[stage] // self.heads[stage]

    def v_dim(self, stage: int) -> int:
        """Per-head value dim in ``stage``."""
        return round(self.v_ratios[stage] * self.widths[stage] / self.heads[stage])

    def ffn_hidden(self, stage: int) -> int:
        return round(self.ffn_ratios[stage] * self.widths[stage])

    def resolutions(self) -> tuple[int, ...]:
        """Feature-map side of each stage (conv arithmetic: stem /16, then stride 2 per stage)."""
        r = self.img_size
        for _ in range(4):
            r = (r - 1) // 2 + 1
        out = [r]
        for _ in range(1, self.num_stages):
            r = (r - 1) // 2 + 1
            out.append(r)
        return tuple(out)

    # --- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Canonical plain form: lists, ints for int fields, floats for ratios."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)}

    def canonical_json(self) -> str:
        """Sorted-key compact JSON of the architecture as built.

        Kernels past the largest head count are never used, so they are left out: two
        configs that build the same network serialise (and hash) the same.
        """
        d = self.to_dict()
        d["kernels"] = d["kernels"][: max(self.heads)]
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def short_hash(self) -> str:
        """Stable 12-hex-digit id: equal architectures give equal ids on every machine."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    def same_architecture(self, other: ArchConfig) -> bool:
        return self.canonical_json() == other.canonical_json()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: expected a mapping of fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ConfigError(f"config: missing required key {missing[0]!r}")
        return cls(**dict(data))


def estimate_cost(config: ArchConfig) -> tuple[int, int]:
    """(params, MACs per image) of ``config`` by arithmetic, without building it.

    Counts the terms that grow with the knobs (stem, FFNs, QKV and projections, depthwise
    convs, patch merging, attention matmuls, classifier); norms, biases, the squeeze-excite
    MACs and the Q depthwise convs are left out; on the presets it is within 5 % of
    :func:`effvit_nas.model.cost.model_cost`, close enough to refuse configs by.
    """
    res = config.resolutions()
    w0, side = config.widths[0], config.img_size
    # the stem: four 3x3 stride-2 convs, 3 -> w0/8 -> w0/4 -> w0/2 -> w0 channels
    stem = [(3 * w0 // 8, side // 2), (w0 // 8 * w0 // 4, side // 4), (w0 // 4 * w0 // 2, side // 8), (w0 // 2 * w0, side // 16)]
    params = sum(9 * c for c, _ in stem)
    macs = sum(9 * c * r * r for c, r in stem)
    for i in range(config.num_stages):
        w, f, h, q, n = config.widths[i], config.ffn_hidden(i), config.heads[i], config.qk_dims[i], res[i] ** 2
        v = config.v_dim(i)
        # two FFNs, the heads' QKV, the projection, two 3x3 depthwise convs
        block = 4 * w * f + w * (2 * q + v) + h * v * w + 18 * w
        stage = config.depths[i] * block
        win = min(config.windows[i], res[i])
        windows = math.ceil(res[i] / win) ** 2
        attn = config.depths[i] * windows * h * win**4 * (q + v)
        if i > 0:  # downsampling: FFN at the previous width, patch merging (4x expansion, SE), FFN
            p = config.widths[i - 1]
            prev = 2 * p * config.ffn_hidden(i - 1)
            params += prev + 12 * p * p + 4 * p * w + 2 * w * f
            macs += prev * res[i - 1] ** 2 + (8 * p * p + 4 * p * w + 2 * w * f) * n + 4 * p * p * res[i - 1] ** 2
        params += stage
        macs += stage * n + attn
    head = config.widths[-1] * config.num_classes
    return params + head, macs + head


PRESETS: dict[str, ArchConfig] = {
    "M0": ArchConfig(widths=(64, 128, 192), depths=(1, 2, 3), heads=(4, 4, 4), kernels=(5, 5, 5, 5)),
    "M1": ArchConfig(widths=(128, 144, 192), depths=(1, 2, 3), heads=(2, 3, 3), kernels=(7, 5, 3, 3)),
    "M2": ArchConfig(widths=(128, 192, 224), depths=(1, 2, 3), heads=(4, 3, 2), kernels=(7, 5, 3, 3)),
    "M3": ArchConfig(widths=(128, 240, 320), depths=(1, 2, 3), heads=(4, 3, 4), kernels=(5, 5, 5, 5)),
    "M4": ArchConfig(widths=(128, 256, 384), depths=(1, 2, 3), heads=(4, 4, 4), kernels=(7, 5, 3, 3)),
    "M5": ArchConfig(widths=(192, 288, 384), depths=(1, 3, 4), heads=(3, 3, 4), kernels=(7, 5, 3, 3)),
}
"""The released EfficientViT M0-M5 (ImageNet-1k, 224 px, key dim 16, window 7)."""


def preset(name: str) -> ArchConfig:
    key = name.upper().removeprefix("EFFICIENTVIT_")
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)})")
    return PRESETS[key]


def preset_name(config: ArchConfig) -> str | None:
    """The preset this config equals, ignoring img_size and num_classes, or None."""
    for name, p in PRESETS.items():
        if p.same_architecture(config.replace(img_size=p.img_size, num_classes=p.num_classes)):
            return name
    return None


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML (or JSON) file, turning every failure into a one-line ConfigError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"cannot parse {what} file {str(path)!r}{at}: {problem}") from None


def load_config(spec: str | Path) -> ArchConfig:
    """A preset name (``M0``..``M5``), the path of a YAML/JSON config file, or an export folder
    holding ``config.yaml``."""
    s = str(spec)
    path = Path(s)
    if path.is_dir():  # an export folder (effvit-nas export) holds its config.yaml
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"folder {s!r} has no config.yaml (expected an `effvit-nas export` model folder)")
        path = path / "config.yaml"
        s = str(path)
    if not path.exists() and s.upper().removeprefix("EFFICIENTVIT_") in PRESETS:
        return preset(s)
    if not path.exists() and path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"{s!r} is neither a preset ({', '.join(PRESETS)}) nor an existing config file")
    data = read_yaml(path, "config")
    try:
        return ArchConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{s}: {e}") from None

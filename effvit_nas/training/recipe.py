"""What a training run computes: the paper's recipe (brief: "The training recipe").

timm's utilities implement it (see :mod:`effvit_nas.training.loop`): AdamW without decay on 1-D
params and attention biases, lr scaled by total batch / 512, warm-up then cosine stepped per
update, RandAugment with bicubic resizing and random erasing, Mixup 0.8 / CutMix 1.0 with
label smoothing, repeated augmentation, model EMA, adaptive gradient clipping, mixed precision
on GPU, optional soft distillation. How a run executes (workers, GPU, Ray, output folder) is
:class:`effvit_nas.training.runner.TrainExecution`, kept apart as Ray Train keeps
``train_loop_config`` apart from ``ScalingConfig`` / ``RunConfig``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from effvit_nas.errors import SettingError, check_seed

if TYPE_CHECKING:
    from effvit_nas.data import DataConfig


@dataclass(frozen=True)
class TrainRecipe:
    """The training recipe; defaults are the paper's (brief), sized down only where noted.

    Attributes:
        epochs: passes over the training set (paper: 300).
        batch: total images per update over all workers (paper: 2048; default 256).
        lr: peak learning rate; None: ``base_lr * batch / 512`` (paper: 1e-3 per 512).
        warmup_epochs: None: 5 (paper) for >= 50 epochs, else epochs // 10.
        warmup_lr, min_lr: start of the warm-up and floor of the cosine (paper: 1e-6, 1e-5).
        weight_decay, eps: AdamW (paper: 0.025, 1e-8).
        clip_grad: adaptive gradient clipping factor (paper: 0.02; 0 disables).
        auto_augment: timm RandAugment spec (paper: rand-m9-mstd0.5-inc1; "" disables). The
            default adds ``mmax9``: magnitude noise is clipped at 9 instead of 10, because at 10
            timm's increasing posterize keeps 0 bits, which Pillow >= 11 rejects.
        reprob: random-erasing probability (paper: 0.25).
        scale_min: smallest crop area of the random-resized crop (timm/paper: 0.08; 1.0 keeps
            the whole image, only the aspect ratio varies).
        crop_pad: 0 (paper): random-resized crop. N > 0: a random crop of the image padded by N
            px (reflect) instead, the CIFAR-style crop, for small images whose labels a change of
            scale or aspect alters (the synthetic data: its classes are grating frequencies).
        hflip: horizontal-flip probability (timm/paper: 0.5).
        color_jitter: colour-jitter strength (timm: 0.4; timm turns it off under RandAugment).
        mixup, cutmix: Beta alphas (paper: 0.8, 1.0; both 0 disable mixing).
        smoothing: label smoothing (paper: 0.1).
        repeated_aug: repeats per image per epoch (paper: 3; 1 disables).
        ema_decay: model EMA decay (paper: 0.99996; 0 disables), with timm's warm-up.
        distill_alpha, distill_tau: weight and temperature of the soft-distillation term.
        amp: mixed precision (fp16 autocast + grad scaling) on GPU; ignored on CPU.
        seed: init, data order, augmentation.
    """

    epochs: int = 300
    batch: int = 256
    lr: float | None = None
    base_lr: float = 1e-3
    warmup_epochs: int | None = None
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    weight_decay: float = 0.025
    eps: float = 1e-8
    clip_grad: float = 0.02
    auto_augment: str = "rand-m9-mstd0.5-inc1-mmax9"
    reprob: float = 0.25
    scale_min: float = 0.08
    crop_pad: int = 0
    hflip: float = 0.5
    color_jitter: float = 0.4
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    repeated_aug: int = 3
    ema_decay: float = 0.99996
    distill_alpha: float = 0.5
    distill_tau: float = 1.0
    amp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_seed("TrainRecipe.seed", self.seed)
        if self.epochs < 1:
            raise SettingError("TrainRecipe.epochs", f"must be positive, got {self.epochs}")
        if self.batch < 2:
            raise SettingError("TrainRecipe.batch", f"must be at least 2, got {self.batch}")
        if self.lr is not None and self.lr <= 0:
            raise SettingError("TrainRecipe.lr", f"must be positive, got {self.lr}")
        if not 0 < self.scale_min <= 1:
            raise SettingError("TrainRecipe.scale_min", f"must be in (0, 1], got {self.scale_min}")
        if self.crop_pad < 0:
            raise SettingError("TrainRecipe.crop_pad", f"must be >= 0 px, got {self.crop_pad}")
        for name in ("hflip", "reprob", "distill_alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise SettingError(f"TrainRecipe.{name}", f"is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("smoothing", "ema_decay"):  # 1 would erase the labels / freeze the EMA model
            if not 0 <= getattr(self, name) < 1:
                raise SettingError(f"TrainRecipe.{name}", f"must be in [0, 1), got {getattr(self, name)}")
        for name in ("warmup_lr", "min_lr", "weight_decay", "eps", "clip_grad", "color_jitter", "mixup", "cutmix"):
            if not getattr(self, name) >= 0:  # written so that NaN fails too
                raise SettingError(f"TrainRecipe.{name}", f"must be >= 0, got {getattr(self, name)}")
        if not self.base_lr > 0:
            raise SettingError("TrainRecipe.base_lr", f"must be positive, got {self.base_lr}")
        if self.repeated_aug < 1:
            raise SettingError("TrainRecipe.repeated_aug", f"is repeats per image, at least 1 (1 disables), got {self.repeated_aug}")
        if self.distill_tau <= 0:
            raise SettingError("TrainRecipe.distill_tau", f"must be positive, got {self.distill_tau}")

    def resolved(self, workers: int) -> TrainRecipe:
        """lr and warm-up filled in; the batch rounded to a multiple of 2 x workers (Mixup
        mixes pairs within each worker's batch)."""
        if workers < 1:
            raise SettingError("TrainExecution.workers", f"must be positive, got {workers}")
        per = max(2, (self.batch // workers) // 2 * 2)
        lr = self.lr if self.lr is not None else self.base_lr * per * workers / 512
        warm = self.warmup_epochs if self.warmup_epochs is not None else (5 if self.epochs >= 50 else self.epochs // 10)
        return replace(self, batch=per * workers, lr=lr, warmup_epochs=min(warm, self.epochs - 1) if self.epochs > 1 else 0)


def data_defaults(data: DataConfig) -> tuple[dict[str, Any], str]:
    """Recipe knobs that ``data`` needs changed from the paper's, and why ("" when none).

    The synthetic data's classes are grating orientations and frequencies: the random-resized
    crop (area 8-100 %, aspect 3/4-4/3) rescales and skews the gratings, so it changes labels,
    and without any crop the models memorise the training images (measured in
    results/training.md). A padded random crop translates without rescaling.
    """
    if data.source == "synthetic":
        return (
            {"crop_pad": 4},
            "synthetic data: crop_pad=4 instead of the random-resized crop, which changes its labels (grating frequencies); set crop_pad=0 for the paper's crop",
        )
    return {}, ""


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _field_type(name: str) -> type:
    """The type of TrainRecipe field ``name``, ``X`` for ``X | None``."""
    hint = typing.get_type_hints(TrainRecipe)[name]
    if isinstance(hint, types.UnionType):
        hint = next(t for t in hint.__args__ if t is not type(None))
    return hint


def _parse_value(key: str, value: str) -> Any:
    kind = _field_type(key)
    if kind is bool:
        if value.lower() not in _TRUE + _FALSE:
            raise SettingError(f"TrainRecipe.{key}", f"must be true or false, got {value!r}")
        return value.lower() in _TRUE
    if kind is str:
        return value
    try:
        return kind(value)
    except ValueError:
        raise SettingError(f"TrainRecipe.{key}", f"must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as typed TrainRecipe fields (``{"mixup": 0.0}`` for ``mixup=0``).

    Dashes in KEY count as underscores. A malformed pair or unknown KEY is a SettingError of
    ``parse_overrides.pairs``, a VALUE of the wrong type one of ``TrainRecipe.<KEY>``.
    """
    names = [f.name for f in dataclasses.fields(TrainRecipe)]
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise SettingError("parse_overrides.pairs", f"{pair!r}: expected KEY=VALUE with KEY one of {', '.join(names)}")
        out[key] = _parse_value(key, value)
    return out


def recipe_for(
    data: DataConfig, options: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None, workers: int = 1
) -> tuple[TrainRecipe, str]:
    """The paper's recipe with ``options``, then what ``data`` needs (:func:`data_defaults`),
    then ``overrides`` (later ones win), resolved for ``workers`` (:meth:`TrainRecipe.resolved`).

    Returns the recipe and a note for the user: why a data default replaced a paper value, or
    "" when none did (none applies, or ``overrides`` set them all).
    """
    options, overrides = dict(options or {}), dict(overrides or {})
    needed, why = data_defaults(data)
    note = why if any(k not in overrides for k in needed) else ""
    return TrainRecipe(**{**options, **needed, **overrides}).resolved(workers), note

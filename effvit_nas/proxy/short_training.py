"""The short-training proxy: train a candidate from scratch for a fixed number of steps.

The paper's optimiser family, scaled down: AdamW (weight decay off for 1-D params and the
attention biases, via timm's ``create_optimizer_v2`` and the model's ``no_weight_decay``),
linear warm-up then cosine decay (timm's ``CosineLRScheduler``, stepped per update), label
smoothing (timm's ``LabelSmoothingCrossEntropy``), random flips and padded crops. Returns
top-1 on the held-out split. Deterministic under a seed on a fixed number of threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from effvit_nas.arch.config import ArchConfig
from effvit_nas.data import Dataset, normalize
from effvit_nas.errors import SettingError, check_seed
from effvit_nas.model.accuracy import evaluate
from effvit_nas.model.efficientvit import build_model

Reporter = Callable[[int, float], bool]
"""Called as ``report(step, top1)`` at intermediate evaluations; returning True stops."""


@dataclass(frozen=True)
class ShortTrainSettings:
    """Budget and recipe of one proxy training run.

    Attributes:
        steps: optimiser updates (default 200).
        batch: images per update (default 64).
        lr: peak learning rate (default 2e-3).
        weight_decay: AdamW decay of >= 2-D weights (paper: 0.025).
        warmup_steps: linear warm-up from lr/100 (default 10 % of steps).
        min_lr: cosine floor (default lr / 100).
        label_smoothing: (paper: 0.1).
        eval_every: intermediate evaluations every N steps for early stopping (0: none).
        eval_at: intermediate evaluations at these steps too (successive halving's rungs).
        seed: weight init, data order and augmentation.
        threads: torch intra-op threads (None: leave as is).
    """

    steps: int = 200
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.025
    warmup_steps: int | None = None
    min_lr: float | None = None
    label_smoothing: float = 0.1
    eval_every: int = 0
    eval_at: tuple[int, ...] = ()
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        check_seed("ShortTrainSettings.seed", self.seed)
        for name in ("steps", "batch"):
            if getattr(self, name) < 1:
                raise SettingError(f"ShortTrainSettings.{name}", f"must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise SettingError("ShortTrainSettings.lr", f"must be positive, got {self.lr}")
        if self.eval_every < 0:
            raise SettingError("ShortTrainSettings.eval_every", f"must be >= 0 (0: no intermediate evaluation), got {self.eval_every}")


@dataclass
class ShortTrainResult:
    """What one short training run reached (not :class:`effvit_nas.training.runner.TrainResult`,
    the full training's result)."""

    top1: float  # held-out accuracy in [0, 1]
    steps: int  # updates actually run (fewer if stopped early)
    seconds: float
    final_loss: float
    history: list[tuple[int, float]]  # (step, top1) of intermediate evaluations
    stopped_early: bool
    eval_seconds: float = 0.0  # of ``seconds``, spent on intermediate evaluations


def _augment(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and a random crop of the reflect-padded batch (same shift per batch
    row is not needed: one shift per image via unfold would cost more than it buys here)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
    return xp[:, :, dy : dy + h, dx : dx + w]


def preload_training() -> None:
    """Import timm's optimiser, schedule and loss now (about 7 s of CPU: timm brings
    torchvision and torch._dynamo), for a worker warmed before its first training."""


def _optimizer(model: torch.nn.Module, settings: ShortTrainSettings) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no decay on 1-D params and attention biases) and its per-update cosine schedule."""
    from timm.optim import create_optimizer_v2  # lazy: timm loads torch
    from timm.scheduler import CosineLRScheduler  # lazy: timm loads torch

    opt = create_optimizer_v2(model, "adamw", lr=settings.lr, weight_decay=settings.weight_decay)
    warm = settings.warmup_steps if settings.warmup_steps is not None else max(1, settings.steps // 10)
    sched = CosineLRScheduler(
        opt,
        t_initial=settings.steps,
        lr_min=settings.min_lr if settings.min_lr is not None else settings.lr / 100,
        warmup_t=warm,
        warmup_lr_init=settings.lr / 100,
        t_in_epochs=False,
    )
    return opt, sched


def _batches(data: Dataset, batch: int, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless augmented, normalised training batches: a fresh permutation of the training set
    once the current one has no full batch left (its tail is skipped)."""
    n = len(data.train_y)
    order, pos = torch.randperm(n, generator=g), 0
    while True:
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos : pos + batch]
        pos += batch
        yield normalize(_augment(data.train_x[idx], g)).contiguous(memory_format=torch.channels_last), data.train_y[idx]


def _run_steps(model: torch.nn.Module, data: Dataset, settings: ShortTrainSettings, report: Reporter | None) -> ShortTrainResult:
    """The training loop; ``top1`` and ``seconds`` of the result are left for the caller."""
    from timm.loss import LabelSmoothingCrossEntropy  # lazy: timm loads torch

    opt, sched = _optimizer(model, settings)
    loss_fn = LabelSmoothingCrossEntropy(settings.label_smoothing)
    batches = _batches(data, settings.batch, torch.Generator().manual_seed(settings.seed + 1))
    result = ShortTrainResult(top1=math.nan, steps=0, seconds=math.nan, final_loss=math.nan, history=[], stopped_early=False)
    for step in range(1, settings.steps + 1):
        x, y = next(batches)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step_update(step)
        result.steps, result.final_loss = step, loss.item()
        if step < settings.steps and ((settings.eval_every and step % settings.eval_every == 0) or step in settings.eval_at):
            start = time.perf_counter()
            acc = evaluate(model, data.val_x, data.val_y)
            result.eval_seconds += time.perf_counter() - start
            result.history.append((step, acc))
            if report is not None and report(step, acc):
                result.stopped_early = True
                break
    return result


def train_proxy(
    config: ArchConfig, data: Dataset, settings: ShortTrainSettings = ShortTrainSettings(), report: Reporter | None = None
) -> ShortTrainResult:
    """Train ``config`` (rebuilt at the data's resolution and class count) and evaluate it."""
    start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        torch.manual_seed(settings.seed)
        model = build_model(config.replace(img_size=data.img_size, num_classes=data.num_classes)).train()
        model = model.to(memory_format=torch.channels_last)  # 1.6-2x faster training steps on CPU (results/training_speed_cpu.md)
        result = _run_steps(model, data, settings, report)
        result.top1 = evaluate(model, data.val_x, data.val_y)
    finally:
        torch.set_num_threads(prev_threads)
    result.seconds = time.perf_counter() - start
    return result

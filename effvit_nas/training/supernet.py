"""Training a supernet once: the sandwich rule with in-place distillation, on Ray Train.

Every update runs the largest subnet on the labels, then the smallest and
``SupernetSettings.random_subnets`` random subnets of the space, each distilled from the
largest's (detached) predictions, and steps once on the summed gradients (BigNAS's sandwich
rule, OFA's in-place distillation). A subnet whose resolution is not the data's sees the batch
resized to its own. All ranks draw the same subnets at each update (seeded by update number),
so DDP reduces the gradients of one subnet family. Epoch checkpoints, ``--resume`` and the
recipe are those of :mod:`effvit_nas.training`.

The folder a run leaves (``SUPERNET_DIR``): ``supernet.safetensors`` (the shared weights),
``space.yaml`` (the space they cover), ``supernet.json`` (recipe, settings, data, history)
and Ray Train's ``checkpoints/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from effvit_nas.arch.space import SearchSpace
from effvit_nas.data import DataConfig
from effvit_nas.errors import SettingError, UserError
from effvit_nas.supernet.model import Supernet, container_config, largest_config, smallest_config
from effvit_nas.supernet.scoring import RECORD_FILE, SPACE_FILE, WEIGHTS_FILE, subnet_top1
from effvit_nas.training.loop import MODEL_FILE, Worker, run_worker
from effvit_nas.training.recipe import TrainRecipe
from effvit_nas.training.runner import Progress, TrainExecution, TrainResult, execute


@dataclass(frozen=True)
class SupernetSettings:
    """What the sandwich rule does besides the recipe.

    Attributes:
        random_subnets: random subnets per update besides the largest and the smallest
            (default 2, BigNAS's choice).
        distill: the smallest and random subnets learn from the largest's predictions
            (in-place distillation, default); False: all learn from the labels.
        calibration_images: training images that recalibrate BatchNorm before a subnet is
            evaluated (default 512).
    """

    random_subnets: int = 2
    distill: bool = True
    calibration_images: int = 512

    def __post_init__(self) -> None:
        if self.random_subnets < 0:
            raise SettingError("SupernetSettings.random_subnets", f"must be 0 or more, got {self.random_subnets}")
        if self.calibration_images < 1:
            raise SettingError("SupernetSettings.calibration_images", f"must be positive, got {self.calibration_images}")


class SupernetWorker(Worker):
    """A Ray Train worker whose network is the supernet of ``cfg['space']``."""

    def __init__(self, cfg: dict[str, Any]):
        self.space = SearchSpace.from_dict(cfg["space"])
        self.settings = SupernetSettings(**cfg["supernet"])
        self.largest, self.smallest = largest_config(self.space), smallest_config(self.space)
        super().__init__(cfg)

    def build_net(self, arch: Any) -> Any:
        if self.data.num_classes != self.space.num_classes:
            raise UserError(f"space {self.space.name!r} has {self.space.num_classes} classes, the data {self.data.num_classes}")
        return Supernet(self.space)

    def subnets(self, update: int) -> list[Any]:
        import numpy as np  # lazy: numpy only on this path

        rng = np.random.default_rng([self.recipe.seed, update])  # the same draws on every rank
        return [self.largest, self.smallest, *(self.space.sample(rng) for _ in range(self.settings.random_subnets))]

    def train_batch(self, net: Any, x: Any, y: Any, update: int) -> float:
        import torch  # lazy: torch costs seconds to import
        import torch.nn.functional as F  # lazy: torch costs seconds to import

        r, classes = self.recipe, self.data.num_classes
        self.optimizer.zero_grad(set_to_none=True)
        target = F.one_hot(y, classes).float() * (1 - r.smoothing) + r.smoothing / classes
        first = None
        for config in self.subnets(update):
            xs = x if config.img_size == x.shape[-1] else F.interpolate(x, size=config.img_size, mode="bilinear", antialias=True)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits = net(xs, config)
                loss = self.soft_ce(logits, target)
            self.scaler.scale(loss).backward()
            if first is None:
                first = loss.item()
                if self.settings.distill:
                    target = logits.detach().float().softmax(1)
        self.update(update)
        if first is None:
            raise ValueError("no subnet was trained")
        return first

    def evaluate(self) -> dict[str, Any]:
        """Held-out top-1 of the largest (``top1``) and smallest subnet, BN recalibrated."""
        n = self.settings.calibration_images
        small = subnet_top1(self.model, self.smallest, self.data, n, self.recipe.seed)
        return {"top1": subnet_top1(self.model, self.largest, self.data, n, self.recipe.seed), "top1_ema": None, "top1_smallest": small}


def supernet_loop(cfg: dict[str, Any]) -> None:
    """One Ray Train worker of a supernet run (``train_loop_config``: space, supernet, recipe,
    data_ref, progress, threads)."""
    # deeper blocks of the largest subnet are unused by the others: DDP must not wait for them
    run_worker(SupernetWorker(cfg), find_unused_parameters=True)


def _check_inputs(space: SearchSpace, data: DataConfig, recipe: TrainRecipe) -> None:
    for knob in ("mixup", "cutmix", "ema_decay"):
        if getattr(recipe, knob) > 0:
            raise SettingError(
                f"TrainRecipe.{knob}", "must be 0 for supernet training (the sandwich rule distils from the largest subnet instead)"
            )
    if data.img_size != max(space.img_sizes):
        raise SettingError("DataConfig.img_size", f"must be the space's largest resolution {max(space.img_sizes)}, got {data.img_size}")


def train_supernet(
    space: SearchSpace,
    data: DataConfig,
    recipe: TrainRecipe,
    settings: SupernetSettings = SupernetSettings(),
    run: TrainExecution = TrainExecution(),
    on_progress: Progress | None = None,
) -> TrainResult:
    """Train the supernet of ``space`` on ``data`` into ``run.out`` (default ``supernet-<space>``)."""
    _check_inputs(space, data, recipe)
    given = run.out or Path(f"supernet-{space.name}")
    run = run.resolved(given)
    config = {"space": space.to_dict(), "supernet": asdict(settings), "arch": container_config(space).to_dict()}
    done = execute(
        supernet_loop, config, data, recipe, run, {"config_hash": f"supernet of {space.name}", "out": str(given)}, None, on_progress
    )
    out = run.out_dir
    shutil.copy(done.final / MODEL_FILE, out / WEIGHTS_FILE)
    (out / SPACE_FILE).write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    res = TrainResult.of(done.history, str(run.out), done.seconds)
    record = {"space": space.name, "top1_largest": res.top1, "top1_smallest": done.history[-1]["top1_smallest"], "epochs": res.epochs}
    record |= {"seconds": done.seconds, "images_per_s": res.images_per_s, "workers": run.workers, "recipe": asdict(recipe)}
    record |= {"settings": asdict(settings), "data": asdict(data), "history": done.history, "ray_result_path": done.ray_path}
    (out / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return res

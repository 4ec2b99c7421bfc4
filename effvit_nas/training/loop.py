"""One Ray Train worker: the training loop, its data transforms and the weight files.

Every epoch rank 0 reports a checkpoint (weights as safetensors; optimizer, scheduler and
scaler state, epoch and metrics history in ``state.pt``) that Ray Train persists; a resumed
run's workers restore the newest one. Data order, augmentation and Mixup draws are seeded per
(seed, epoch, rank), so a resumed run reaches the same weights as an uninterrupted one.

Data is held in memory as uint8 tensors (``effvit_nas.data``: synthetic, CIFAR, an
ImageFolder subset) or, for an ImageFolder of any size, read from disk by DataLoader processes
as training goes (:class:`effvit_nas.data.streaming.FolderData`).
"""

from __future__ import annotations

import pickle
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from effvit_nas.arch.config import ArchConfig
from effvit_nas.data import normalize
from effvit_nas.data.streaming import FolderData
from effvit_nas.errors import UserError
from effvit_nas.model.efficientvit import build_model
from effvit_nas.model.weights import damaged, read_weights
from effvit_nas.runtime import import_ray
from effvit_nas.supernet.scoring import load_supernet
from effvit_nas.training.recipe import TrainRecipe

MODEL_FILE, EMA_FILE, STATE_FILE = "model.safetensors", "model_ema.safetensors", "state.pt"


class _MemoryImages:
    """uint8 CHW tensors as PIL images through a timm transform (what RandAugment expects)."""

    def __init__(self, x: Any, y: Any, transform: Any):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        from PIL import Image  # lazy: Pillow only for image folders

        img = Image.fromarray(self.x[i].permute(1, 2, 0).numpy())
        return self.transform(img), int(self.y[i])


def train_transform(recipe: TrainRecipe, size: int) -> Any:
    """timm's ImageNet training transform for ``recipe`` at ``size`` px, its crop swapped for a
    padded random crop when ``crop_pad`` > 0."""
    from timm.data import create_transform  # lazy: timm loads torch
    from torchvision import transforms  # lazy: torchvision loads torch

    crop, augment, final = create_transform(
        size,
        is_training=True,
        auto_augment=recipe.auto_augment or None,
        interpolation="bicubic",
        re_prob=recipe.reprob,
        re_mode="pixel",
        scale=(recipe.scale_min, 1.0),
        hflip=recipe.hflip,
        color_jitter=recipe.color_jitter or None,  # type: ignore[arg-type]  # timm: None (no jitter) works, its annotation omits it
        separate=True,
    )
    if recipe.crop_pad > 0:
        crop = transforms.Compose(
            [transforms.RandomCrop(size, padding=recipe.crop_pad, padding_mode="reflect"), transforms.RandomHorizontalFlip(recipe.hflip)]
        )
    return transforms.Compose([crop, augment, final])


def steps_per_epoch(images: int, batch: int, workers: int) -> int:
    """Updates per epoch: each worker gets ceil(images / workers) images (timm's
    ``RepeatAugSampler`` with ``selected_round=0``) in full batches of ``batch // workers``."""
    return -(-images // workers) // (batch // workers)


def _seed_everything(seed: int) -> None:
    import numpy as np  # lazy: numpy only on this path
    import torch  # lazy: torch costs seconds to import

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_weights(model: Any, path: Path) -> None:
    model.load_state_dict(read_weights(path, "train again into another --out"))


def read_state(path: Path, remedy: str) -> dict[str, Any]:
    """:func:`load_state`, with a truncated file a UserError naming it and ``remedy``."""
    try:
        return load_state(path)
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise damaged(path, e, remedy) from None


def save_weights(model: Any, path: Path) -> None:
    from safetensors.torch import save_file  # lazy: loads torch

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))


def load_state(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's ``state.pt``, unpickled with ``weights_only=True``: tensors, numbers,
    strings and containers only, which is all :func:`Worker.save` writes (optimizer,
    scheduler and scaler state dicts are made of those). Anything else, e.g. a pickle that
    would run code, is refused with a UserError and never executed."""
    import torch  # lazy: torch costs seconds to import

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names the refused object on a line of its own ("... GLOBAL posix.system ...")
        reason = next((line.strip().rstrip(".") for line in str(e).splitlines() if "GLOBAL" in line), "not plain data")
        raise UserError(f"refusing to load {path}: it is not a training state effvit-nas wrote ({reason})") from None


class Worker:
    """What one worker trains with, built in the order that fixes the random streams."""

    def __init__(self, cfg: dict[str, Any]):
        ray = import_ray()
        import torch  # lazy: torch costs seconds to import
        from ray.train import get_context  # lazy: Ray costs seconds to import
        from ray.train.torch import get_device  # lazy: Ray costs seconds to import

        self.recipe = TrainRecipe(**cfg["recipe"])
        ctx = get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = get_device()
        torch.set_num_threads(cfg["threads"])  # Ray sets 1 thread per worker; use the CPUs it reserved
        self.data = ray.get(cfg["data_ref"])  # loaded (and checked) once by the driver
        self.queue = cfg.get("progress")
        self.init_from = cfg.get("init_from")  # a trained supernet folder: inherited weights
        self.loader_workers = cfg.get("loader_workers", 0)
        self.resume_from = cfg.get("resume_from")  # the run's newest checkpoint, found by the driver
        self._data_pipeline()
        torch.manual_seed(self.recipe.seed)
        self._model(ArchConfig.from_dict(cfg["arch"]))
        self._losses(cfg.get("teacher"))

    def _data_pipeline(self) -> None:
        import torch  # lazy: torch costs seconds to import
        from timm.data.distributed_sampler import RepeatAugSampler  # lazy: timm loads torch

        r = self.recipe
        transform = train_transform(r, self.data.img_size)
        if isinstance(self.data, FolderData):
            train_set = self.data.train_set(transform, resize_first=r.crop_pad > 0)
        else:
            train_set = _MemoryImages(self.data.train_x, self.data.train_y, transform)
        self.sampler = RepeatAugSampler(train_set, num_replicas=self.world, rank=self.rank, num_repeats=r.repeated_aug, selected_round=0)
        self.loader = torch.utils.data.DataLoader(
            train_set, batch_size=r.batch // self.world, sampler=self.sampler, drop_last=True, num_workers=self.loader_workers
        )
        self.steps = len(self.loader)

    def build_net(self, arch: ArchConfig) -> Any:
        """The network to train, from scratch or with weights inherited from a supernet (a
        supernet worker trains a supernet instead)."""

        arch = arch.replace(num_classes=self.data.num_classes)
        net = build_model(arch)
        if self.init_from:
            net.load_state_dict(load_supernet(self.init_from)[0].extract(arch).state_dict())
        return net

    def _model(self, arch: ArchConfig) -> None:
        """Model, AdamW, per-update cosine schedule, EMA and grad scaler (timm's pieces)."""
        import torch  # lazy: torch costs seconds to import
        from timm.optim import create_optimizer_v2  # lazy: timm loads torch
        from timm.scheduler import create_scheduler_v2  # lazy: timm loads torch
        from timm.utils import ModelEmaV3  # lazy: timm loads torch

        r = self.recipe
        if r.warmup_epochs is None:
            raise ValueError("TrainRecipe.warmup_epochs: the recipe is not resolved")
        # channels_last: measured 1.6-2x faster training steps on CPU (results/training_speed_cpu.md)
        self.model = self.build_net(arch).to(self.device, memory_format=torch.channels_last)
        self.optimizer = create_optimizer_v2(self.model, opt="adamw", lr=r.lr, weight_decay=r.weight_decay, eps=r.eps)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched="cosine",
            num_epochs=r.epochs,
            warmup_epochs=r.warmup_epochs,
            warmup_lr=r.warmup_lr,
            min_lr=r.min_lr,
            step_on_epochs=False,
            updates_per_epoch=self.steps,
        )
        self.ema = ModelEmaV3(self.model, decay=r.ema_decay, use_warmup=True) if r.ema_decay > 0 else None
        self.amp = r.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _losses(self, teacher: dict[str, Any] | None) -> None:
        """Mixup/CutMix with soft-target cross-entropy, and the distillation teacher."""
        from timm.data import Mixup  # lazy: timm loads torch
        from timm.loss import SoftTargetCrossEntropy  # lazy: timm loads torch

        r, classes = self.recipe, self.data.num_classes
        mixing = r.mixup > 0 or r.cutmix > 0
        self.mixup = Mixup(mixup_alpha=r.mixup, cutmix_alpha=r.cutmix, label_smoothing=r.smoothing, num_classes=classes) if mixing else None
        self.soft_ce = SoftTargetCrossEntropy()
        self.teacher = None
        if teacher:
            net = build_model(ArchConfig.from_dict(teacher["arch"]).replace(num_classes=classes))
            load_weights(net, Path(teacher["weights"]))
            self.teacher = net.to(self.device).eval()

    def own_checkpoint(self) -> Any:
        """The resumed run's newest checkpoint as the driver found it on disk, for when Ray Train
        lists none: a kill while it rewrote its list of checkpoints leaves that list unreadable,
        and the driver sets it aside (:func:`effvit_nas.training.runner.set_aside_unreadable_list`)."""
        from ray.train import Checkpoint  # lazy: Ray costs seconds to import

        return Checkpoint.from_directory(self.resume_from) if self.resume_from else None

    def restore(self, checkpoint: Any) -> tuple[int, list[dict[str, Any]]]:
        """Load ``checkpoint`` (Ray Train's newest, else :meth:`own_checkpoint`; None: a fresh
        run): (first epoch to run, history so far)."""
        if not checkpoint:
            return 0, []
        with checkpoint.as_directory() as d:
            load_weights(self.model, Path(d) / MODEL_FILE)
            state = load_state(Path(d) / STATE_FILE, map_location=self.device)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                load_weights(self.ema.module, Path(d) / EMA_FILE)
        return state["epoch"] + 1, state["history"]

    def loss(self, net: Any, x: Any, y: Any) -> Any:
        """Soft-target cross-entropy of ``net`` on a mixed batch, blended with the teacher's
        soft targets when distilling."""
        import torch  # lazy: torch costs seconds to import
        import torch.nn.functional as F  # lazy: torch costs seconds to import

        r, classes = self.recipe, self.data.num_classes
        if self.mixup is not None:
            x, target = self.mixup(x, y)
        else:
            target = F.one_hot(y, classes).float() * (1 - r.smoothing) + r.smoothing / classes
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = net(x)
            loss = self.soft_ce(logits, target)
            if self.teacher is not None:
                with torch.no_grad():
                    t_logits = self.teacher(x)
                tau = r.distill_tau
                kd = (
                    F.kl_div(F.log_softmax(logits / tau, 1), F.log_softmax(t_logits / tau, 1), reduction="batchmean", log_target=True)
                    * tau
                    * tau
                )
                loss = (1 - r.distill_alpha) * loss + r.distill_alpha * kd
        return loss

    def train_batch(self, net: Any, x: Any, y: Any, update: int) -> float:
        """One update on the batch ``(x, y)``; its training loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(net, x, y)
        self.scaler.scale(loss).backward()
        self.update(update)
        return loss.item()

    def update(self, update: int) -> None:
        """AGC, optimizer and scaler step, lr schedule and EMA for update number ``update``
        (the gradients are in place)."""
        from timm.models import model_parameters  # lazy: timm loads torch
        from timm.utils import dispatch_clip_grad  # lazy: timm loads torch

        if self.recipe.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            # timm's train.py leaves the classifier out of AGC
            dispatch_clip_grad(model_parameters(self.model, exclude_head=True), self.recipe.clip_grad, mode="agc")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step_update(num_updates=update)
        if self.ema is not None:
            self.ema.update(self.model, step=update)

    def epoch(self, net: Any, epoch: int) -> dict[str, Any]:
        """Train ``net`` (the DDP wrapper) one epoch; its metrics, without the evaluation."""
        import torch  # lazy: torch costs seconds to import

        _seed_everything(self.recipe.seed * 100_003 + epoch * 1_009 + self.rank)
        self.sampler.set_epoch(self.recipe.seed * 10_007 + epoch)
        net.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, (x, y) in enumerate(self.loader):
            x, y = x.to(self.device, memory_format=torch.channels_last), y.to(self.device)
            loss = self.train_batch(net, x, y, update=epoch * self.steps + step + 1)
            seen += len(x) * self.world
            loss_sum += loss
            self._progress(epoch, step, loss, seen / max(time.perf_counter() - t0, 1e-9))
        train_s = time.perf_counter() - t0
        metrics = {"epoch": epoch + 1, "loss": loss_sum / self.steps, "lr": self.lr, "img_s": seen / train_s}
        # CPU kernels reduce in an order set by the thread count, so a run repeats bit for bit
        # only at the same count: recorded per epoch, as a resume may get another
        metrics["threads"] = torch.get_num_threads()
        return {**metrics, **_peak_memory(), "train_s": train_s}

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _progress(self, epoch: int, step: int, loss: float, img_s: float) -> None:
        """About ten progress events per epoch from rank 0 to the driver's queue."""
        if self.queue is None or self.rank != 0 or not (step % max(1, self.steps // 10) == 0 or step == self.steps - 1):
            return
        event = {"epoch": epoch + 1, "epochs": self.recipe.epochs, "step": step + 1, "steps": self.steps}
        self.queue.put({**event, "loss": loss, "lr": self.lr, "img_s": img_s})

    def evaluate(self) -> dict[str, Any]:
        """Held-out metrics after an epoch (``top1``, ``top1_ema``)."""
        return {"top1": self.top1(self.model), "top1_ema": self.top1(self.ema.module) if self.ema is not None else None}

    def top1(self, net: Any) -> float:
        """Held-out top-1 of ``net`` in [0, 1]: each worker a shard of the images, summed."""
        import torch  # lazy: torch costs seconds to import
        import torch.distributed as dist  # lazy: torch costs seconds to import

        net.eval()
        correct = torch.zeros(2, device=self.device)
        with torch.no_grad():
            for x, y in self._val_batches(256):
                x = x.to(self.device).contiguous(memory_format=torch.channels_last)
                correct[0] += (net(x).argmax(1) == y.to(self.device)).sum()
                correct[1] += len(y)
        if self.world > 1:
            dist.all_reduce(correct)
        return (correct[0] / correct[1].clamp(min=1)).item()

    def _val_batches(self, batch: int) -> Iterator[tuple[Any, Any]]:
        """This rank's share of the held-out images, normalised, with their labels."""
        import torch  # lazy: torch costs seconds to import

        data = self.data
        if isinstance(data, FolderData):
            val = data.split("val", data.eval_transform())
            shard = torch.utils.data.Subset(val, range(self.rank, len(val), self.world))
            yield from torch.utils.data.DataLoader(shard, batch_size=batch, num_workers=self.loader_workers)
            return
        idx = range(self.rank, len(data.val_x), self.world)
        for i in range(0, len(idx), batch):
            sel = list(idx[i : i + batch])
            yield normalize(data.val_x[sel]), data.val_y[sel]

    def save(self, folder: Path, epoch: int, history: list[dict[str, Any]]) -> None:
        """The epoch checkpoint: weights as safetensors, the rest in ``state.pt``."""
        import torch  # lazy: torch costs seconds to import

        save_weights(self.model, folder / MODEL_FILE)
        if self.ema is not None:
            save_weights(self.ema.module, folder / EMA_FILE)
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "history": history,
            "num_classes": self.data.num_classes,
        }
        torch.save(state, folder / STATE_FILE)


def _peak_memory() -> dict[str, float]:
    """Peak resident memory so far, MiB: this worker's, and the largest of its finished child
    processes' (its DataLoader processes among them; Linux reports ru_maxrss in KiB)."""

    own, loaders = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"max_rss_mib": own.ru_maxrss / 1024, "loader_max_rss_mib": loaders.ru_maxrss / 1024}


def _report(worker: Worker, epoch: int, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Report the epoch to Ray Train, rank 0 with the checkpoint Ray Train persists."""
    import_ray()
    from ray.train import Checkpoint, report  # lazy: Ray costs seconds to import

    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if worker.rank == 0:
            worker.save(Path(d), epoch, history)
            checkpoint = Checkpoint.from_directory(d)
        report(metrics, checkpoint=checkpoint)


def train_loop(cfg: dict[str, Any]) -> None:
    """One Ray Train worker (``train_loop_config``: arch, data_ref, recipe, teacher, progress,
    threads; see :func:`effvit_nas.training.runner.train`)."""
    run_worker(Worker(cfg))


def run_worker(w: Worker, **ddp_kwargs: Any) -> None:
    """Train ``w`` from Ray Train's newest checkpoint to its last epoch, reporting each epoch
    (``ddp_kwargs``: for torch's DistributedDataParallel)."""
    import_ray()
    from ray.train import get_checkpoint  # lazy: Ray costs seconds to import
    from ray.train.torch import prepare_model  # lazy: Ray costs seconds to import

    start_epoch, history = w.restore(get_checkpoint() or w.own_checkpoint())
    ddp = prepare_model(w.model, parallel_strategy_kwargs=ddp_kwargs or None)  # DDP across workers (gloo on CPU, NCCL on GPU)
    for epoch in range(start_epoch, w.recipe.epochs):
        metrics = w.epoch(ddp, epoch)
        train_s = metrics.pop("train_s")  # last, as train.json has always listed it
        metrics.update(**w.evaluate(), train_s=train_s)
        history.append(metrics)
        _report(w, epoch, metrics, history)
        if w.queue is not None and w.rank == 0:
            w.queue.put({"epoch_done": metrics})

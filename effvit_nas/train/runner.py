"""Full training of a chosen architecture with the paper's recipe, distributed by Ray Train.

The recipe (brief: "The training recipe") with timm's utilities: AdamW without decay on 1-D
params and attention biases (``create_optimizer_v2`` + the model's ``no_weight_decay``), lr
scaled by total batch / 512, warm-up then cosine stepped per update (``create_scheduler_v2``),
RandAugment ``rand-m9-mstd0.5-inc1`` (magnitude clipped at 9, see TrainRecipe) with bicubic resizing and random erasing
(``create_transform``), Mixup 0.8 / CutMix 1.0 with label smoothing and soft-target
cross-entropy, repeated augmentation (``RepeatAugSampler``), model EMA (``ModelEmaV3``, with
warm-up so short runs still average), adaptive gradient clipping (``dispatch_clip_grad``,
mode ``agc``), mixed precision on GPU. Optional soft distillation from a trained teacher.

Execution: ``ray.train.torch.TorchTrainer`` with DDP (gloo on CPU, NCCL on GPU); one Ray
Train worker per ``workers``. Every epoch rank 0 reports a checkpoint (weights as safetensors,
optimizer/scheduler/EMA/scaler state) that Ray Train persists under ``OUT/checkpoints``;
``resume`` re-runs the same Ray Train run (name and storage path), which restores it from the
newest one. Data order, augmentation and Mixup draws are seeded
per (seed, epoch, rank), so a resumed run reaches the same weights as an uninterrupted one.

Data is held in memory as uint8 tensors (``effvit_nas.proxy.data``): synthetic, CIFAR, or an
ImageFolder subset; a full ImageNet does not fit this path.
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import UserError
from effvit_nas.proxy.data import DataConfig

CHECKPOINT_DIR = "checkpoints"
RUN_NAME = "train"


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
        if self.epochs < 1:
            raise UserError(f"--epochs must be positive, got {self.epochs}")
        if self.batch < 2:
            raise UserError(f"--batch must be at least 2, got {self.batch}")
        if self.lr is not None and self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.scale_min <= 1:
            raise UserError(f"scale_min must be in (0, 1], got {self.scale_min}")
        if self.crop_pad < 0:
            raise UserError(f"crop_pad must be >= 0 px, got {self.crop_pad}")
        if not 0 <= self.hflip <= 1 or not 0 <= self.reprob <= 1:
            raise UserError(f"hflip and reprob are probabilities in [0, 1], got {self.hflip} and {self.reprob}")

    def resolved(self, workers: int) -> TrainRecipe:
        """lr and warm-up filled in; the batch rounded to a multiple of 2 x workers (Mixup
        mixes pairs within each worker's batch)."""
        per = max(2, (self.batch // workers) // 2 * 2)
        lr = self.lr if self.lr is not None else self.base_lr * per * workers / 512
        warm = self.warmup_epochs if self.warmup_epochs is not None else (5 if self.epochs >= 50 else self.epochs // 10)
        return replace(self, batch=per * workers, lr=lr, warmup_epochs=min(warm, self.epochs - 1) if self.epochs > 1 else 0)


@dataclass
class TrainResult:
    top1: float  # held-out top-1 in [0, 1] of the final model
    top1_ema: float | None  # of the EMA model
    epochs: int
    seconds: float
    images_per_s: float  # training throughput, all workers
    out: str
    history: list[dict[str, Any]]


class _MemoryImages:
    """uint8 CHW tensors as PIL images through a timm transform (what RandAugment expects)."""

    def __init__(self, x: Any, y: Any, transform: Any):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.x[i].permute(1, 2, 0).numpy())
        return self.transform(img), int(self.y[i])


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
            "synthetic data: crop_pad=4 instead of the random-resized crop, which changes its labels (grating frequencies); --set crop_pad=0 for the paper's crop",
        )
    return {}, ""


def _train_transform(recipe: TrainRecipe, size: int) -> Any:
    """timm's ImageNet training transform for ``recipe``, its crop swapped for a padded random
    crop when ``crop_pad`` > 0."""
    from timm.data import create_transform
    from torchvision import transforms

    crop, augment, final = create_transform(
        size,
        is_training=True,
        auto_augment=recipe.auto_augment or None,
        interpolation="bicubic",
        re_prob=recipe.reprob,
        re_mode="pixel",
        scale=(recipe.scale_min, 1.0),
        hflip=recipe.hflip,
        color_jitter=recipe.color_jitter or None,
        separate=True,
    )
    if recipe.crop_pad > 0:
        crop = transforms.Compose(
            [transforms.RandomCrop(size, padding=recipe.crop_pad, padding_mode="reflect"), transforms.RandomHorizontalFlip(recipe.hflip)]
        )
    return transforms.Compose([crop, augment, final])


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_weights(model: Any, path: Path) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


def _save_weights(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))


def _train_loop(cfg: dict[str, Any]) -> None:
    """One Ray Train worker (see the module doc)."""
    from effvit_nas.runtime import import_ray

    ray = import_ray()
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    from timm.data import Mixup
    from timm.data.distributed_sampler import RepeatAugSampler
    from timm.loss import SoftTargetCrossEntropy
    from timm.models import model_parameters
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3, dispatch_clip_grad

    from effvit_nas.model.efficientvit import build_model
    from effvit_nas.proxy.data import normalize

    recipe = TrainRecipe(**cfg["recipe"])
    arch = ArchConfig.from_dict(cfg["arch"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(cfg["threads"])  # Ray sets 1 thread per worker; use the CPUs it reserved
    cuda = device.type == "cuda"
    data = ray.get(cfg["data_ref"])  # loaded (and checked) once by the driver
    size = data.img_size
    tf = _train_transform(recipe, size)
    train_set = _MemoryImages(data.train_x, data.train_y, tf)
    sampler = RepeatAugSampler(train_set, num_replicas=world, rank=rank, num_repeats=max(recipe.repeated_aug, 1), selected_round=0)
    per_worker = recipe.batch // world
    loader = torch.utils.data.DataLoader(train_set, batch_size=per_worker, sampler=sampler, drop_last=True, num_workers=0)
    steps = len(loader)
    if steps == 0:
        raise UserError(f"{len(train_set)} training images are fewer than one batch of {per_worker} per worker; lower --batch")

    torch.manual_seed(recipe.seed)
    model = build_model(arch.replace(num_classes=data.num_classes)).to(device)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay, eps=recipe.eps)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=recipe.epochs,
        warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.warmup_lr,
        min_lr=recipe.min_lr,
        step_on_epochs=False,
        updates_per_epoch=steps,
    )
    ema = ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=True) if recipe.ema_decay > 0 else None
    amp = recipe.amp and cuda
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    mixing = recipe.mixup > 0 or recipe.cutmix > 0
    mixup = (
        Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.smoothing, num_classes=data.num_classes)
        if mixing
        else None
    )
    soft_ce = SoftTargetCrossEntropy()
    teacher = None
    if cfg.get("teacher"):
        teacher = build_model(ArchConfig.from_dict(cfg["teacher"]["arch"]).replace(num_classes=data.num_classes))
        _load_weights(teacher, Path(cfg["teacher"]["weights"]))
        teacher = teacher.to(device).eval()

    start_epoch, history = 0, []
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            _load_weights(model, Path(d) / "model.safetensors")
            state = torch.load(Path(d) / "state.pt", map_location=device, weights_only=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None:
                _load_weights(ema.module, Path(d) / "model_ema.safetensors")
            start_epoch, history = state["epoch"] + 1, state["history"]
    ddp = ray.train.torch.prepare_model(model)  # DDP across workers (gloo on CPU, NCCL on GPU)

    @torch.no_grad()
    def top1(net: Any) -> float:
        net.eval()
        idx = range(rank, len(data.val_x), world)  # each worker a shard, summed below
        correct = torch.zeros(2, device=device)
        for i in range(0, len(idx), 256):
            sel = list(idx[i : i + 256])
            x = normalize(data.val_x[sel].to(device))
            correct[0] += (net(x).argmax(1) == data.val_y[sel].to(device)).sum()
            correct[1] += len(sel)
        if world > 1:
            dist.all_reduce(correct)
        return (correct[0] / correct[1].clamp(min=1)).item()

    queue = cfg.get("progress")
    for epoch in range(start_epoch, recipe.epochs):
        _seed_everything(recipe.seed * 100_003 + epoch * 1_009 + rank)
        sampler.set_epoch(recipe.seed * 10_007 + epoch)
        ddp.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            if mixup is not None:
                x, target = mixup(x, y)
            else:
                target = (
                    torch.nn.functional.one_hot(y, data.num_classes).float() * (1 - recipe.smoothing) + recipe.smoothing / data.num_classes
                )
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = ddp(x)
                loss = soft_ce(logits, target)
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(x)
                    tau = recipe.distill_tau
                    kd = (
                        torch.nn.functional.kl_div(
                            torch.log_softmax(logits / tau, 1), torch.log_softmax(t_logits / tau, 1), reduction="batchmean", log_target=True
                        )
                        * tau
                        * tau
                    )
                    loss = (1 - recipe.distill_alpha) * loss + recipe.distill_alpha * kd
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe.clip_grad > 0:
                scaler.unscale_(optimizer)
                # timm's train.py leaves the classifier out of AGC
                dispatch_clip_grad(model_parameters(model, exclude_head=True), recipe.clip_grad, mode="agc")
            scaler.step(optimizer)
            scaler.update()
            scheduler.step_update(num_updates=epoch * steps + step + 1)
            if ema is not None:
                ema.update(model, step=epoch * steps + step + 1)
            seen += len(x) * world
            loss_sum += loss.item()
            if queue is not None and rank == 0 and (step % max(1, steps // 10) == 0 or step == steps - 1):
                elapsed = time.perf_counter() - t0
                queue.put(
                    {
                        "epoch": epoch + 1,
                        "epochs": recipe.epochs,
                        "step": step + 1,
                        "steps": steps,
                        "loss": loss.item(),
                        "lr": optimizer.param_groups[0]["lr"],
                        "img_s": seen / max(elapsed, 1e-9),
                    }
                )
        train_s = time.perf_counter() - t0
        metrics = {
            "epoch": epoch + 1,
            "loss": loss_sum / steps,
            "lr": optimizer.param_groups[0]["lr"],
            "img_s": seen / train_s,
            "top1": top1(model),
            "top1_ema": top1(ema.module) if ema is not None else None,
            "train_s": train_s,
        }
        history.append(metrics)
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                _save_weights(model, Path(d) / "model.safetensors")
                if ema is not None:
                    _save_weights(ema.module, Path(d) / "model_ema.safetensors")
                torch.save(
                    {
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "epoch": epoch,
                        "history": history,
                        "num_classes": data.num_classes,
                    },
                    Path(d) / "state.pt",
                )
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint)
        if queue is not None and rank == 0:
            queue.put({"epoch_done": metrics})


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete epoch checkpoint under ``out`` (None when there is none)."""
    runs = out / CHECKPOINT_DIR / RUN_NAME
    best, best_epoch = None, -1
    for d in runs.glob("checkpoint_*") if runs.is_dir() else []:
        if (d / "state.pt").is_file() and (d / "model.safetensors").is_file():
            import torch

            epoch = torch.load(d / "state.pt", map_location="cpu", weights_only=False)["epoch"]
            if epoch > best_epoch:
                best, best_epoch = d, epoch
    return best


def train(
    arch: ArchConfig,
    data: DataConfig,
    recipe: TrainRecipe,
    out: Path,
    workers: int = 1,
    resume: bool = False,
    teacher: dict[str, Any] | None = None,
    use_gpu: bool = False,
    ray_address: str | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``arch`` on ``data`` with ``recipe`` on ``workers`` Ray Train workers; write
    ``model.safetensors``, ``model_ema.safetensors`` and ``train.json`` into ``out``."""
    from effvit_nas.runtime import import_ray

    ray = import_ray()
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    from effvit_nas.measure.actor import connect

    if workers < 1:
        raise UserError(f"--workers must be positive, got {workers}")
    out = out.resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {str(out)!r}: {e.strerror or e}") from None
    previous = latest_checkpoint(out)
    if previous is not None and not resume:
        raise UserError(f"{out} already holds a training run (epoch checkpoints); add --resume to continue it or choose another --out")
    if resume and previous is None:
        raise UserError(f"nothing to resume in {out} (no epoch checkpoint)")
    from effvit_nas.proxy.data import load_data

    dataset = load_data(data)  # DataError (exit 2) here, not inside a worker
    if previous is not None:
        import torch

        had = torch.load(previous / "state.pt", map_location="cpu", weights_only=False).get("num_classes")
        if had is not None and had != dataset.num_classes:
            raise UserError(f"the checkpoint in {out} has {had} classes, the data {dataset.num_classes}; resume with the same data")
    if teacher is not None and teacher.get("num_classes") not in (None, dataset.num_classes):
        raise UserError(f"teacher has {teacher['num_classes']} classes, the data {dataset.num_classes}")
    connect(ray_address)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if not use_gpu and workers > cpus:
        raise UserError(f"--workers {workers} needs {workers} CPUs; Ray has {cpus}")
    # CPU workers share out the CPUs free now (a device actor may hold some; asking for more would wait forever)
    free = int(ray.available_resources().get("CPU", 0))
    threads = 1 if use_gpu else max(1, min(cpus, free) // workers)
    queue = Queue() if on_progress else None
    config = {
        "arch": arch.to_dict(),
        "data_ref": ray.put(dataset),
        "recipe": asdict(recipe),
        "teacher": teacher,
        "progress": queue,
        "threads": threads,
    }
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=None if use_gpu else {"CPU": threads}),
        # Ray Train restores a run from its storage: the same name and path resume from the
        # newest reported checkpoint (get_checkpoint() in the workers).
        run_config=RunConfig(name=RUN_NAME, storage_path=str(out / CHECKPOINT_DIR), checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    t0 = time.perf_counter()
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)
        while queue is not None and not queue.empty():
            on_progress(queue.get())
    while queue is not None and not queue.empty():
        on_progress(queue.get())
    if "error" in box:
        err = box["error"]
        cause = err
        while getattr(cause, "__cause__", None) is not None or getattr(cause, "cause", None) is not None:
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise err
    result = box["result"]
    final = latest_checkpoint(out)
    if final is None:
        raise UserError(f"training ended without a checkpoint in {out}")
    import shutil

    import torch

    history = torch.load(final / "state.pt", map_location="cpu", weights_only=False)["history"]
    shutil.copy(final / "model.safetensors", out / "model.safetensors")
    if not (out / "config.yaml").exists():  # the folder then loads as a model (model info, --distill)
        (out / "config.yaml").write_text(
            f"# EfficientViT {arch.short_hash()} (effvit-nas train)\n" + arch.replace(num_classes=dataset.num_classes).to_yaml()
        )
    if (final / "model_ema.safetensors").exists():
        shutil.copy(final / "model_ema.safetensors", out / "model_ema.safetensors")
    last = history[-1]
    res = TrainResult(
        top1=last["top1"],
        top1_ema=last["top1_ema"],
        epochs=last["epoch"],
        seconds=time.perf_counter() - t0,
        images_per_s=sum(h["img_s"] * h["train_s"] for h in history) / max(sum(h["train_s"] for h in history), 1e-9),
        out=str(out),
        history=history,
    )
    (out / "train.json").write_text(
        json.dumps(
            {
                "config_hash": arch.short_hash(),
                "top1": res.top1,
                "top1_ema": res.top1_ema,
                "epochs": res.epochs,
                "images_per_s": res.images_per_s,
                "workers": workers,
                "recipe": asdict(recipe),
                "data": asdict(data),
                "teacher": teacher,
                "history": history,
                "ray_result_path": getattr(result, "path", None),
            },
            indent=1,
        )
        + "\n"
    )
    return res

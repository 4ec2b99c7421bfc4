"""`train`: full training of one model with the paper's recipe through Ray Train."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from effvit_nas.cli.common import SEED, data_options_train, fmt_eta, print_json, setting_flags

# --set KEY=VALUE reaches every recipe field; parse errors name the pair or the key
SET_FLAGS = {"parse_overrides.pairs": "--set", "TrainRecipe.*": "--set {field}"}
TRAIN_FLAGS = {
    **SET_FLAGS,
    "TrainRecipe.epochs": "--epochs",
    "TrainRecipe.batch": "--batch",
    "TrainRecipe.lr": "--lr",
    "TrainRecipe.seed": "--seed",
    "TrainExecution.workers": "--workers",
    "TrainExecution.out": "--out",
    "TrainExecution.resume": "--resume",
    "TrainExecution.threads": "--threads",
}


class TrainProgress:
    """Prints training progress events (:data:`effvit_nas.training.runner.Progress`): the run's
    header, about ten step lines per epoch with an ETA, and each epoch's metrics."""

    def __init__(self) -> None:
        self.first: tuple[float, int, int] | None = None  # (time, epoch, step) of the first step seen

    def __call__(self, p: dict[str, Any]) -> None:
        if "start" in p:
            self.start(p["start"])
        elif "epoch_done" in p:
            m = p["epoch_done"]
            ema = f", EMA {100 * m['top1_ema']:.1f} %" if m.get("top1_ema") is not None else ""
            if "top1_smallest" in m:  # a supernet: its largest and smallest subnet
                ema += f", smallest subnet {100 * m['top1_smallest']:.1f} %"
            click.echo(f"epoch {m['epoch']}: loss {m['loss']:.3f}, top-1 {100 * m['top1']:.1f} %{ema}, {m['img_s']:.0f} img/s")
        else:
            self.step(p)

    def start(self, s: dict[str, Any]) -> None:
        self.first = None  # a new run (train_top trains several)
        click.echo(
            f"training {s['config_hash']} on {s['data']} ({s['img_size']} px) with {s['workers']} Ray Train worker(s), "
            f"{'GPU' if s['use_gpu'] else 'CPU'}; out {s['out']}"
        )
        click.echo("recipe: " + ", ".join(f"{k}={v}" for k, v in s["recipe"].items()))

    def step(self, p: dict[str, Any]) -> None:
        if self.first is None:  # a resumed run starts mid-way: time only what this one did
            self.first = (time.perf_counter(), p["epoch"], p["step"])
        t0, e0, s0 = self.first
        done = (p["epoch"] - e0) * p["steps"] + p["step"] - s0
        left = (p["epochs"] - p["epoch"]) * p["steps"] + p["steps"] - p["step"]
        eta = (time.perf_counter() - t0) / done * left if done > 0 else None
        bar = "#" * int(20 * p["step"] / p["steps"])
        click.echo(
            f"  epoch {p['epoch']}/{p['epochs']} [{bar:<20}] {p['step']}/{p['steps']} loss {p['loss']:.3f} "
            f"lr {p['lr']:.2e} {p['img_s']:.0f} img/s ETA {fmt_eta(eta)}"
        )


def show_recorded(recorded: Any, quiet: bool) -> None:
    """Where the trained accuracy of an export folder went (a ``StudyRecord``, or None)."""
    if recorded is None:
        return
    if recorded.error is not None:
        click.echo(f"warning: study not updated: {recorded.error}", err=True)
    elif not quiet:
        click.echo(f"recorded in study {recorded.study!r} ({recorded.storage}), trial {recorded.trial}")


@click.command("train")
@click.argument("config", metavar="CONFIG_OR_EXPORT_DIR")
@data_options_train
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True, help="Passes over the training images (paper: 300).")
@click.option("--batch", type=click.IntRange(min=2), default=256, show_default=True, help="Total images per update over all workers.")
@click.option("--lr", type=float, default=None, help="Peak lr [default: 1e-3 x batch / 512].")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray Train workers (DDP: gloo on CPU, NCCL on GPU)."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest epoch checkpoint.")
@click.option(
    "--stream", is_flag=True, help="Read the ImageFolder --data from disk as training goes (any size) instead of loading it into memory."
)
@click.option(
    "--loader-workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader processes per Ray Train worker."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch threads per worker [default: the CPUs not busy now; CPU runs repeat bit for bit only at one thread count].",
)
@click.option(
    "--distill", default=None, metavar="TEACHER", help="Soft distillation from a trained model folder (config.yaml + model.safetensors)."
)
@click.option(
    "--init-from", default=None, metavar="SUPERNET_DIR", help="Start from the weights inherited from a trained supernet (fine-tuning)."
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder [default: the export folder, or train-<hash>].")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe knob, e.g. --set mixup=0 --set ema_decay=0.999 (see the printed recipe).",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the init, the data order and the augmentation.")
@click.option("--storage", default=None, help="Study database to record the trained accuracy in [default: the export's].")
@click.option("--ray-address", default=None, help="Join an existing Ray cluster.")
@click.option("--quiet", is_flag=True, help="No progress bar or recipe; errors only.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train_cmd(
    config,
    data_source,
    img_size,
    classes,
    train_per_class,
    val_per_class,
    epochs,
    batch,
    lr,
    workers,
    resume,
    stream,
    loader_workers,
    threads,
    distill,
    init_from,
    out,
    overrides,
    seed,
    storage,
    ray_address,
    quiet,
    as_json,
) -> None:
    """Train CONFIG (preset, YAML or export folder) with the paper's recipe through Ray Train."""
    from effvit_nas.runtime import passive_openmp

    passive_openmp()  # before torch or a local Ray (its workers inherit it) starts
    from effvit_nas.arch.config import load_config
    from effvit_nas.data import DataConfig
    from effvit_nas.training.recipe import parse_overrides, recipe_for
    from effvit_nas.training.runner import TrainExecution, train_model

    quiet = quiet or as_json
    with setting_flags(SET_FLAGS):
        explicit = parse_overrides(overrides)
    # a field given with --set is named so, even where a flag sets it too
    with setting_flags({**TRAIN_FLAGS, **{f"TrainRecipe.{k}": f"--set {k}" for k in explicit}}):
        data = DataConfig(data_source, img_size or load_config(config).img_size, classes, train_per_class, val_per_class, seed)
        run = TrainExecution(
            out=out, workers=workers, ray_address=ray_address, resume=resume, stream=stream, loader_workers=loader_workers, threads=threads
        )
        recipe, note = recipe_for(data, {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed}, explicit, workers)
        if note and not quiet:
            click.echo(f"note: {note}")
        progress = None if quiet else TrainProgress()
        trained = train_model(config, data, recipe, run, distill=distill, storage=storage, on_progress=progress, init_from=init_from)
    show_recorded(trained.recorded, quiet)
    res = trained.result
    if as_json:
        print_json(asdict(res))
        return
    ema = f", EMA {100 * res.top1_ema:.1f} %" if res.top1_ema is not None else ""
    click.echo(
        f"top-1 {100 * res.top1:.1f} %{ema} after {res.epochs} epochs ({res.seconds:.0f} s, {res.images_per_s:.0f} img/s); weights in {res.out}"
    )

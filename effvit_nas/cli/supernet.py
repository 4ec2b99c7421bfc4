"""`supernet train`: one weight-sharing supernet over a search space, through Ray Train."""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

import click

from effvit_nas.cli.common import SEED, data_options, print_json, setting_flags
from effvit_nas.cli.train import SET_FLAGS, TRAIN_FLAGS, TrainProgress

# Not used by the sandwich rule (it distils from the largest subnet's predictions instead)
SUPERNET_RECIPE = {"mixup": 0.0, "cutmix": 0.0, "ema_decay": 0.0}


@click.group("supernet")
def supernet_app() -> None:
    """Weight-sharing supernet: train once, score candidates with `--proxy supernet:DIR`."""


@supernet_app.command("train")
@click.option("--space", required=True, help="Search space (bundled name or YAML file).")
@functools.partial(data_options, img_size_default=None, img_size_help="Training resolution (px) [default: the space's largest].")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder [default: supernet-<space>].")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True, help="Passes over the training images.")
@click.option("--batch", type=click.IntRange(min=2), default=256, show_default=True, help="Total images per update over all workers.")
@click.option("--lr", type=float, default=None, help="Peak lr [default: 1e-3 x batch / 512].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray Train workers (DDP).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch threads per worker [default: the CPUs not busy now; CPU runs repeat bit for bit only at one thread count].",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest epoch checkpoint.")
@click.option(
    "--random-subnets",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Random subnets per update besides the largest and smallest.",
)
@click.option("--no-distill", is_flag=True, help="Train every subnet on the labels instead of the largest's predictions.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe knob (see the printed recipe).")
@click.option(
    "--seed", type=SEED, default=0, show_default=True, help="Seeds the init, the data order, the augmentation and the sampled subnets."
)
@click.option("--ray-address", default=None, help="Join an existing Ray cluster.")
@click.option("--quiet", is_flag=True, help="No progress bar or recipe; errors only.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def supernet_train_cmd(
    space,
    out,
    epochs,
    batch,
    lr,
    workers,
    threads,
    resume,
    random_subnets,
    no_distill,
    overrides,
    seed,
    ray_address,
    quiet,
    as_json,
    **data,
):
    """Train the supernet of SPACE with the sandwich rule and in-place distillation; its folder
    scores candidates as `--proxy supernet:DIR` and starts `train --init-from DIR`."""
    from effvit_nas.runtime import passive_openmp

    passive_openmp()  # before torch or a local Ray (its workers inherit it) starts
    from effvit_nas.arch.space import load_space
    from effvit_nas.data import DataConfig
    from effvit_nas.training.recipe import parse_overrides, recipe_for
    from effvit_nas.training.runner import TrainExecution
    from effvit_nas.training.supernet import SupernetSettings, train_supernet

    quiet = quiet or as_json
    sp = load_space(space)
    with setting_flags(SET_FLAGS):
        explicit = parse_overrides(overrides)
    flags = {**TRAIN_FLAGS, "DataConfig.img_size": "--img-size", **{f"TrainRecipe.{k}": f"--set {k}" for k in explicit}}
    with setting_flags(flags):
        img = data["img_size"] or max(sp.img_sizes)
        cfg = DataConfig(data["data_source"], img, data["classes"], data["train_per_class"], data["val_per_class"], seed)
        run = TrainExecution(out=out, workers=workers, ray_address=ray_address, resume=resume, threads=threads)
        options = {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed, **SUPERNET_RECIPE}
        recipe, note = recipe_for(cfg, options, explicit, workers)
        if note and not quiet:
            click.echo(f"note: {note}")
        settings = SupernetSettings(random_subnets=random_subnets, distill=not no_distill)
        res = train_supernet(sp, cfg, recipe, settings, run, on_progress=None if quiet else TrainProgress())
    if as_json:
        print_json(asdict(res))
        return
    last = res.history[-1]
    click.echo(
        f"supernet of {sp.name}: largest top-1 {100 * res.top1:.1f} %, smallest {100 * last['top1_smallest']:.1f} % after {res.epochs} epochs "
        f"({res.seconds:.0f} s); score candidates with --proxy supernet:{res.out}"
    )

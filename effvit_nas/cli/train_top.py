"""`search --train-top K [--baseline M0]`: training the best models a search found, with
`train`'s recipe and flags under ``--train-*`` names."""

from __future__ import annotations

from dataclasses import replace

import click

from effvit_nas.cli.common import setting_flags
from effvit_nas.cli.train import TrainProgress, show_recorded
from effvit_nas.errors import UserError

# the --train-top flags that set the training settings `train` sets with --epochs, ...
TRAIN_TOP_FLAGS = {
    "parse_overrides.pairs": "--train-set",
    "TrainRecipe.*": "--train-set {field}",
    "TrainRecipe.epochs": "--train-epochs",
    "TrainRecipe.batch": "--train-batch",
    "TrainExecution.workers": "--train-workers",
    "export_trials.out": "--train-out",
    "TrainExecution.resume": "`effvit-nas train FOLDER --resume`",
}


def check_training_flags(opts: dict) -> None:
    """Bad --train-set / --baseline values fail before the search, not after it."""
    from effvit_nas.arch.config import PRESETS
    from effvit_nas.training.recipe import TrainRecipe, parse_overrides

    with setting_flags(TRAIN_TOP_FLAGS):
        TrainRecipe(**parse_overrides(opts["train_overrides"]))
    if opts["baseline"] and opts["baseline"].upper() not in PRESETS:
        raise UserError(f"--baseline: {opts['baseline']!r} is no preset (choose from {', '.join(PRESETS)})")


def _training(problem, options, opts: dict, seed: int | None) -> tuple:
    """What --train-top trains with: (data, recipe, run). The data is the search's, with
    --train-top-per-class images per class and the whole held-out split; the recipe is
    `train`'s with --train-epochs/--train-batch/--train-set. Prints the recipe's note."""
    from effvit_nas.training.recipe import parse_overrides, recipe_for
    from effvit_nas.training.runner import TrainExecution

    explicit = parse_overrides(opts["train_overrides"])
    per_class = opts["train_top_per_class"] or problem.data.train_per_class
    data = replace(problem.data, train_per_class=per_class, val_per_class=None)
    run = TrainExecution(workers=opts["train_workers"], ray_address=options.ray_address)
    chosen = {"epochs": opts["train_epochs"], "batch": opts["train_batch"], **({"seed": seed} if seed is not None else {})}
    recipe, note = recipe_for(data, chosen, explicit, workers=opts["train_workers"])
    if note and not (opts["quiet"] or opts["as_json"]):
        click.echo(f"note: {note}")
    return data, recipe, run


def train_best(problem, options, opts: dict, quiet: bool) -> list[dict]:
    """--train-top: train the k best Pareto models on the search's data, printing progress."""
    from effvit_nas.training.runner import train_top

    def trained(t) -> None:
        show_recorded(t.trained.recorded, quiet)
        if not quiet:
            click.echo(f"trial {t.trial} {t.config_hash}: trained top-1 {100 * t.trained.result.top1:.1f} % ({t.folder})")

    with setting_flags(TRAIN_TOP_FLAGS):
        data, recipe, run = _training(problem, options, opts, options.seed)
        progress = None if quiet else TrainProgress()
        done = train_top(
            options.study,
            options.storage,
            opts["train_top"],
            data,
            recipe,
            run,
            out=opts["train_out"],
            on_progress=progress,
            on_trained=trained,
        )
    if not done:
        click.echo("--train-top: no feasible model to train", err=True)
    return [t.to_dict() for t in done]


def compare_with_baseline(problem, options, opts: dict, quiet: bool) -> list[dict]:
    """--train-top K --baseline M0: train the K best Pareto models and the preset with the same
    recipe and seeds, re-measure them interleaved, print the table."""
    from effvit_nas.cli.common import table
    from effvit_nas.training.comparison import TABLE_HEADERS, compare, table_rows

    with setting_flags({**TRAIN_TOP_FLAGS, "compare.baseline": "--baseline"}):
        data, recipe, run = _training(problem, options, opts, None)
        seeds = [options.seed + i for i in range(opts["train_seeds"])]

        def trained(c) -> None:
            if not quiet:
                click.echo(f"{c.name}: top-1 per seed so far " + ", ".join(f"{100 * v:.1f} %" for v in c.top1.values()))

        progress = None if quiet else TrainProgress()
        rows = compare(options.study, options.storage, opts["train_top"], opts["baseline"].upper(), data, recipe, seeds, run,
                       out=opts["train_out"], on_progress=progress, on_trained=trained)  # fmt: skip
    if not rows:
        click.echo("--train-top: no feasible model to train", err=True)
    elif not quiet:
        click.echo(table(TABLE_HEADERS, table_rows([c.summary() for c in rows])))
    return [c.summary() for c in rows]

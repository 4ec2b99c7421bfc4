"""`space show`, `space sample`, `model info`, `model list`: search spaces and single
architectures."""

from __future__ import annotations

import math
from typing import Any

import click

from effvit_nas.arch.config import MAX_IMG_SIZE, ArchConfig, load_config, preset_name
from effvit_nas.cli.common import SEED, SPACE_HELP_DEFAULT, fmt_tuple, print_json, table


@click.group("space", no_args_is_help=True)
def space_app() -> None:
    """Inspect search spaces and sample configs from them."""


@click.group("model", no_args_is_help=True)
def model_app() -> None:
    """Inspect single architectures (presets or config files)."""


def _describe(config: ArchConfig) -> dict[str, Any]:
    """The JSON record of one architecture: id, cost and config."""
    from effvit_nas.model.cost import model_cost
    from effvit_nas.model.timm_compat import timm_kwargs

    cost = model_cost(config)
    return {
        "hash": config.short_hash(),
        "preset": preset_name(config),
        "params": cost.params,
        "macs": cost.macs,
        "img_size": config.img_size,
        "resolutions": list(config.resolutions()),
        "windows": [min(w, r) for w, r in zip(config.windows, config.resolutions(), strict=True)],
        "timm_kwargs": timm_kwargs(config),
        "config": config.to_dict(),
    }


@space_app.command("show")
@click.option("--space", default=None, help=SPACE_HELP_DEFAULT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def space_show(space: str | None, as_json: bool) -> None:
    """Knobs, their ranges per stage, the space size and which presets it contains."""
    from effvit_nas.arch.space import load_space

    s = load_space(space)
    size = s.size()
    presets = s.presets_inside()
    if as_json:
        print_json({"space": s.to_dict(), "source": s.source, "size": size, "presets": presets})
        return
    click.echo(f"space {s.name}  ({s.source})")
    if s.description:
        click.echo(f"  {s.description}")
    knobs = {k.name: k for k in s.knobs()}
    rows = []
    for prefix in ("heads", "head_dim", "depth", "qk_dim", "v_ratio", "ffn_ratio", "window"):
        rows.append([prefix] + [knobs[f"{prefix}_{i}"].describe() for i in range(s.num_stages)])
    click.echo(table(["knob"] + [f"stage {i}" for i in range(s.num_stages)], rows))
    click.echo("width = heads x head_dim")
    click.echo(f"kernels (per head, all stages): {' | '.join(fmt_tuple(k) for k in s.kernels)}")
    click.echo(f"img_size: {knobs['img_size'].describe()}   num_classes: {s.num_classes}")
    click.echo(f"size: {size:,} parameter combinations (10^{math.log10(size):.1f})")
    inside = [n for n, ok in presets.items() if ok]
    outside = [n for n, ok in presets.items() if not ok]
    click.echo(f"presets inside: {', '.join(inside) or 'none'}" + (f"   outside: {', '.join(outside)}" if outside else ""))


@space_app.command("sample")
@click.option("-n", "--num", "n", type=click.IntRange(min=1), default=5, show_default=True, help="How many configs to draw.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed; the same seed gives the same configs.")
@click.option("--space", default=None, help=SPACE_HELP_DEFAULT)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (hash, params, macs, config per entry).")
def space_sample(n: int, seed: int, space: str | None, as_json: bool) -> None:
    """Draw N valid configs uniformly from the space, with their params and MACs."""
    import numpy as np

    from effvit_nas.arch.space import load_space

    s = load_space(space)
    rng = np.random.default_rng(seed)
    records = [_describe(s.sample(rng)) for _ in range(n)]
    if as_json:
        print_json(records)
        return
    rows = []
    for r in records:
        c = ArchConfig.from_dict(r["config"])
        rows.append(
            [
                r["hash"],
                fmt_tuple(c.widths),
                fmt_tuple(c.depths),
                fmt_tuple(c.heads),
                fmt_tuple(c.qk_dims),
                fmt_tuple(c.v_ratios),
                fmt_tuple(c.ffn_ratios),
                fmt_tuple(c.windows),
                fmt_tuple(c.kernels[: max(c.heads)]),
                c.img_size,
                f"{r['params'] / 1e6:.2f}",
                f"{r['macs'] / 1e6:.1f}",
            ]
        )
    headers = ["hash", "widths", "depths", "heads", "qk", "v_ratio", "ffn", "window", "kernels", "img", "params(M)", "MACs(M)"]
    click.echo(table(headers, rows))


@model_app.command("info")
@click.argument("config")
@click.option(
    "--img-size", type=click.IntRange(min=16, max=MAX_IMG_SIZE), default=None, help="Build at this input size (px) instead of the config's."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (params, macs, img_size, hash, config, ...).")
def model_info(config: str, img_size: int | None, as_json: bool) -> None:
    """Params, MACs, stage resolutions and the config of one architecture.

    CONFIG is a preset (M0..M5) or a YAML/JSON config file.
    """
    cfg = load_config(config)
    if img_size is not None:
        cfg = cfg.replace(img_size=img_size)
    r = _describe(cfg)
    if as_json:
        print_json(r)
        return
    name = f" (preset {r['preset']})" if r["preset"] else ""
    click.echo(f"model {r['hash']}{name}")
    click.echo(f"params: {r['params']:,}   MACs: {r['macs'] / 1e6:.1f} M at {cfg.img_size}x{cfg.img_size}")
    click.echo(f"stage resolutions: {fmt_tuple(tuple(r['resolutions']))}   effective windows: {fmt_tuple(tuple(r['windows']))}")
    click.echo(f"timm-expressible: {'yes' if r['timm_kwargs'] else 'no'}")
    click.echo(cfg.to_yaml().rstrip())


@model_app.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_list(as_json: bool) -> None:
    """The released presets M0..M5 with params and MACs at 224 px."""
    from effvit_nas.arch.config import PRESETS

    records = {name: _describe(cfg) for name, cfg in PRESETS.items()}
    if as_json:
        print_json(records)
        return
    rows = [
        [
            n,
            r["hash"],
            fmt_tuple(tuple(r["config"]["widths"])),
            fmt_tuple(tuple(r["config"]["depths"])),
            fmt_tuple(tuple(r["config"]["heads"])),
            f"{r['params']:,}",
            f"{r['macs'] / 1e6:.1f}",
        ]
        for n, r in records.items()
    ]
    click.echo(table(["preset", "hash", "widths", "depths", "heads", "params", "MACs(M)"], rows))

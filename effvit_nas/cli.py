"""The ``effvit-nas`` command line.

Every command has ``--help``. Bad input (unknown preset, malformed YAML, invalid config, ...)
ends with one ``error: ...`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import click

from effvit_nas.config import ArchConfig, load_config, preset_name
from effvit_nas.errors import UserError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT, no_args_is_help=True)
def app() -> None:
    """Hardware-aware neural architecture search for EfficientViT."""


@app.group("space", no_args_is_help=True)
def space_app() -> None:
    """Inspect search spaces and sample configs from them."""


@app.group("model", no_args_is_help=True)
def model_app() -> None:
    """Inspect single architectures (presets or config files)."""


SPACE_HELP = "Search-space YAML file, or the name of a bundled space (default: efficientvit)."


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt_tuple(values: tuple) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _describe(config: ArchConfig) -> dict[str, Any]:
    """The JSON record of one architecture: id, cost and config."""
    from effvit_nas.profile import model_cost
    from effvit_nas.timm_compat import timm_kwargs

    cost = model_cost(config)
    return {
        "hash": config.short_hash(),
        "preset": preset_name(config),
        "params": cost.params,
        "macs": cost.macs,
        "img_size": config.img_size,
        "resolutions": list(config.resolutions()),
        "windows": [min(w, r) for w, r in zip(config.windows, config.resolutions())],
        "timm_kwargs": timm_kwargs(config),
        "config": config.to_dict(),
    }


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


@space_app.command("show")
@click.option("--space", default=None, help=SPACE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def space_show(space: Optional[str], as_json: bool) -> None:
    """Knobs, their ranges per stage, the space size and which presets it contains."""
    from effvit_nas.space import load_space

    s = load_space(space)
    size = s.size()
    presets = s.presets_inside()
    if as_json:
        _print_json({"space": s.to_dict(), "source": s.source, "size": size, "presets": presets})
        return
    click.echo(f"space {s.name}  ({s.source})")
    if s.description:
        click.echo(f"  {s.description}")
    knobs = {k.name: k for k in s.knobs()}
    rows = []
    for prefix in ("heads", "head_dim", "depth", "qk_dim", "v_ratio", "ffn_ratio", "window"):
        rows.append([prefix] + [knobs[f"{prefix}_{i}"].describe() for i in range(s.num_stages)])
    click.echo(_table(["knob"] + [f"stage {i}" for i in range(s.num_stages)], rows))
    click.echo("width = heads x head_dim")
    click.echo(f"kernels (per head, all stages): {' | '.join(_fmt_tuple(k) for k in s.kernels)}")
    click.echo(f"img_size: {knobs['img_size'].describe()}   num_classes: {s.num_classes}")
    click.echo(f"size: {size:,} parameter combinations (10^{math.log10(size):.1f})")
    inside = [n for n, ok in presets.items() if ok]
    outside = [n for n, ok in presets.items() if not ok]
    click.echo(f"presets inside: {', '.join(inside) or 'none'}" + (f"   outside: {', '.join(outside)}" if outside else ""))


@space_app.command("sample")
@click.option("-n", "--num", "n", type=click.IntRange(min=1), default=5, show_default=True, help="How many configs to draw.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed gives the same configs.")
@click.option("--space", default=None, help=SPACE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (hash, params, macs, config per entry).")
def space_sample(n: int, seed: int, space: Optional[str], as_json: bool) -> None:
    """Draw N valid configs uniformly from the space, with their params and MACs."""
    import numpy as np

    from effvit_nas.space import load_space

    s = load_space(space)
    rng = np.random.default_rng(seed)
    records = [_describe(s.sample(rng)) for _ in range(n)]
    if as_json:
        _print_json(records)
        return
    rows = []
    for r in records:
        c = ArchConfig.from_dict(r["config"])
        rows.append(
            [
                r["hash"],
                _fmt_tuple(c.widths),
                _fmt_tuple(c.depths),
                _fmt_tuple(c.heads),
                _fmt_tuple(c.qk_dims),
                _fmt_tuple(c.v_ratios),
                _fmt_tuple(c.ffn_ratios),
                _fmt_tuple(c.windows),
                _fmt_tuple(c.kernels[: max(c.heads)]),
                c.img_size,
                f"{r['params'] / 1e6:.2f}",
                f"{r['macs'] / 1e6:.1f}",
            ]
        )
    headers = ["hash", "widths", "depths", "heads", "qk", "v_ratio", "ffn", "window", "kernels", "img", "params(M)", "MACs(M)"]
    click.echo(_table(headers, rows))


@model_app.command("info")
@click.argument("config")
@click.option("--img-size", type=click.IntRange(min=16), default=None, help="Build at this input size (px) instead of the config's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (params, macs, img_size, hash, config, ...).")
def model_info(config: str, img_size: Optional[int], as_json: bool) -> None:
    """Params, MACs, stage resolutions and the config of one architecture.

    CONFIG is a preset (M0..M5) or a YAML/JSON config file.
    """
    cfg = load_config(config)
    if img_size is not None:
        cfg = cfg.replace(img_size=img_size)
    r = _describe(cfg)
    if as_json:
        _print_json(r)
        return
    name = f" (preset {r['preset']})" if r["preset"] else ""
    click.echo(f"model {r['hash']}{name}")
    click.echo(f"params: {r['params']:,}   MACs: {r['macs'] / 1e6:.1f} M at {cfg.img_size}x{cfg.img_size}")
    click.echo(f"stage resolutions: {_fmt_tuple(tuple(r['resolutions']))}   effective windows: {_fmt_tuple(tuple(r['windows']))}")
    click.echo(f"timm-expressible: {'yes' if r['timm_kwargs'] else 'no'}")
    click.echo(cfg.to_yaml().rstrip())


@model_app.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_list(as_json: bool) -> None:
    """The released presets M0..M5 with params and MACs at 224 px."""
    from effvit_nas.config import PRESETS

    records = {name: _describe(cfg) for name, cfg in PRESETS.items()}
    if as_json:
        _print_json(records)
        return
    rows = [
        [n, r["hash"], _fmt_tuple(tuple(r["config"]["widths"])), _fmt_tuple(tuple(r["config"]["depths"])), _fmt_tuple(tuple(r["config"]["heads"])), f"{r['params']:,}", f"{r['macs'] / 1e6:.1f}"]
        for n, r in records.items()
    ]
    click.echo(_table(["preset", "hash", "widths", "depths", "heads", "params", "MACs(M)"], rows))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: bad input becomes one ``error:`` line and exit status 2."""
    try:
        rv = app.main(args=argv, prog_name="effvit-nas", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()

"""What the command modules share: option groups, tables, JSON, number formats, and naming
library settings by this command's flags."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import click

from effvit_nas.arch.config import MAX_IMG_SIZE
from effvit_nas.errors import MAX_SEED, SettingError
from effvit_nas.measure.backends import NAMES as BACKEND_NAMES
from effvit_nas.measure.settings import PAGES, PAIR_ESTIMATORS, backend_defaults_text
from effvit_nas.measure.windows import GAP_QUANTILE
from effvit_nas.trials.records import figure_cells, fmt_ms, target_columns

SPACE_HELP = "Search-space YAML file, or the name of a bundled space."
SPACE_HELP_DEFAULT = SPACE_HELP + " [default: efficientvit]"
# --seed of every command: checked by click, before a study or a file is created
SEED = click.IntRange(min=0, max=MAX_SEED)
STORAGE_HELP = "SQLAlchemy URL [default: $EFFVIT_NAS_STORAGE or sqlite:///effvit-nas.db]."


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns under a dashed rule."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_tuple(values: tuple) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def fmt_proxy(value: float, proxy: str | None) -> str:
    """Top-1 as a percentage for accuracy proxies (train, supernet), the raw score for zero-cost ones."""
    from effvit_nas.proxy.registry import is_accuracy

    return f"{100 * value:.1f} %" if is_accuracy(proxy) else f"{value:.4g}"


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def print_trials(records: list[dict], title: str) -> None:
    """The trial table of `show` and `search` (a trained top-1 column when any has one)."""
    click.echo(title + ":")
    if not records:
        click.echo("  (none)")
        return
    trained = any(r.get("trained_top1") is not None for r in records)
    # a column per target in its unit (rows without targets, as `search` prints them: img/s)
    columns = target_columns(records) or [("img/s", -1, "throughput")]
    rows = [
        _trial_row(r, columns) + ([f"{100 * r['trained_top1']:.1f} %" if r.get("trained_top1") is not None else "-"] if trained else [])
        for r in records
    ]
    headers = [
        "trial",
        "state",
        "hash",
        "widths",
        "depths",
        "params(M)",
        "MACs(M)",
        *(c[0] for c in columns),
        "proxy",
        "feasible",
        "pareto",
    ]
    click.echo(table(headers + (["trained top-1"] if trained else []), rows))


def _figure(value: Any, key: str) -> str:
    if not value:
        return "-"
    return f"{value:,.0f}" if key == "throughput" else fmt_ms(value)


def _trial_row(r: dict, columns: list[tuple[str, int, str]]) -> list[Any]:
    c = r.get("config") or {}
    cells = figure_cells(r, columns) if r.get("targets") else {columns[0][0]: r.get("throughput")}
    return [
        r["number"],
        r["state"],
        r.get("hash") or "-",
        fmt_tuple(tuple(c.get("widths", ()))) or "-",
        fmt_tuple(tuple(c.get("depths", ()))) or "-",
        f"{r['params'] / 1e6:.2f}" if r.get("params") else "-",
        f"{r['macs'] / 1e6:.1f}" if r.get("macs") else "-",
        *(_figure(cells.get(name), key) for name, _, key in columns),
        fmt_proxy(r["accuracy"], r.get("proxy")) if r.get("accuracy") is not None else "-",
        {True: "yes", False: "no", None: "-"}[r.get("feasible")],
        "*" if r.get("pareto") else "",
    ]


def device_kind(spec) -> str:
    """``cuda`` or ``cpu``: which paper defaults (batch, precision) a device request gets."""
    if spec.kind == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if spec.kind == "cuda" else "cpu"


def read_study(study_name: str, storage: str | None):
    """(study, StudyInfo, storage URL) of an existing study made by `search`."""
    from effvit_nas.measure.store import default_storage
    from effvit_nas.results.studies import StudyInfo, load_study

    url = storage or default_storage()
    study = load_study(study_name, url)
    return study, StudyInfo.of(study), url


def data_options(f, img_size_default: int | None = 64, img_size_help: str = "Proxy resolution (px).", data_default: str = "synthetic"):
    """The data options shared by `proxy`, `search`, `fidelity` and `train`."""
    options = [
        click.option(
            "--data",
            "data_source",
            default=data_default,
            show_default=True,
            help="synthetic, fashion-mnist, or a directory: ImageFolder (train/, val/), CIFAR python batches or MNIST-format IDX files.",
        ),
        click.option(
            "--img-size",
            type=click.IntRange(min=16, max=MAX_IMG_SIZE),
            default=img_size_default,
            show_default=img_size_default is not None,
            help=img_size_help,
        ),
        click.option("--classes", type=click.IntRange(min=2), default=None, help="Use the first K classes [synthetic default: 10]."),
        click.option("--train-per-class", type=click.IntRange(min=1), default=None, help="At most N training images per class."),
        click.option("--val-per-class", type=click.IntRange(min=1), default=None, help="At most N held-out images per class."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def bench_options(f):
    """The throughput-protocol options shared by `bench` and `search` (BenchSettings' fields)."""
    options = [
        click.option("--batch", type=int, default=None, help="Images per forward pass [default: 16 on CPU, 2048 on GPU]."),
        click.option("--threads", type=int, default=1, show_default=True, help="CPU intra-op threads."),
        click.option(
            "--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="[default: fp32 on CPU, fp16 autocast on GPU]"
        ),
        click.option(
            "--backend",
            type=click.Choice(list(BACKEND_NAMES)),
            default="trace",
            show_default=True,
            help="How the fused model runs: PyTorch (eager, trace, compile) or a deployment runtime (onnxruntime, openvino, "
            "tensorrt, executorch; optional ones install with `uv sync --extra NAME`).",
        ),
        click.option(
            "--metric",
            type=click.Choice(["throughput", "latency"]),
            default=None,
            help="throughput (default): images/s at --batch; latency: batch 1, p50 and p90 in ms. In search: the metric of a "
            "relative --budget (5ms is latency, 10k-imgs/s throughput by their unit).",
        ),
        click.option(
            "--ort-opt-level",
            "graph_opt",
            type=click.Choice(["disable", "basic", "extended", "all"]),
            default="all",
            show_default=True,
            help="ONNX Runtime's graph optimisation level (backend onnxruntime).",
        ),
        click.option("--warmup", "warmup_s", type=float, default=1.5, show_default=True, help="Seconds of warm-up iterations."),
        click.option("--duration", "measure_s", type=float, default=4.0, show_default=True, help="Most seconds of timed windows."),
        click.option(
            "--window", "window_s", type=float, default=0.25, show_default=True, help="Seconds per timed window (not in ratio mode)."
        ),
        click.option(
            "--pair-iters",
            type=click.IntRange(min=1),
            default=None,
            help="Ratio mode (--relative-to, search --paired): timed iterations of each model per turn, at least (more after a longer "
            f"settling) [default: {backend_defaults_text('pair_iters')}].",
        ),
        click.option(
            "--pair-settle",
            "pair_settle_s",
            type=click.FloatRange(0, 1),
            default=0.01,
            show_default=True,
            help="Ratio mode: seconds of untimed iterations that start each model's turn (0: none, as before 0.3).",
        ),
        click.option(
            "--ci-target",
            type=float,
            default=None,
            help="Stop timing once the 95 % interval of the figure is within this fraction of it (0: time the whole --duration) "
            f"[default: {backend_defaults_text('ci_target')}].",
        ),
        click.option(
            "--pair-estimator",
            type=click.Choice(PAIR_ESTIMATORS),
            default=None,
            help="Ratio mode: ratio: the trimmed mean of the pairs' speed ratios, times the reference's figure; gap: the "
            f"reference's time plus the gap between the two models' fastest {100 * GAP_QUANTILE:g} % of iterations "
            f"[default: {backend_defaults_text('pair_estimator')}].",
        ),
        *_memory_options(),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _memory_options() -> list:
    """How the timing process holds its memory (BenchSettings.malloc and .pages)."""
    return [
        click.option(
            "--malloc",
            type=click.Choice(["fixed", "system"]),
            default="fixed",
            show_default=True,
            help="fixed: glibc's heap thresholds fixed while timing, for figures that repeat; system: glibc's adaptive default.",
        ),
        click.option(
            "--pages",
            type=click.Choice(PAGES),
            default="huge",
            show_default=True,
            help="huge: the timing process asks for 2 MiB transparent huge pages (glibc.malloc.hugetlb), so a large model "
            "does not run at a level its process drew; system: the machine's default.",
        ),
    ]


def bench_settings(device: str, opts: Mapping[str, Any]):
    """BenchSettings from `bench_options`' values: the paper's defaults for ``device``'s kind."""
    from effvit_nas.measure.devices import parse_device
    from effvit_nas.measure.settings import BenchSettings

    keys = (
        "batch",
        "precision",
        "threads",
        "backend",
        "warmup_s",
        "measure_s",
        "window_s",
        "ci_target",
        "pair_iters",
        "pair_settle_s",
        "pair_estimator",
        "malloc",
        "pages",
    )
    later = {"metric": opts.get("metric") or "throughput", "graph_opt": opts.get("graph_opt", "all")}
    with setting_flags({"BenchSettings.batch": "--batch", "BenchSettings.metric": "--metric"}):
        return BenchSettings.for_device(device_kind(parse_device(device)), **{k: opts[k] for k in keys}, **later)


def data_config(opts: Mapping[str, Any], img_size: int | None = None):
    """DataConfig from `data_options`' values (and ``--seed``)."""
    from effvit_nas.data import DataConfig

    return DataConfig(
        opts["data_source"], img_size or opts["img_size"], opts["classes"], opts["train_per_class"], opts["val_per_class"], opts["seed"]
    )


def data_options_train(f):
    return data_options(f, img_size_default=None, img_size_help="Training resolution (px) [default: the config's img_size].")


@contextlib.contextmanager
def setting_flags(flags: Mapping[str, str]) -> Iterator[None]:
    """Inside the block, a SettingError of a setting in ``flags`` comes out as a UserError
    naming this command's flag for it instead (`main` names the others by field).

    Keys are settings (``"TrainRecipe.epochs"``) or an owner's wildcard (``"TrainRecipe.*"``);
    values may use ``{field}`` (``"--set {field}"``).
    """
    try:
        yield
    except SettingError as e:
        flag = flags.get(e.setting) or flags.get(e.setting.split(".")[0] + ".*")
        if flag is None:
            raise
        raise e.named(flag.format(field=e.field)) from None

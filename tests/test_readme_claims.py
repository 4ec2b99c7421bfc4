"""The README's and the docs' claims are the committed results' and the code's.

Numbers: every number in the prose and tables of a docs Results page must be found, to the
precision it is quoted at, in the results files that page names (``results/NAME.md`` or
``.json``); the README's in any results file; the headline tables row by row in their JSON.
Commands: every ``effvit-nas ...`` command quoted in the README or the docs names a real
command and only its real flags (read from the click commands), and every
``benchmarks/NAME.py ...`` command a real script and its real flags. Wording and line breaks
are free: nothing here pins a sentence. Nothing is measured; this reads files.
"""

from __future__ import annotations

import bisect
import json
import re
import shlex
import statistics
from functools import cache
from pathlib import Path

import click
import pytest

from effvit_nas.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").rglob("*.md"))
RESULTS_PAGES = sorted((ROOT / "docs" / "results").glob("*.md"))

# a number not glued to a word (M0, x3, 5e-4's exponent, efficientvit64 are not numbers; 1.5x is)
NUMBER = re.compile(r"(?<![\w.,/])(?<![a-zA-Z][\-−])[+\-−]?\d+(?:,\d{3})*(?:\.\d+)?(?!(?!x\b)\w)")
RESULT_FILE = re.compile(r"results/[\w./-]+?\.(?:md|json)")


def _prose(text: str) -> str:
    """The page without fenced code, inline code, snippet includes, link targets or HTML."""
    text = re.sub(r"^([ \t]*)(```|~~~).*?^\1\2", "", text, flags=re.M | re.S)
    text = re.sub(r"^\s*--8<--.*$", "", text, flags=re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"<[^>]+>", "", text)


def _value(token: str) -> float:
    return float(token.replace(",", "").replace("−", "-").lstrip("+"))


def _decimals(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


@cache
def _source_values(names: tuple[str, ...]) -> list[float]:
    """Every number in the given results files (JSON values too), also as a percentage."""
    values: list[float] = []
    for name in names:
        text = (ROOT / name).read_text()
        values += [abs(_value(t)) for t in NUMBER.findall(text)]
        if name.endswith(".json"):
            values += [abs(float(t)) for t in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)]
    values += [100 * v for v in values]
    return sorted(values)


def _found(token: str, values: list[float]) -> bool:
    x, tol = abs(_value(token)), 0.5 * 10 ** -_decimals(token) + 1e-9
    i = bisect.bisect_left(values, x - tol)
    return i < len(values) and values[i] <= x + tol


def _missing(text: str, sources: list[str]) -> list[str]:
    names = set(sources) | {s.removesuffix(".md") + ".json" for s in sources if s.endswith(".md")}
    names |= {s.removesuffix(".json") + ".md" for s in sources if s.endswith(".json")}
    values = _source_values(tuple(sorted(n for n in names if (ROOT / n).is_file())))
    return [t for t in NUMBER.findall(_prose(text)) if not _found(t, values)]


ALL_RESULTS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "results").glob("*.*") if p.suffix in (".md", ".json"))


@pytest.mark.parametrize("page", RESULTS_PAGES, ids=lambda p: p.name)
def test_every_number_on_a_results_page_is_in_its_results_files(page: Path):
    """A Results page may quote only what the reports it names say (the overview: any report)."""
    text = page.read_text()
    sources = ALL_RESULTS if page.name == "index.md" else RESULT_FILE.findall(text)
    assert sources, f"{page.name} names no results file"
    assert not _missing(text, sources), f"{page.name}: numbers not in {sorted(set(sources))}: {_missing(text, sources)}"


def test_every_number_in_the_readme_is_in_a_results_file():
    cited = "CVPR 2023"  # the paper's year, the one number in the README that is not a result
    assert not _missing(README.replace(cited, "CVPR"), ALL_RESULTS)


def test_the_checker_rejects_a_number_no_results_file_holds():
    """The check above can fail: an invented figure is caught, a rounded real one is not."""
    assert _missing("M0 runs at 12,345.67 img/s", ["results/model_speed_cpu.md"]) == ["12,345.67"]
    assert _missing("TPE 0.41, random 0.30 (1.37x)", ["results/search_quality.md"]) == []


# -- the headline tables, row by row -----------------------------------------------------------


def _row(row: dict) -> str:
    q1, q3 = row["throughput_iqr"]
    return (
        f"| {row['name']} | {100 * row['top1_mean']:.1f} ± {100 * row['top1_std']:.1f} | "
        f"{row['throughput_median']:,.0f} [{q1:,.0f}-{q3:,.0f}] | {row['params'] / 1e6:.2f} |"
    )


def test_headline_tables_match_the_searched_vs_handdesigned_results():
    """Each row of the headline tables (top-1 mean ± std, median [IQR] img/s, params) is the
    committed comparison's: every budget on its Results page, budget M0 in the README."""
    data = json.loads((ROOT / "results/searched_vs_handdesigned.json").read_text())
    page = (ROOT / "docs/results/searched-vs-handdesigned.md").read_text()
    for budget, comp in data.items():
        for row in comp["rows"]:
            assert _row(row) in page, (budget, _row(row))
    for row in data["M0"]["rows"]:
        assert _row(row) in README, _row(row)
        assert _row(row) in (ROOT / "docs/results/index.md").read_text(), _row(row)


def test_the_60k_figures_are_the_packed_training_records():
    """M2-60k's finished trainings are quoted from their train.json (packed)."""
    files = json.loads((ROOT / "results/searched_runs.json").read_text())["files"]
    page = " ".join((ROOT / "docs/results/searched-vs-handdesigned.md").read_text().split())
    m2 = files["results/searched/M2-60k/baseline-M2/seed-0/train.json"]
    assert m2["epochs"] == 30 and m2["data"]["train_per_class"] == 6000
    assert f"M2 seed 0 reaches {100 * m2['top1']:.1f} %" in page


def test_speed_table_matches_model_speed_results():
    page = (ROOT / "docs/results/model-speed.md").read_text()
    results = {r["model"]: r for r in json.loads((ROOT / "results/model_speed_cpu.json").read_text())["results"]}
    quoted = re.findall(r"^\| (M\d) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)x \|$", page, re.M)
    assert [q[0] for q in quoted] == [f"M{i}" for i in range(6)]
    for name, timm, ours, frozen, ratio in quoted:
        r = results[name]
        assert (int(timm), int(ours), int(frozen)) == tuple(round(r[k]) for k in ("timm_traced", "ours_traced", "ours_traced+opt")), name
        assert float(ratio) == round(r["speedup_opt_vs_timm_traced"], 2), name


def test_sampler_comparison_matches_search_quality_results():
    page = (ROOT / "docs/results/search-quality.md").read_text()
    rows = [
        line.split("|")
        for line in (ROOT / "results/search_quality.md").read_text().splitlines()
        if line.startswith("| tpe |") or line.startswith("| random |")
    ]
    runs = {s: [float(r[6]) for r in rows if r[1].strip() == s and len(r) == 12] for s in ("tpe", "random")}
    for sampler, hv in runs.items():
        assert f"| {sampler} | " in page and " / ".join(f"{v:.3f}" for v in hv) in page, sampler
    assert f"{statistics.median(runs['tpe']) / statistics.median(runs['random']):.2f}x" in page


# -- commands ----------------------------------------------------------------------------------


def _code(text: str) -> list[str]:
    """Command lines quoted in ``text``: fenced blocks (continuations joined) and inline code."""
    blocks = re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, flags=re.M | re.S)
    lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.M | re.S))


def _commands(text: str, marker: str) -> list[list[str]]:
    out = []
    for line in _code(text):
        line = line.strip().removeprefix("$ ")
        if marker not in line:
            continue
        line = re.split(r"\s#\s|\s[|>]\s?", " " + line.split(marker, 1)[1])[0]
        try:
            out.append(shlex.split(line))
        except ValueError:  # an unbalanced quote in prose
            continue
    return out


def _resolve(tokens: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = app
    while isinstance(command, click.Group) and tokens and not tokens[0].startswith("-"):
        sub = command.get_command(click.Context(command), tokens[0])
        assert sub is not None, f"no command {tokens[0]!r} in effvit-nas"
        command, tokens = sub, tokens[1:]
    return command, tokens


def _flags(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}


QUOTED = [
    (p.relative_to(ROOT).as_posix(), c)
    for p in [ROOT / "README.md", *DOCS, ROOT / "CONTRIBUTING.md"]
    for c in _commands(p.read_text(), "effvit-nas ")
]


def test_the_docs_quote_effvit_nas_commands():
    assert len(QUOTED) > 40 and any(f == "README.md" for f, _ in QUOTED)


def _unknown_flags(tokens: list[str]) -> list[str]:
    """The options in ``tokens`` that the command they name does not have."""
    command, rest = _resolve(tokens)
    flags = _flags(command)
    return [t.split("=")[0] for t in rest if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", t) and t.split("=")[0] not in flags]


@pytest.mark.parametrize("where,tokens", QUOTED, ids=[f"{f}:{' '.join(c)[:40]}" for f, c in QUOTED])
def test_every_quoted_command_and_flag_exists(where: str, tokens: list[str]):
    assert not _unknown_flags(tokens), f"{where}: `effvit-nas {' '.join(tokens)}`: {_unknown_flags(tokens)} are not its options"


def test_the_command_checker_rejects_a_made_up_flag_or_command():
    assert _unknown_flags(["search", "--budget", "M0", "--turbo", "--storage=x.db"]) == ["--turbo"]
    assert _unknown_flags(["space", "sample", "-n", "3", "--seed", "0"]) == []
    with pytest.raises(AssertionError):
        _resolve(["serch", "--budget", "M0"])


BENCH = [
    (p.relative_to(ROOT).as_posix(), m)
    for p in [ROOT / "README.md", *DOCS, ROOT / "CONTRIBUTING.md"]
    for line in _code(p.read_text())  # each quoted line apart: flags of the next quote are not this command's
    for m in re.findall(r"benchmarks/([a-z_]\w*\.py)([^`\n]*)", line)
]


@pytest.mark.parametrize("where,match", BENCH, ids=[f"{f}:{m[0]}" for f, m in BENCH])
def test_every_quoted_benchmark_command_exists(where: str, match: tuple[str, str]):
    script, args = match
    source = (ROOT / "benchmarks" / script).read_text()
    args = args.split("benchmarks/")[0]
    flags = re.findall(r"(?<!\S)(--[a-z][\w-]*)", args)
    words = args.split()
    if words and re.fullmatch(r"[a-z][\w-]*", words[0]) and "add_subparsers(" in source:
        # a script of subcommands (benchmarks/measurement_noise.py): the subcommand must exist and own the flags
        known = _subcommand_flags(script, words[0])
        assert known is not None, f"{where}: {script} has no subcommand {words[0]}"
        assert not [f for f in flags if f not in known], f"{where}: {script} {words[0]} has no {flags}"
    assert not [f for f in flags if f'"{f}"' not in source], f"{where}: {script} has no {flags}"


def _subcommand_flags(script: str, name: str) -> set[str] | None:
    """The option strings of subcommand ``name`` of ``benchmarks/SCRIPT``, read from its argparse parser."""
    import argparse
    import importlib

    ap = importlib.import_module(f"benchmarks.{script.removesuffix('.py')}").parser()
    (sub,) = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    chosen = sub.choices.get(name)
    return None if chosen is None else set(chosen._option_string_actions)


def test_the_benchmark_checker_knows_a_subcommand_and_its_flags():
    assert {"--repeats", "--img-size", "--malloc"} <= _subcommand_flags("measurement_noise.py", "precision")
    assert "--img-size" not in _subcommand_flags("measurement_noise.py", "anchored")
    assert _subcommand_flags("measurement_noise.py", "throughput") is None


def test_the_readme_is_short_and_runs_the_tests_as_ci_does():
    ci = (ROOT / ".ci/run").read_text()
    (test_command,) = re.findall(r"^uv run (pytest .*)$", ci, re.M)
    assert f"uv run {test_command}" in README
    assert "bash runners/demo.sh" in README and "bash .ci/run" in README
    assert len(README.splitlines()) <= 200
    assert "mkdocs build --strict" in ci

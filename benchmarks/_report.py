"""The one way a benchmark writes its results, and the packed run folders.

Every benchmark writes ``results/NAME.md`` (the human-readable report) and ``results/NAME.json``
(the record the docs and ``tests/test_readme_claims.py`` read) through :func:`write_report`, so
both files exist together and the JSON is always encoded the same way. Runs that answer one
question on several backends, or before and after a change, share one report as keyed sections
(:func:`write_section`) instead of a pair of files each:

    uv run python benchmarks/_report.py merge results/NAME "Title" KEY=results/OLD ...

Experiments that train many models (``searched_vs_handdesigned.py``, ``supernet_fashion.py``)
leave one folder per (model, seed) run. Those folders are not tracked one file each: they are
packed into one JSON per experiment (``results/searched_runs.json``,
``results/supernet_finetune_runs.json``) that holds every small file of the tree verbatim plus a
one-line summary per training. :func:`ensure_unpacked` restores the tree before a benchmark's
``--report-only`` reads it, so the reports regenerate from a fresh clone. By hand:

    uv run python benchmarks/_report.py pack results/searched results/searched_runs.json
    uv run python benchmarks/_report.py unpack results/searched_runs.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

# What a run folder may hold that is worth keeping: text records. Weights, checkpoints and ONNX
# files regenerate from the benchmark's command and are never packed.
PACKED_SUFFIXES = (".json", ".yaml", ".md", ".txt")


def backends_arg(ap: Any, text: str) -> list[str]:
    """The backends a comma-separated ``--backends`` names; an unknown one (or none) is refused
    by ``ap`` (an argparse parser) in one line, exit 2."""
    from effvit_nas.measure.backends import NAMES  # lazy: most benchmarks time no backend by name

    backends = [b for b in text.split(",") if b]
    bad = [b for b in backends if b not in NAMES]
    if bad or not backends:
        ap.error(f"--backends: unknown {', '.join(bad) or '(none)'} (choose from {', '.join(NAMES)})")
    return backends


def write_report(md_path: str | Path, markdown: str, record: Any) -> None:
    """Write ``NAME.md`` and, next to it, ``NAME.json`` in the one format every benchmark uses."""
    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown.rstrip("\n") + "\n")
    md_path.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def _demoted(markdown: str) -> str:
    """``markdown`` with every heading one level lower, to sit under the report's title."""
    return "\n".join("#" + line if re.match(r"#+ ", line) else line for line in markdown.rstrip("\n").splitlines())


def write_section(md_path: str | Path, key: str, title: str, markdown: str, record: Any) -> None:
    """Write ``record`` as section ``key`` of the report ``NAME.md``/``NAME.json``, keeping its
    other sections (a section of the same key is replaced, in its place). ``markdown`` is the
    section's own report, headings demoted one level under the report's title: ``title`` for a
    new report, an existing one keeps its own (several benchmarks may write one report). A
    report of another kind at that path is refused (SystemExit), not overwritten."""
    md_path = Path(md_path)
    old = md_path.with_suffix(".json")
    if old.exists():
        kept = json.loads(old.read_text())
        if not (isinstance(kept, dict) and {"title", "sections"} <= kept.keys()):
            raise SystemExit(f"{old} is a report without sections: write this run's section to a report of its own")
        title, sections = kept["title"], kept["sections"]
    else:
        sections = {}
    sections[key] = {"markdown": _demoted(markdown), "record": record}
    text = "\n\n".join([f"# {title}", *(s["markdown"] for s in sections.values())])
    write_report(md_path, text, {"title": title, "sections": sections})


def merge(out: str | Path, title: str, parts: list[str]) -> None:
    """Make the reports ``KEY=results/OLD`` (``OLD.md`` and ``OLD.json``) sections of ``out``,
    unchanged; the old pairs of files can then go."""
    for part in parts:
        key, old = part.split("=", 1)
        md = Path(old).with_suffix(".md").read_text()
        write_section(Path(out).with_suffix(".md"), key, title, md, json.loads(Path(old).with_suffix(".json").read_text()))


def _summary(path: str, record: dict[str, Any]) -> dict[str, Any]:
    """One row per training: what a reader looks for first in a ``train.json``."""
    history = record.get("history") or []
    recipe = record.get("recipe") or {}
    return {
        "run": str(Path(path).parent),
        "config_hash": record.get("config_hash"),
        "top1": record.get("top1"),
        "best_top1": max((h["top1"] for h in history if h.get("top1") is not None), default=None),
        "epochs": record.get("epochs"),
        "lr": recipe.get("lr"),
        "train_per_class": (record.get("data") or {}).get("train_per_class"),
        "init_from": record.get("init_from"),
    }


def pack(folder: str | Path, archive: str | Path) -> dict[str, Any]:
    """Pack every text record under ``folder`` into one JSON: ``files`` maps each path (relative
    to the repository root, as the benchmarks name them) to its content, parsed for JSON files;
    ``runs`` summarises each ``train.json``."""
    files: dict[str, Any] = {}
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file() and f.suffix in PACKED_SUFFIXES and "checkpoints" not in f.parts:
            files[f.as_posix()] = json.loads(f.read_text()) if f.suffix == ".json" else f.read_text()
    runs = [_summary(p, r) for p, r in files.items() if p.endswith("/train.json")]
    packed = {"folder": Path(folder).as_posix(), "runs": runs, "files": files}
    Path(archive).write_text(json.dumps(packed, indent=1) + "\n")
    return packed


def unpack(archive: str | Path, overwrite: bool = False) -> int:
    """Write the packed files back where they were; returns how many were written."""
    written = 0
    for name, content in json.loads(Path(archive).read_text())["files"].items():
        path = Path(name)
        if path.exists() and not overwrite:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=1) if path.suffix == ".json" else content)
        written += 1
    return written


def ensure_unpacked(archive: str | Path) -> None:
    """Restore a packed run tree (files already there are kept) so a report can read it."""
    if Path(archive).exists():
        unpack(archive)


def load_packed(archive: str | Path) -> dict[str, Any]:
    """The packed record: ``runs`` (one summary per training) and ``files``."""
    return json.loads(Path(archive).read_text())


if __name__ == "__main__":
    verb, *paths = sys.argv[1:]
    if verb == "pack" and len(paths) == 2:
        print(f"{len(pack(*paths)['files'])} files packed into {paths[1]}")
    elif verb == "unpack" and len(paths) == 1:
        print(f"{unpack(paths[0])} files written")
    elif verb == "merge" and len(paths) >= 3:
        merge(paths[0], paths[1], paths[2:])
        print(f"{len(paths) - 2} reports are sections of {paths[0]}.md")
    else:
        sys.exit("usage: _report.py pack FOLDER ARCHIVE | unpack ARCHIVE | merge OUT TITLE KEY=OLD...")

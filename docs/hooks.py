"""mkdocs hook: the plots in results/ are served beside the Results pages (site/results/...),
so a Results page links `searched_M0_pareto.png` and no picture is copied into docs/."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config) -> Files:
    for png in sorted((ROOT / "results").rglob("*.png")):
        name = png.relative_to(ROOT).as_posix()
        files.append(File(name, src_dir=str(ROOT), dest_dir=config["site_dir"], use_directory_urls=config["use_directory_urls"]))
    return files

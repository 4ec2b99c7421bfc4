"""Model cards: the README.md of an export folder.

`effvit-nas export` writes the card's head and its own sections; later steps (training, a
comparison with a preset) each own one ``## `` section. Every writer replaces only what it owns,
so exporting a trial again, retraining it or rerunning a comparison keeps what the others wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
import os
from pathlib import Path


def _parts(text: str) -> tuple[str, dict[str, str]]:
    """The text before the first ``## `` heading, and each section by its heading line (a
    ``## `` line inside a code fence is code, not a heading)."""
    chunks: list[list[str]] = [[]]
    fenced = False
    for line in text.splitlines(keepends=True):
        fenced ^= line.startswith("```")
        if line.startswith("## ") and not fenced:
            chunks.append([])
        chunks[-1].append(line)
    head, *sections = ["".join(c) for c in chunks]
    return head, {s.split("\n", 1)[0]: s for s in sections}


def _join(head: str, sections: Iterable[str]) -> str:
    return "\n\n".join(p.strip("\n") for p in [head, *sections] if p.strip()) + "\n"


def replace_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: into a temporary file beside it, then renamed over
    it, so a full disk leaves the earlier file (a card training has added to, an index of
    earlier exports) as it was instead of truncated."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_card(card: Path, text: str) -> None:
    """Write ``text`` as ``card``, keeping the sections of the card already there that ``text``
    has no heading for (those a later step added)."""
    if card.exists():
        head, own = _parts(text)
        later = [s for heading, s in _parts(card.read_text())[1].items() if heading not in own]
        text = _join(head, [*own.values(), *later])
    replace_text(card, text)


def set_section(card: Path, heading: str, body: str) -> None:
    """Section ``heading`` (a ``## `` line) of ``card`` set to ``body``: in its place when the
    card has it, appended otherwise; the rest of the card kept."""
    head, sections = _parts(card.read_text() if card.exists() else "")
    sections[heading] = f"{heading}\n\n{body}"
    replace_text(card, _join(head, sections.values()))

"""Reading weight files (safetensors) with damage reported as one line: shared by training's
checkpoints and the supernet's weights, so it sits below both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effvit_nas.errors import UserError


def read_weights(path: Path, remedy: str) -> dict[str, Any]:
    """The tensors of a safetensors file; a truncated or otherwise damaged one is a UserError
    naming the file and ``remedy`` (what to do), not a traceback from deep inside a run."""
    from safetensors import SafetensorError  # lazy: safetensors.torch loads torch
    from safetensors.torch import load_file  # lazy: loads torch

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise damaged(path, e, remedy) from None


def damaged(path: Path, error: BaseException, remedy: str) -> UserError:
    """The UserError for a file that failed to load: its name, the first line of ``error``
    (its type when it says nothing) and ``remedy`` (what to do)."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return UserError(f"{path} is damaged ({reason}): {remedy}")


def check_weights(path: Path, expected: dict[str, tuple[int, ...]], remedy: str) -> None:
    """UserError unless ``path`` loads and holds exactly ``expected``'s tensor names and shapes."""
    found = {k: tuple(v.shape) for k, v in read_weights(path, remedy).items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    if missing or extra or wrong:
        what = f"lacks {missing[0]}" if missing else f"has an unexpected {extra[0]}" if extra else f"has {wrong[0]} of the wrong shape"
        raise UserError(f"{path} does not fit this model (it {what}): {remedy}")

"""Training checkpoints: atomic writes (bindspace.fsio), a `latest` pointer, pruning, RNG capture."""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..errors import CheckpointError, first_line
from ..fsio import atomic_open, atomic_write

FORMAT = "bindspace-train"
LATEST = "latest"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write step_<step>.pt atomically, point `latest` at it, delete all but the newest `keep` step files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    # A crash leaves the previous checkpoint and pointer intact: each file appears whole or not at all.
    with atomic_open(path, "wb") as handle:
        torch.save({"format": FORMAT, **state}, handle)
    atomic_write(folder / LATEST, path.name)
    if keep > 0:
        steps = sorted(_step_files(folder), key=lambda p: _step_of(p))
        for old in steps[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def _step_files(folder: Path) -> list[Path]:
    return [p for p in folder.glob("step_*.pt") if _STEP_FILE.match(p.name)]


def _step_of(path: Path) -> int:
    match = _STEP_FILE.match(path.name)
    return int(match.group(1)) if match else -1


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint `latest` names, else the highest step file, else None."""
    pointer = folder / LATEST
    if pointer.is_file():
        candidate = folder / pointer.read_text().strip()
        if candidate.is_file():
            return candidate
    files = _step_files(folder)
    return max(files, key=_step_of) if files else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (tensors and plain values only: no arbitrary unpickling)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        reason = first_line(exc)
        raise CheckpointError(f"{path}: cannot read training checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bindspace training checkpoint")
    return state


def capture_rng() -> dict[str, Any]:
    """Every random generator's state, in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo `capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

"""Training checkpoints: atomic writes (temp file + fsync + rename), a `latest` pointer, pruning, RNG capture."""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError

FORMAT = "bindspace-train"
LATEST = "latest"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call write(file) on a temp file beside `path`, fsync it, then rename over `path`.

    A reader (or a crash) therefore sees either the old file or the complete new one,
    never a partial write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write step_<step>.pt atomically, point `latest` at it, delete all but the newest `keep` step files."""
    path = folder / f"step_{step:08d}.pt"
    atomic_write_bytes(path, lambda f: torch.save({"format": FORMAT, **state}, f))
    atomic_write_bytes(folder / LATEST, lambda f: f.write(path.name.encode()))
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
        raise CheckpointError(f"{path}: cannot read training checkpoint ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bindspace training checkpoint")
    return state


def capture_rng() -> dict[str, Any]:
    """Every random generator's state, in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
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

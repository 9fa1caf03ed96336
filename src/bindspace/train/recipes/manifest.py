"""Writing pair manifests (JSONL) atomically, shared by the dataset adapters."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ...errors import InputError
from ...fsio import atomic_open


def write_jsonl(rows: Sequence[dict], path: Path) -> int:
    """Write one JSON object per line (atomically, via bindspace.fsio); returns the row count; refuses to write none."""
    if not rows:
        raise InputError(str(path), "the dataset adapter found no pairs (check the dataset root and layout)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return len(rows)


def write_split(rows: Sequence[dict], path: Path, val_fraction: float = 0.0) -> int:
    """Write `path`, and with val_fraction > 0 every k-th row to `<stem>_val.jsonl` instead; returns rows written."""
    if not 0 <= val_fraction < 1:
        raise InputError(str(path), f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return write_jsonl(rows, path)
    every = max(int(round(1 / val_fraction)), 2)
    val = [row for i, row in enumerate(rows) if i % every == every - 1]
    train = [row for i, row in enumerate(rows) if i % every != every - 1]
    write_jsonl(val, path.with_name(f"{path.stem}_val{path.suffix}"))
    return write_jsonl(train, path) + len(val)


def check_root(root: Path) -> Path:
    """The dataset root, or an InputError when it is not a folder."""
    if not root.is_dir():
        raise InputError(str(root), "dataset root is not a folder")
    return root

"""Writing the manifest of an exported (ONNX) model directory; its format and reader are `model/onnx_manifest.py`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fsio import atomic_write
from ..integrity import sha256_file
from ..model.checkpoint import MANIFEST


def file_entry(root: Path, name: str) -> dict[str, Any]:
    """{"file", "sha256", "bytes"} of one file in an exported directory."""
    file = root / name
    return {"file": name, "sha256": sha256_file(file), "bytes": file.stat().st_size}


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically."""
    atomic_write(root / MANIFEST, json.dumps(manifest, indent=1).encode())

"""A model directory (`save_model_dir`, `bindspace convert`/`train`/`demo` output): its manifest, and
safetensors headers.

Read without torch: `bindspace index` of an unchanged folder learns the model and fingerprints
its weights from here, and loads no weights.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

MANIFEST = "manifest.json"
FORMAT = "bindspace-safetensors"


def is_model_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory written by `save_model_dir` / `bindspace convert`."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and sanity-check a model directory's manifest."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: cannot read manifest ({exc})") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{file}: not a bindspace model directory manifest")
    return manifest


def read_safetensors_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """A safetensors file's JSON header and the offset where tensor data starts."""
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if not 2 <= header_len <= 100_000_000:
            raise ValueError("invalid header length")
        return json.loads(handle.read(header_len)), 8 + header_len

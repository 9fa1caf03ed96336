"""The manifest of an exported (ONNX) model directory: its format, reading and checking it.

The file is `manifest.json`, like a safetensors model directory, so every place that
accepts a model directory recognises an exported one; `format` tells them apart. The reader
lives beside the runtime (`onnx_backend`); `export/manifest.py` writes it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from ..integrity import verified
from .model_dir import MANIFEST

FORMAT = "bindspace-onnx"
VERSION = 1
# Bumped when a loader's output for the same file changes; an exported directory records the
# version it was checked against, since the graph starts after preprocessing.
PREPROCESSING_VERSION = 1
MIN_OPSET = 18  # LayerNormalization (17) and the exporter's reductions with axes as inputs (18)
DEFAULT_OPSET = 18
OUTPUT_NAME = "scaled_embedding"  # postprocessed: unit vectors times the tower's logit scale


def supported_opset() -> int:
    """The newest opset this installation can both write and run."""
    try:
        import onnx

        return int(onnx.defs.onnx_opset_version())
    except ImportError:  # serving needs only onnxruntime; it runs opsets up to at least 21
        return 21


def is_onnx_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory written by `bindspace export` / `bindspace quantize`."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return False
    try:
        return json.loads(file.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_onnx_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load an exported directory's manifest and check its structure and opset."""
    root = Path(path)
    file = root / MANIFEST
    if not root.exists():
        raise CheckpointError(f"{root}: no such directory")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: cannot read manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not an exported bindspace ONNX directory")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{file}: manifest version {manifest.get('version')!r}, this bindspace reads {VERSION}")
    towers = manifest.get("towers")
    if not isinstance(towers, dict) or not towers:
        raise CheckpointError(f"{file}: lists no towers")
    opset = manifest.get("opset")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= supported_opset():
        raise CheckpointError(f"{file}: exported with ONNX opset {opset!r}; this installation runs opsets "
                              f"{MIN_OPSET}-{supported_opset()} (re-export with --opset, or upgrade onnxruntime)")
    return manifest


def onnx_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The model config an exported directory was made from."""
    return ModelConfig.from_dict(read_onnx_manifest(path)["config"])


def verify_files(root: Path, tower: str, entry: dict[str, Any]) -> None:
    """Raise a one-line CheckpointError when a tower's graph or weights file is missing or modified."""
    for item in [entry["graph"], *entry.get("external_data", [])]:
        file = root / item["file"]
        if not file.is_file():
            raise CheckpointError(f"{file}: listed in the manifest for {tower} but missing")
        if file.stat().st_size != item["bytes"] or not verified(file, item["sha256"]):
            raise CheckpointError(f"{file}: sha256 does not match the manifest (corrupt or modified file)")


def onnx_fingerprint(path: str | os.PathLike[str]) -> str:
    """Which weights an exported directory holds: the source weights' fingerprint for an fp32
    export (its vectors equal the torch model's), else one derived from its files' sha256."""
    import hashlib

    manifest = read_onnx_manifest(path)
    if manifest.get("fingerprint"):
        return str(manifest["fingerprint"])
    digest = hashlib.sha256(f"{manifest.get('source_fingerprint')}\x00{manifest['precision']}".encode())
    for tower in sorted(manifest["towers"]):
        entry = manifest["towers"][tower]
        for item in [entry["graph"], *entry.get("external_data", [])]:
            digest.update(f"{tower}\x00{item['sha256']}".encode())
    return f"onnx-{digest.hexdigest()[:40]}"

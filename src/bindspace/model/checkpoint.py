"""Reading and writing weights: the official .pth and our per-modality safetensors layout."""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..errors import CheckpointError, first_line
from ..fsio import atomic_path, atomic_write
from ..integrity import sha256_file, verified
from ..modality import Modality, as_modality
from .model_dir import FORMAT as FORMAT
from .model_dir import MANIFEST as MANIFEST
from .model_dir import is_model_dir as is_model_dir
from .model_dir import read_manifest as read_manifest
from .model_dir import read_safetensors_header

_GROUPS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")


def key_modality(key: str) -> Modality | None:
    """The modality a state-dict key belongs to (`modality_trunks.audio.blocks...` -> audio)."""
    parts = key.split(".")
    if len(parts) > 2 and parts[0] in _GROUPS:
        try:
            return as_modality(parts[1])
        except ValueError:
            return None
    return None


def load_state_dict(
    path: str | os.PathLike[str],
    modalities: Iterable[str | Modality] | None = None,
    *,
    verify: bool = True,
    dtype: torch.dtype | None = None,
    keep_float32: Collection[str] = (),
) -> dict[str, torch.Tensor]:
    """Read the tensors of the requested modalities from a .pth file or a model directory.

    With `dtype`, floating tensors are cast to it, except the keys in `keep_float32` (scales,
    LayerNorm), which are read as float32 straight from the file.

    A .pth is read by `read_pth` (`weights_only=True`, memory-mapped when possible); a model
    directory reads only the requested modalities' safetensors files, memory-mapped when
    no conversion is needed and one tensor at a time when `dtype` differs.
    """
    wanted = None if modalities is None else {as_modality(m) for m in modalities}
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    keep = frozenset(keep_float32) if dtype is not None else frozenset()
    if path.is_dir():
        return _load_model_dir(path, wanted, verify, dtype, keep)
    if path.suffix == ".safetensors":
        return _filter(_load_safetensors(path, dtype, keep), wanted)
    return _cast(_filter(read_pth(path), wanted), dtype, keep)


def _to(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def _dtype_of(key: str, dtype: torch.dtype | None, keep: frozenset[str]) -> torch.dtype | None:
    return torch.float32 if key in keep else dtype


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype | None,
          keep: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    for key, value in state.items():  # replace one by one so each source tensor can be freed early
        state[key] = _to(value, _dtype_of(key, dtype, keep))
    return state


def _filter(state: Mapping[str, torch.Tensor], wanted: set[Modality] | None) -> dict[str, torch.Tensor]:
    if wanted is None:
        return dict(state)
    return {k: v for k, v in state.items() if key_modality(k) in wanted}


# torch.save's legacy format starts with a pickled magic number (after the protocol header).
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
# What torch.load raises on a corrupt, truncated or unsafe file (the legacy unpickler adds the
# index/key/struct errors of a pickle cut short).
_UNREADABLE = (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError,
               IndexError, KeyError, struct.error)


def read_pth(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in a .pth file: the one reader for loading and fingerprinting.

    Always `weights_only=True`. A zip-format file (every `torch.save` since PyTorch 1.6) is
    memory-mapped, so only the pages actually used are read; a legacy (pre-1.6, non-zip) file
    cannot be memory-mapped and is read whole. A `{"model": ...}` / `{"state_dict": ...}` /
    `{"module": ...}` wrapper is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty checkpoint file")
    try:
        mmap = zipfile.is_zipfile(path)
        if not mmap and _LEGACY_MAGIC not in _head(path):
            raise ValueError("neither a zip archive nor a legacy torch.save file")
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except _UNREADABLE as exc:
        reason = first_line(exc)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (corrupt, truncated or unsafe): {reason}") from None
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors")
    return state


def _head(path: Path, size: int = 32) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def _load_safetensors(path: Path, dtype: torch.dtype | None = None,
                      keep: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        header = read_safetensors_header(path)[0]
        stored = {key: _SAFETENSORS_DTYPES[info["dtype"]] for key, info in header.items() if key != "__metadata__"}
        if dtype is None or all(d == _dtype_of(k, dtype, keep) or not d.is_floating_point for k, d in stored.items()):
            return load_file(str(path), device="cpu")  # memory-mapped, no copy
        return _read_safetensors_cast(path, dtype, keep)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated): {exc}") from None


def _read_safetensors_cast(path: Path, dtype: torch.dtype, keep: frozenset[str] = frozenset()
                           ) -> dict[str, torch.Tensor]:
    """Read tensors one at a time with plain reads and cast each, so peak memory is the cast
    result plus one source tensor (a memory map would keep every touched source page resident)."""
    state = {}
    header, base = read_safetensors_header(path)
    with open(path, "rb") as handle:
        for key, info in header.items():
            if key == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            handle.seek(base + begin)
            raw = bytearray(handle.read(end - begin))
            if len(raw) != end - begin:
                raise ValueError(f"tensor {key} is truncated")
            tensor = torch.frombuffer(raw, dtype=_SAFETENSORS_DTYPES[info["dtype"]]) if raw else torch.empty(0)
            state[key] = _to(tensor.reshape(info["shape"]), _dtype_of(key, dtype, keep))
    return state


def _load_model_dir(
    path: Path, wanted: set[Modality] | None, verify: bool, dtype: torch.dtype | None,
    keep: frozenset[str] = frozenset(),
) -> dict[str, torch.Tensor]:
    manifest = read_manifest(path)
    files: dict[str, Any] = manifest["files"]
    chosen = [m for m in files if wanted is None or as_modality(m) in wanted]
    if wanted is not None:
        absent = sorted(str(m) for m in wanted if str(m) not in files)
        if absent:
            raise CheckpointError(f"{path}: has no weights for {', '.join(absent)} (has: {', '.join(files)})")
    state: dict[str, torch.Tensor] = {}
    for modality in chosen:
        entry = files[modality]
        file = path / entry["file"]
        if not file.is_file():
            raise CheckpointError(f"{file}: listed in the manifest but missing")
        if verify and not verified(file, entry["sha256"]):
            raise CheckpointError(f"{file}: sha256 does not match the manifest (corrupt or modified file)")
        state.update(_load_safetensors(file, dtype, keep))
    return state


def save_model_dir(
    state: Mapping[str, torch.Tensor], config: ModelConfig, out_dir: str | os.PathLike[str], *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one safetensors file per modality plus a manifest with the config and sha256 sums."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_modality: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        owner = key_modality(key)
        if owner is None:
            raise CheckpointError(f"unexpected key {key!r}: not part of any modality tower")
        by_modality.setdefault(str(owner), {})[key] = tensor.contiguous()
    files = {}
    for modality, tensors in by_modality.items():
        file = out / f"{modality}.safetensors"
        with atomic_path(file) as tmp:
            save_file(tensors, str(tmp), metadata={"modality": modality, "config": config.name})
        files[modality] = {"file": file.name, "sha256": sha256_file(file), "tensors": len(tensors)}
    manifest = {"format": FORMAT, "version": 1, "config": config.to_dict(), "files": files, **(extra or {})}
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1))
    return out


def check_keys(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a CheckpointError listing missing / unexpected keys and shape mismatches."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k])}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k])
    )
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source}: checkpoint does not match the model"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = items[:8] + ([f"... and {len(items) - 8} more"] if len(items) > 8 else [])
            lines.append(f"  {title} ({len(items)}): " + "; ".join(shown))
    raise CheckpointError("\n".join(lines))

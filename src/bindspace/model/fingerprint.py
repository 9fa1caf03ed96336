"""A model fingerprint: which weights produced a table's vectors.

Choice (documented in docs/search.md): a sha256 over every tensor's name, shape and a fixed
sample of its values (up to 4 evenly spaced rows x 8 evenly spaced elements), each value
rounded to bfloat16. Why this and not a file hash:

- the same weights as a released .pth, a `bindspace convert` model directory, or a model
  already in memory give the same fingerprint (format- and path-independent);
- it reads a few KiB per tensor (lazily: mmap for .pth, row slices for safetensors), so
  fingerprinting the 4.5 GB huge checkpoint costs well under a second;
- float32 and bfloat16 copies of the same weights agree (values are rounded to bfloat16);
- any real change of weights (fine-tuning, another checkpoint) changes sampled values.

A model held in memory is fingerprinted from its own state dict, so pass `checkpoint` when
the model holds only some towers (the fingerprint must cover the whole checkpoint to agree
with one computed for other towers), or when it was loaded in float16.

Safetensors files (model directories) are sampled with numpy from the file's bytes, without
importing torch (seconds at start-up, for a command that may load no model); anything that
path does not cover bit for bit (.pth files, NaN samples, unusual dtypes) goes through torch.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..errors import CheckpointError

if TYPE_CHECKING:
    import torch

SCHEME = "w1"
ROWS = 4
PER_ROW = 8

# key -> (shape, reader(row) -> 1-D tensor of that row's values); reader(None) reads a 0-d tensor.
Reader = Callable[[int | None], "torch.Tensor"]
# safetensors dtype -> numpy dtype of its little-endian values (BF16 is read as its 16 raw bits)
NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
                "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def model_fingerprint(model: Any = None, checkpoint: str | os.PathLike[str] | None = None) -> str:
    """Fingerprint of the weights in `checkpoint` (a .pth, .safetensors or model directory), else of `model`."""
    from .onnx_manifest import is_onnx_dir, onnx_fingerprint

    if checkpoint is not None and is_onnx_dir(checkpoint):
        return onnx_fingerprint(checkpoint)  # an fp32 export keeps its source weights' fingerprint
    if checkpoint is None and isinstance(getattr(model, "fingerprint", None), str):
        return str(model.fingerprint)  # an ONNX Runtime model knows its directory's
    if checkpoint is not None:
        quick = _numpy_fingerprint(Path(checkpoint))
        if quick is not None:
            return quick
        tensors = _checkpoint_tensors(Path(checkpoint))
    elif model is not None:
        tensors = list(_state_tensors(model.state_dict()))
    else:
        raise ValueError("model_fingerprint needs a model or a checkpoint")
    if not tensors:
        raise CheckpointError(f"{checkpoint or 'model'}: no tensors to fingerprint")
    ordered = sorted(tensors, key=lambda t: t[0])
    return _digest((key, tuple(shape), _sample(shape, read)) for key, shape, read in ordered)


def _digest(samples: Iterable[tuple[str, tuple[int, ...], bytes]]) -> str:
    """The fingerprint of (key, shape, sampled bytes) in key order: what both the torch and numpy paths hash."""
    digest = hashlib.sha256()
    for key, shape, sample in samples:
        digest.update(f"{key}\x00{shape}\x00".encode())
        digest.update(sample)
    return f"{SCHEME}-{digest.hexdigest()[:40]}"


def _model_dir_files(path: Path) -> list[Path]:
    """The safetensors files a model directory's manifest lists."""
    from .model_dir import read_manifest

    return [path / entry["file"] for entry in read_manifest(path)["files"].values()]


def _positions(n: int, k: int) -> list[int]:
    """Up to k distinct, evenly spaced positions in range(n), first and last included."""
    # The rounded points of np.linspace(0, n - 1, min(n, k)), computed as it does (i * step, the last
    # point exactly n - 1) without its per-call overhead: this runs for every row of every tensor.
    num = min(n, k)
    if num <= 0:
        return []
    if num == 1:
        return [0]
    step = (n - 1) / (num - 1)
    return sorted({round(i * step) for i in range(num - 1)} | {n - 1})


def _sample(shape: tuple[int, ...], read: Reader) -> bytes:
    import torch

    if len(shape) == 0:
        values = read(None).reshape(1)
    else:
        parts = []
        for row in _positions(shape[0], ROWS):
            flat = read(row).reshape(-1)
            if flat.numel():
                parts.append(flat[_positions(flat.numel(), PER_ROW)])
        if not parts:
            return b""
        values = torch.cat(parts)
    # bfloat16 so float32 and bfloat16 loads of the same weights agree; int16 view to get raw bytes.
    return values.detach().to(torch.float32).to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes()


def _state_tensors(state: dict[str, torch.Tensor]) -> Iterator[tuple[str, tuple[int, ...], Reader]]:
    import torch

    for key, tensor in state.items():
        if isinstance(tensor, torch.Tensor):
            yield key, tuple(tensor.shape), _tensor_reader(tensor)


def _tensor_reader(tensor: torch.Tensor) -> Reader:
    return lambda row: tensor if row is None else tensor[row]


def _checkpoint_tensors(path: Path) -> list[tuple[str, tuple[int, ...], Reader]]:
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        return [t for file in _model_dir_files(path) for t in _safetensors_tensors(file)]
    if path.suffix == ".safetensors":
        return _safetensors_tensors(path)
    from .checkpoint import read_pth  # the one .pth reader: memory-mapped, legacy fallback

    return list(_state_tensors(read_pth(path)))


def _safetensors_tensors(file: Path) -> list[tuple[str, tuple[int, ...], Reader]]:
    from safetensors import safe_open

    if not file.is_file():
        raise CheckpointError(f"{file}: listed in the manifest but missing")
    out = []
    try:
        handle = safe_open(str(file), framework="pt")
        for key in handle.keys():
            piece = handle.get_slice(key)
            shape = tuple(piece.get_shape())
            out.append((key, shape, _slice_reader(handle, key, piece, shape)))
    except (OSError, ValueError, Exception) as exc:  # noqa: BLE001 - SafetensorError is not an OSError
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None
    return out


def _slice_reader(handle: Any, key: str, piece: Any, shape: tuple[int, ...]) -> Reader:
    def read(row: int | None) -> torch.Tensor:
        if row is None or not shape:
            return handle.get_tensor(key)
        return piece[row : row + 1][0]  # (1, ...) -> (...): only that row is read from disk

    return read


# ---------------------------------------------------------------------------- without torch

def _numpy_fingerprint(path: Path) -> str | None:
    """`model_fingerprint` of a model directory or .safetensors file from its bytes, or None where only the
    torch path is sure to give the same digest (or the error it gives)."""
    from .model_dir import is_model_dir, read_safetensors_header

    if is_model_dir(path):
        try:
            files = _model_dir_files(path)
        except (CheckpointError, KeyError, TypeError):
            return None
    elif path.is_file() and path.suffix == ".safetensors":
        files = [path]
    else:
        return None
    entries: dict[str, tuple[tuple[int, ...], Path, int, str]] = {}  # key -> (shape, file, data start, dtype)
    try:
        for file in files:
            header, base = read_safetensors_header(file)
            size = file.stat().st_size
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                shape, dtype = tuple(int(n) for n in info["shape"]), info["dtype"]
                begin, end = (int(n) for n in info["data_offsets"])
                if key in entries or dtype not in NUMPY_DTYPES or base + end > size:
                    return None  # a duplicate, an unusual dtype or a damaged file: the torch path decides
                if end - begin != math.prod(shape) * np.dtype(NUMPY_DTYPES[dtype]).itemsize:
                    return None
                entries[key] = (shape, file, base + begin, dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not entries:
        return None
    samples = []
    handles = {file: open(file, "rb") for file in files}  # noqa: SIM115 - closed below
    try:
        for key in sorted(entries):
            shape, file, start, dtype = entries[key]
            sample = _numpy_sample(handles[file], start, shape, dtype)
            if sample is None:
                return None
            samples.append((key, shape, sample))
    finally:
        for handle in handles.values():
            handle.close()
    return _digest(samples)


def _numpy_sample(handle: BinaryIO, start: int, shape: tuple[int, ...], dtype: str) -> bytes | None:
    """`_sample`'s bytes for one stored tensor (None when a sampled value is NaN: torch's bfloat16 NaN
    pattern depends on its kernel, so the torch path computes those)."""
    kind = np.dtype(NUMPY_DTYPES[dtype])
    row_numel = math.prod(shape[1:])
    rows = [None] if not shape else _positions(shape[0], ROWS)
    parts = []
    for row in rows:
        handle.seek(start + (0 if row is None else row * row_numel * kind.itemsize))
        flat = np.frombuffer(handle.read(row_numel * kind.itemsize), dtype=kind)  # one row, (row_numel,)
        if row is None:
            parts.append(flat)
        elif flat.size:
            parts.append(flat[_positions(flat.size, PER_ROW)])
    if not parts:
        return b""
    values = np.concatenate(parts)
    if dtype == "BF16":
        values = (values.astype(np.uint32) << 16).view(np.float32)  # bfloat16 bits -> the same float32
    values = values.astype(np.float32)
    if np.isnan(values).any():
        return None
    bits = values.view(np.uint32)
    # float32 -> bfloat16, rounding to nearest even as torch does: add 0x7FFF plus the kept part's lowest bit
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")
    return rounded.tobytes()

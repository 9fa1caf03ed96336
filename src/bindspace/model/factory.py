"""`create_model`: build only the requested towers and fill them from a checkpoint."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..config import ModelConfig
from ..errors import BindspaceError, CheckpointError, ConfigError
from ..modality import Modality, as_modality
from . import checkpoint as ckpt
from .contract import EmbeddingModel
from .hub import resolve_pretrained
from .imagebind import ImageBindModel
from .meta import meta_device
from .onnx_manifest import is_onnx_dir
from .presets import get_config
from .presets import manifest_config as manifest_config  # its home before presets; callers import it from here

if TYPE_CHECKING:
    from .onnx_backend import OnnxModel

# model/ sits below export/, which builds int8 towers (ONNX export + quantization): export.int8_cache
# registers its builder here when imported (`import bindspace`'s create_model and --dtype int8 import it).
Int8Builder = Callable[..., Path]  # (towers, fingerprint, recipe, load_torch) -> folder OnnxModel opens
_INT8_BUILDER: list[Int8Builder] = []


def encoder_config(encoder: str | os.PathLike[str], preset: str | None,
                   field: str) -> tuple[str | None, Path, ModelConfig]:
    """A recipe's frozen encoder: (its preset, None for a model directory; its path; its config).

    A checkpoint that is not a model directory is read as `preset` (default imagebind_huge); a
    missing path is a ConfigError naming the recipe's `field`.
    """
    path = Path(os.path.expanduser(encoder))
    if not path.exists():
        raise ConfigError(f"{field}: {path}: encoder checkpoint not found")
    name = None if ckpt.is_model_dir(path) else (preset or "imagebind_huge")
    return name, path, manifest_config(path) if name is None else get_config(name)


def register_int8_builder(builder: Int8Builder) -> None:
    """Make create_model(dtype="int8") build and cache int8 towers with `builder` (export.int8_cache registers)."""
    _INT8_BUILDER[:] = [builder]


def create_model(
    name: str | ModelConfig | None = None,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    modalities: Iterable[str | Modality] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    verify: bool = True,
) -> EmbeddingModel:
    """Build a model in eval mode; random weights unless `pretrained` or `checkpoint` is given.

    `name` may be omitted when `checkpoint` is a model directory (its manifest names the config).
    Only the towers in `modalities` are built and only their weights are read. `dtype` may be
    "auto" (see `bindspace.precision`), or "int8": ONNX Runtime int8 towers, exported and
    quantized for this CPU on first use and cached (`bindspace.export.int8_cache`). A directory
    written by `bindspace export` loads as an ONNX Runtime model with the same calling contract
    (it runs at its exported precision). Torch towers are an `ImageBindModel`, ONNX ones an
    `OnnxModel`: both keep the `EmbeddingModel` contract.
    """
    if pretrained and checkpoint is None:
        checkpoint = resolve_pretrained(name if isinstance(name, str) else "imagebind_huge")
    if isinstance(dtype, str) and dtype.strip().lower() == "int8":
        return _int8_model(name, checkpoint, modalities, device=device, verify=verify)
    if checkpoint is not None:
        if is_onnx_dir(checkpoint):
            from .onnx_backend import load_onnx_model

            wanted_config = get_config(name) if isinstance(name, str) else name
            return load_onnx_model(checkpoint, wanted_config, modalities, device=device, verify=verify)
    return _torch_model(name, checkpoint, modalities, device=device, dtype=dtype, verify=verify)


def _torch_model(name: str | ModelConfig | None, checkpoint: str | os.PathLike[str] | None,
                 modalities: Iterable[str | Modality] | None, *, device: str | torch.device,
                 dtype: torch.dtype | str, verify: bool) -> ImageBindModel:
    """Torch towers in eval mode: random weights without `checkpoint`, else its weights (not an ONNX directory)."""
    from ..precision import resolve_dtype

    dtype = resolve_dtype(dtype, device)
    config = _resolve_config(name, checkpoint)
    wanted = None if modalities is None else [as_modality(m) for m in modalities]
    if checkpoint is None:
        model = ImageBindModel(config, wanted)
        model.init_weights()
        return model.to(device=device).to_precision(dtype).eval()

    with meta_device():
        model = ImageBindModel(config, wanted)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = ckpt.load_state_dict(checkpoint, model.modalities, verify=verify, dtype=dtype,
                                 keep_float32=model.float32_keys())
    ckpt.check_keys(expected, state, str(checkpoint))
    for key in state:  # one tensor at a time, so a GPU load never holds two copies
        state[key] = state[key].to(device)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _int8_model(name: str | ModelConfig | None, checkpoint: str | os.PathLike[str] | None,
                modalities: Iterable[str | Modality] | None, *, device: str | torch.device,
                verify: bool) -> OnnxModel:
    """The int8 towers of these weights from the cache, built on first use (see export.int8_cache)."""
    if checkpoint is None:
        raise BindspaceError("dtype='int8' quantizes real weights: pass pretrained=True or checkpoint=")
    if is_onnx_dir(checkpoint):
        raise BindspaceError(f"{Path(checkpoint)}: an exported directory runs at its own precision; "
                             "dtype='int8' quantizes torch weights (or: bindspace quantize)")
    if not _INT8_BUILDER:
        raise BindspaceError("dtype='int8' needs the int8 builder: import bindspace.export.int8_cache first "
                             "(bindspace.create_model and --dtype int8 do)")
    from ..precision import cpu_flags
    from .fingerprint import model_fingerprint
    from .int8_recipe import quantization_recipe
    from .onnx_backend import OnnxModel

    config = _resolve_config(name, checkpoint)
    towers = list(config.towers) if modalities is None else [as_modality(m) for m in modalities]
    absent = [str(t) for t in towers if t not in config.towers]
    if absent:
        raise BindspaceError(f"{config.name} has no {', '.join(absent)} tower (has: {', '.join(config.towers)})")

    def load_torch(wanted: list[Modality]) -> ImageBindModel:
        return _torch_model(config, checkpoint, wanted, device="cpu", dtype=torch.float32, verify=verify)

    folder = _INT8_BUILDER[0](towers, model_fingerprint(None, checkpoint), quantization_recipe(cpu_flags()),
                             load_torch)
    return OnnxModel(folder, towers, device=device)


def _resolve_config(name: str | ModelConfig | None, checkpoint: str | os.PathLike[str] | None) -> ModelConfig:
    if isinstance(name, ModelConfig):
        return name
    stored = manifest_config(checkpoint) if checkpoint is not None and ckpt.is_model_dir(checkpoint) else None
    if name is None:
        if stored is None:
            raise BindspaceError(
                "no model name given and the checkpoint does not name its config "
                "(pass a preset name, see bindspace.list_models(), or a model directory)"
            )
        return stored
    config = get_config(name)
    if stored is None:
        return config
    if stored.name != config.name and stored.towers != config.towers:
        raise CheckpointError(f"{Path(checkpoint or '')}: holds a {stored.name!r} model, not {config.name!r}")
    # A directory's towers may differ from the preset it is named after (heads, scales) with every weight
    # shape the same: only its own config computes what it was trained to compute.
    return stored

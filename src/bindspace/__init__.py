"""bindspace: ImageBind's six-modality embedding space as a library, a CLI and a service."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ModelConfig, TowerConfig
from .errors import BindspaceError, CheckpointError, ConfigError, InputError
from .modality import Modality

if TYPE_CHECKING:
    from .embedding import Embedder as Embedder
    from .model import ImageBindModel, create_model
    from .model.presets import get_config, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "Modality", "ModelConfig", "TowerConfig", "ImageBindModel", "create_model",
    "list_models", "get_config", "register_model",
    "BindspaceError", "InputError", "CheckpointError", "ConfigError",
]


# Loaded on first use, so that `import bindspace` (and `bindspace --help`) does not import torch.
_LAZY = {"ImageBindModel": ".model", "create_model": ".model", "get_config": ".model.presets",
         "list_models": ".model.presets", "register_model": ".model.presets"}


def __getattr__(name: str) -> Any:  # heavy submodules load on first use
    if name in _LAZY:
        import importlib

        if name == "create_model":  # registers the int8 builder, so create_model(dtype="int8") works
            importlib.import_module(".export.int8_cache", __name__)
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name == "Embedder":
        from .embedding import Embedder as Embedder

        return Embedder
    if name in ("preprocess", "tasks"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bindspace' has no attribute {name!r}")

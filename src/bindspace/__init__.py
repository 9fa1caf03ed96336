"""bindspace: ImageBind's six-modality embedding space as a library, a CLI and a service."""
from __future__ import annotations

from .config import ModelConfig, TowerConfig
from .errors import BindspaceError, CheckpointError, ConfigError, InputError
from .modality import Modality
from .model import ImageBindModel, create_model
from .model.presets import get_config, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "Modality", "ModelConfig", "TowerConfig", "ImageBindModel", "create_model",
    "list_models", "get_config", "register_model",
    "BindspaceError", "InputError", "CheckpointError", "ConfigError",
]


def __getattr__(name: str):  # heavy submodules load on first use
    if name == "Embedder":
        from .embedding import Embedder

        return Embedder
    if name in ("preprocess", "tasks"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bindspace' has no attribute {name!r}")

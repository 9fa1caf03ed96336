"""The model: stems, towers, ImageBindModel, checkpoint I/O.

The names below load on first use: commands that only read a model directory's manifest or
fingerprint its weights (an unchanged re-index) never import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import load_state_dict as load_state_dict
    from .checkpoint import save_model_dir as save_model_dir
    from .factory import create_model as create_model
    from .imagebind import ImageBindModel as ImageBindModel

_HOMES = {"load_state_dict": ".checkpoint", "save_model_dir": ".checkpoint", "create_model": ".factory",
          "ImageBindModel": ".imagebind"}

__all__ = ["ImageBindModel", "create_model", "load_state_dict", "save_model_dir"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

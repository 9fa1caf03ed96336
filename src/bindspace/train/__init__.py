"""Bind a new modality to a frozen embedding space (InfoNCE against an anchor tower), LoRA, torchrun/DDP.

    from bindspace.train import train, load_config
    out = train("recipes/audioset_audio.toml")          # or train(load_config(...))
    out.model_dir                                        # a model directory for create_model / --checkpoint

The heavy modules load on first use, so `import bindspace.train` stays cheap.
"""
from __future__ import annotations

from typing import Any

from .config import (
    AugmentConfig,
    DataConfig,
    LoraConfig,
    LossConfig,
    OptimConfig,
    RunConfig,
    TowerSpec,
    TrainConfig,
    load_config,
)

__all__ = [
    "train", "export_checkpoint", "load_config", "TrainConfig", "TowerSpec", "DataConfig", "AugmentConfig",
    "OptimConfig", "LossConfig", "RunConfig", "LoraConfig", "Trainer", "BindModel", "info_nce", "run_demo",
]

_LAZY = {
    "train": ("api", "train"),
    "export_checkpoint": ("api", "export_checkpoint"),
    "Trainer": ("loop", "Trainer"),
    "BindModel": ("build", "BindModel"),
    "info_nce": ("loss", "info_nce"),
    "run_demo": ("demo", "run_demo"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'bindspace.train' has no attribute {name!r}")

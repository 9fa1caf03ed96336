"""LoRA adapters on a tower's transformer blocks via peft: inject, save only the adapters, merge cleanly.

Our attention keeps `nn.MultiheadAttention`'s fused `in_proj_weight` as a raw Parameter
(so released checkpoints load unchanged); peft adapts it through `target_parameters`,
and adapts `out_proj`, `fc1` and `fc2` as ordinary `nn.Linear` targets. Merging folds
B·A into the weights and removes the wrappers, so the tower's state-dict keys are
exactly the original ones again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BindspaceError, CheckpointError
from ..fsio import atomic_path, atomic_write
from .config import LoraConfig

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise BindspaceError("LoRA needs peft: pip install 'bindspace[train]'") from None
    return peft


def peft_config(config: LoraConfig) -> Any:
    """The peft LoraConfig for our block layout."""
    peft = _peft()
    modules = [t for t in config.targets if t != "in_proj"]
    params = ["in_proj_weight"] if "in_proj" in config.targets else []
    kwargs: dict[str, Any] = {"r": config.rank, "lora_alpha": config.alpha, "lora_dropout": config.dropout,
                              "target_modules": modules or None}
    if params:
        kwargs["target_parameters"] = params
    try:
        return peft.LoraConfig(**kwargs)
    except TypeError as exc:  # peft < 0.17 has no target_parameters
        raise BindspaceError(f"LoRA on in_proj needs peft >= 0.17 (have {peft.__version__}): upgrade peft or "
                             f"drop \"in_proj\" from target.lora.targets ({exc})") from None


def apply_lora(module: nn.Module, config: LoraConfig) -> nn.Module:
    """Inject adapters into `module` in place and freeze everything but them; returns the module."""
    peft = _peft()
    for param in module.parameters():
        param.requires_grad_(False)
    module = peft.inject_adapter_in_model(peft_config(config), module)
    for name, param in module.named_parameters():
        param.requires_grad_("lora_" in name)
    return module


def has_lora(module: nn.Module) -> bool:
    """True when any adapter layer is present."""
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in module.modules())


def lora_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (peft's naming, adapter name stripped)."""
    peft = _peft()
    return {k: v.detach().cpu().contiguous() for k, v in peft.get_peft_model_state_dict(module).items()}


def load_lora_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved adapter tensors into an injected module; raises if any are missing or unexpected."""
    peft = _peft()
    result = peft.set_peft_model_state_dict(module, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise CheckpointError(f"adapter tensors do not match the model: unexpected {unexpected[:4]}")
    expected = set(lora_state_dict(module))
    missing = expected - set(state)
    if missing:
        raise CheckpointError(f"adapter tensors missing: {sorted(missing)[:4]}")


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and unwrap it (in place); returns the module."""
    from peft.tuners.lora import LoraLayer

    for name, child in list(module.named_children()):
        merge_lora(child)  # innermost first: a wrapped attention holds a wrapped out_proj
        if isinstance(child, LoraLayer):
            child.merge()
            setattr(module, name, child.get_base_layer())
    return module


def save_adapters(module: nn.Module, config: LoraConfig, out_dir: str | os.PathLike[str],
                  extra: dict[str, Any] | None = None) -> Path:
    """Write adapter_model.safetensors + adapter_config.json (only the adapters, atomically)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / ADAPTER_FILE) as tmp:
        save_file(lora_state_dict(module), str(tmp))
    meta = {"rank": config.rank, "alpha": config.alpha, "dropout": config.dropout, "targets": list(config.targets),
            **(extra or {})}
    atomic_write(out / ADAPTER_CONFIG, json.dumps(meta, indent=1))
    return out


def load_adapters(module: nn.Module, adapter_dir: str | os.PathLike[str]) -> LoraConfig:
    """Inject adapters described by `adapter_dir` into `module` and load their weights; returns their config."""
    from safetensors.torch import load_file

    folder = Path(adapter_dir)
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text())
        state = load_file(str(folder / ADAPTER_FILE))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot read LoRA adapters ({exc})") from None
    config = LoraConfig(rank=int(meta["rank"]), alpha=float(meta["alpha"]), dropout=float(meta.get("dropout", 0.0)),
                        targets=tuple(meta["targets"]))
    apply_lora(module, config)
    load_lora_state_dict(module, state)
    return config

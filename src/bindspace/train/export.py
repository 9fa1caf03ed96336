"""Export a trained tower as a bindspace model directory that `create_model` and every `--checkpoint` load."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..modality import Modality
from ..model import checkpoint as ckpt
from .build import BindModel


def export_model(
    bind: BindModel,
    out_dir: str | os.PathLike[str],
    *,
    base_config: ModelConfig | None = None,
    base_checkpoint: str | os.PathLike[str] | None = None,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the anchor and trained target towers (LoRA merged), plus the base checkpoint's other towers.

    With `base_checkpoint` (the anchor's weights, e.g. imagebind_huge), the towers neither
    trained nor used as anchor (text, depth, ...) are copied from it, so the new modality
    can be compared with all of them (e.g. zero-shot against text it never saw).
    """
    from .lora import has_lora, merge_lora

    model = bind.model
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if ckpt.key_modality(k) not in (bind.target,)}
    trunk = model.modality_trunks[bind.target]
    if _peft_available() and has_lora(trunk):
        trunk = merge_lora(copy.deepcopy(trunk))
    target_state = {}
    for group, module in (("modality_preprocessors", model.modality_preprocessors[bind.target]),
                          ("modality_trunks", trunk),
                          ("modality_heads", model.modality_heads[bind.target]),
                          ("modality_postprocessors", model.modality_postprocessors[bind.target])):
        for key, value in module.state_dict().items():
            target_state[f"{group}.{bind.target}.{key}"] = value.detach().cpu()
    state.update(target_state)
    towers: dict[Modality, Any] = dict(model.config.towers)
    if base_config is not None and base_checkpoint is not None:
        others = [m for m in base_config.towers if m not in towers]
        if others:
            state.update(ckpt.load_state_dict(base_checkpoint, others))
            towers.update({m: base_config.towers[m] for m in others})
    ordered = {m: towers[m] for m in Modality if m in towers}  # canonical tower order
    config = ModelConfig(name=name or model.config.name, embed_dim=model.config.embed_dim, towers=ordered)
    _check_loadable(config, state)
    return ckpt.save_model_dir({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                               config, out_dir, extra={"training": extra or {}})


def _peft_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("peft") is not None  # without peft there can be no adapters


def _check_loadable(config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    """Fail before writing if the exported weights would not load into the exported config."""
    from ..model.imagebind import ImageBindModel
    from ..model.meta import meta_device

    with meta_device():
        shell = ImageBindModel(config)
    ckpt.check_keys({k: tuple(v.shape) for k, v in shell.state_dict().items()}, state, "export")

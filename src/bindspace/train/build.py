"""The two-tower training model: a frozen anchor tower and a trained target tower in one ImageBindModel."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ..config import ModelConfig, TowerConfig
from ..errors import ConfigError
from ..layers.heads import LogitScale
from ..modality import Modality, as_modality
from ..model import checkpoint as ckpt
from ..model.factory import manifest_config
from ..model.imagebind import ImageBindModel
from ..model.presets import get_config
from .config import LoraConfig, LossConfig, TowerSpec, TrainConfig, adopt_model_dir, resolved_init
from .loss import Temperature

DEFAULT_BASE = "imagebind_huge"


class BindModel(nn.Module):
    """Embeds (anchor, target) batches; the anchor runs frozen (eval mode, no grad) unless `train_anchor`.

    `forward` returns unit target embeddings, unit anchor embeddings and the logit scale
    for the InfoNCE loss (the towers' own scale, or a separate `Temperature`).
    """

    def __init__(self, model: ImageBindModel, anchor: str | Modality, target: str | Modality,
                 temperature: Temperature | None = None, *, train_anchor: bool = False) -> None:
        super().__init__()
        self.model = model
        self.anchor, self.target = as_modality(anchor), as_modality(target)
        self.temperature = temperature
        self.train_anchor = train_anchor
        for param in self.tower_parameters(self.anchor):
            param.requires_grad_(train_anchor)
        if temperature is None and self._tower_scale() is None:
            raise ConfigError(f"neither the {self.target} nor the {self.anchor} tower has a logit scale: "
                              "set loss.temperature to a number (e.g. 0.07)")

    def tower_modules(self, modality: Modality) -> list[nn.Module]:
        """The four submodules of one tower."""
        m = self.model
        return [m.modality_preprocessors[modality], m.modality_trunks[modality], m.modality_heads[modality],
                m.modality_postprocessors[modality]]

    def tower_parameters(self, modality: Modality) -> list[nn.Parameter]:
        """All parameters of one tower."""
        return [p for module in self.tower_modules(modality) for p in module.parameters()]

    def _tower_scale(self) -> nn.Module | None:
        for modality in (self.target, self.anchor):
            post = cast(nn.Sequential, self.model.modality_postprocessors[modality])  # normalize[, scale]
            if len(post) > 1:
                return post[1]
        return None

    def logit_scale(self) -> torch.Tensor:
        """The InfoNCE multiplier 1/τ (differentiable when learnable)."""
        if self.temperature is not None:
            return self.temperature.scale()
        scale = self._tower_scale()
        assert scale is not None  # __init__ refuses a model with neither scale nor temperature
        return cast(LogitScale, scale).scale()

    def forward(self, anchor: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target embeddings (B, D), anchor embeddings (B, D), logit scale), embeddings unit-norm."""
        t = self.model.encode(self.target, target, clip_axis=False)
        if self.train_anchor:
            a = self.model.encode(self.anchor, anchor, clip_axis=False)
        else:
            with torch.no_grad():
                a = self.model.encode(self.anchor, anchor, clip_axis=False)
        return t, a, self.logit_scale()

    def train(self, mode: bool = True) -> BindModel:
        """Train mode for the trained parts; a frozen anchor stays in eval mode (no dropout, no drop-path)."""
        super().train(mode)
        if not self.train_anchor:
            for module in self.tower_modules(self.anchor):
                module.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the parameters being trained (the whole target tower, or just its LoRA adapters)."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `trainable_state_dict` saved; the key sets must match exactly."""
        own = {name: p for name, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ConfigError(f"training checkpoint does not match this model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); was the config changed?")
        with torch.no_grad():
            for name, param in own.items():
                param.copy_(state[name])


@dataclass
class BuiltModel:
    """The training model plus what export needs to know about where the towers came from."""

    bind: BindModel
    base_config: ModelConfig  # the anchor's full model config (its other towers go into the export)
    base_checkpoint: str | None


def tower_source(spec: TowerSpec, side: str) -> tuple[ModelConfig, TowerConfig]:
    """(full model config the tower comes from, the tower's config with overrides applied)."""
    modality = as_modality(spec.modality)
    if spec.model and ckpt.is_model_dir(spec.model):
        base = manifest_config(spec.model)
    elif spec.model:
        base = get_config(spec.model)
    elif spec.checkpoint and ckpt.is_model_dir(spec.checkpoint):
        base = manifest_config(spec.checkpoint)
    else:
        base = get_config(DEFAULT_BASE)
    try:
        tower = base.tower(modality)
    except ConfigError as exc:
        raise ConfigError(f"{side}: {exc}") from None
    if spec.overrides:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.overrides.items()}
        try:
            tower = dataclasses.replace(tower, **values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{side}.overrides: {exc}") from None
    return base, tower


def build_temperature(loss: LossConfig) -> Temperature | None:
    """None for "model" (use the towers' scale), else a fixed or learnable Temperature."""
    if loss.temperature == "model":
        return None
    return Temperature(float(loss.temperature), learnable=loss.learnable, max_scale=loss.max_logit_scale)


def build_model(config: TrainConfig) -> BuiltModel:
    """Build the anchor + target towers, load their weights, freeze, add LoRA; call after seeding."""
    anchor, target = config.anchor_modality, config.target_modality
    adopt_model_dir(config.anchor)
    a_base, a_tower = tower_source(config.anchor, "anchor")
    t_base, t_tower = tower_source(config.target, "target")
    # A new tower's head is built to the anchor's width, so only loaded target weights must match it.
    if resolved_init(config.target) == "checkpoint" and a_base.embed_dim != t_base.embed_dim:
        raise ConfigError(f"anchor space is {a_base.embed_dim}-d but the target checkpoint's is "
                          f"{t_base.embed_dim}-d; start the target from random weights (init = \"random\")")
    model_config = ModelConfig(name=f"{a_base.name}+{target}", embed_dim=a_base.embed_dim,
                               towers={anchor: a_tower, target: t_tower})
    model = ImageBindModel(model_config)
    model.init_weights()
    for spec, modality in ((config.anchor, anchor), (config.target, target)):
        if resolved_init(spec) == "checkpoint":
            load_tower(model, modality, spec.checkpoint)  # type: ignore[arg-type]
    bind = BindModel(model, anchor, target, build_temperature(config.loss),
                     train_anchor=config.anchor.freeze is False)
    if config.target.lora is not None:
        add_lora(bind, config.target.lora)
    if config.run.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return BuiltModel(bind, a_base, config.anchor.checkpoint)


def load_tower(model: ImageBindModel, modality: Modality, checkpoint: str) -> None:
    """Fill one tower from a .pth / model directory, checking keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if ckpt.key_modality(k) == modality}
    state = ckpt.load_state_dict(checkpoint, [modality])
    ckpt.check_keys(expected, state, str(checkpoint))
    model.load_state_dict(state, strict=False)


def add_lora(bind: BindModel, lora: LoraConfig) -> None:
    """Adapters on the target trunk; every other target parameter frozen."""
    from .lora import apply_lora

    for param in bind.tower_parameters(bind.target):
        param.requires_grad_(False)
    apply_lora(bind.model.modality_trunks[bind.target], lora)

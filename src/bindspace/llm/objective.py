"""The training objective: next-token cross-entropy on the response tokens, for the shared Trainer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .bridge import Bridge
from .data import BridgeBatch
from .template import IGNORE


@dataclass
class StepLoss:
    """What the Trainer reads from a model with its own objective."""

    loss: torch.Tensor
    accuracy: torch.Tensor  # next-token top-1 accuracy over the response tokens


class BridgeObjective(nn.Module):
    """Projector (+ LoRA) around the frozen LM; `forward(batch)` returns the response-token loss.

    `noise` adds Gaussian noise of that expected norm to each unit embedding (then
    renormalises) while training, so the projector reads a neighbourhood of each training
    embedding rather than the point: other modalities land near, not on, the image embeddings.
    """

    computes_loss = True  # the Trainer calls forward(batch) instead of InfoNCE on two towers

    def __init__(self, bridge: Bridge, noise: float = 0.0) -> None:
        super().__init__()
        self.bridge = bridge
        self.projector = bridge.projector
        self.lm = bridge.lm_model
        self.noise = noise

    def forward(self, batch: BridgeBatch) -> StepLoss:
        """Loss and accuracy of one batch (labels are IGNORE outside the responses)."""
        media = batch.media
        if self.training and self.noise > 0 and media.shape[0]:
            scale = self.noise / media.shape[1] ** 0.5  # the noise vector's expected norm is `noise`
            media = F.normalize(media + scale * torch.randn_like(media), dim=-1)
        embeds = self.bridge.inputs_embeds(batch.ids, media, batch.slots)
        logits = self.lm(inputs_embeds=embeds, attention_mask=batch.mask).logits[:, :-1]  # (B, T-1, V)
        labels = batch.labels[:, 1:]  # position t predicts token t+1
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        scored = labels != IGNORE
        if not bool(scored.any()):
            raise ConfigError("a batch has no response tokens to learn from (empty responses?)")
        accuracy = (logits.argmax(-1) == labels)[scored].float().mean()
        return StepLoss(loss, accuracy.detach())

    def train(self, mode: bool = True) -> BridgeObjective:
        """The projector (and LoRA) train; a frozen LM stays in eval mode (no dropout)."""
        super().train(mode)
        if self.bridge.lora is None:
            self.lm.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what trains: projector weights and LoRA adapters."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `trainable_state_dict`; the key sets must match."""
        own = {name: p for name, p in self.named_parameters() if p.requires_grad}
        if set(own) != set(state):
            missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise ConfigError(f"training checkpoint does not match this bridge (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); was the config changed?")
        with torch.no_grad():
            for name, param in own.items():
                param.copy_(state[name])

"""The training objective: next-token cross-entropy on the response tokens, for the shared Trainer."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..train.loss import StepLoss
from .bridge import Bridge
from .data import BridgeBatch
from .prefix import PrefixCache, keeps_some_logits, shared_head
from .template import IGNORE


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
        frozen = bridge.lora is None and not any(p.requires_grad for p in self.lm.parameters())
        self.prefix = PrefixCache(self.lm) if frozen else None
        self.keep_logits = keeps_some_logits(self.lm)

    def forward(self, batch: BridgeBatch) -> StepLoss:
        """Loss and accuracy of one batch (labels are IGNORE outside the responses)."""
        media = batch.media
        if self.training and self.noise > 0 and media.shape[0]:
            scale = self.noise / media.shape[1] ** 0.5  # the noise vector's expected norm is `noise`
            media = F.normalize(media + scale * torch.randn_like(media), dim=-1)
        # A frozen LM reads the rows' shared head from its cache; with LoRA the head's keys change every step.
        head = shared_head(batch.ids, batch.labels, batch.slots) if self.prefix is not None else 0
        ids, labels = batch.ids[:, head:], batch.labels[:, head + 1:]  # position t predicts token t + 1
        slots = batch.slots - batch.slots.new_tensor([0, head])
        # Only positions that predict a response token need the output head (B, T-1) -> K positions.
        keep = (labels != IGNORE).any(dim=0).nonzero().flatten()
        if not keep.numel():
            raise ConfigError("a batch has no response tokens to learn from (empty responses?)")
        options: dict[str, Any] = {}
        if self.keep_logits:
            options["logits_to_keep"] = keep
        if head:
            assert self.prefix is not None
            options[self.prefix.argument] = self.prefix.expanded(batch.ids[0, :head], len(batch))
        embeds = self.bridge.inputs_embeds(ids, media, slots)
        logits = self.lm(inputs_embeds=embeds, attention_mask=batch.mask, **options).logits  # (B, K or T', V)
        if not self.keep_logits:
            logits = logits[:, keep]
        labels = labels[:, keep]  # (B, K)
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        scored = labels != IGNORE
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

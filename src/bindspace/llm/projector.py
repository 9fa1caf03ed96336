"""The projector: embedding-space vectors (N, D) -> soft tokens (N, k, H) in the language model's input space."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError

ProjectorKind = Literal["linear", "mlp"]


@dataclass
class ProjectorConfig:
    """Shape of the projector: linear (PandaGPT, NExT-GPT) or a 2-layer MLP, producing `tokens` soft tokens."""

    kind: ProjectorKind = "linear"
    tokens: int = 1  # soft tokens per media item (k)
    hidden: int | None = None  # MLP width (default: the language model's hidden size)
    in_dim: int = 0  # the embedding space's width (filled in when the bridge is built)
    out_dim: int = 0  # the language model's hidden size

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the bridge manifest)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectorConfig:
        """Inverse of `to_dict`; raises ConfigError on unknown keys or kinds."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"projector: unknown settings {sorted(unknown)}")
        config = cls(**data)
        config.check()
        return config

    def check(self) -> None:
        """Raise ConfigError for values no projector can have."""
        if self.kind not in ("linear", "mlp"):
            raise ConfigError(f"projector.kind: expected 'linear' or 'mlp', got {self.kind!r}")
        if self.tokens < 1:
            raise ConfigError(f"projector.tokens: must be >= 1, got {self.tokens}")
        if self.hidden is not None and self.hidden < 1:
            raise ConfigError(f"projector.hidden: must be >= 1, got {self.hidden}")


class Projector(nn.Module):
    """Maps each embedding to `tokens` vectors of the language model's width."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        config.check()
        if config.in_dim < 1 or config.out_dim < 1:
            raise ConfigError("projector: in_dim and out_dim must be set (the space's and the LM's widths)")
        self.config = config
        out = config.tokens * config.out_dim
        if config.kind == "linear":
            self.net: nn.Module = nn.Linear(config.in_dim, out)
        else:
            hidden = config.hidden or config.out_dim
            self.net = nn.Sequential(nn.Linear(config.in_dim, hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, k, H)."""
        out = self.net(embeddings)  # (N, k*H)
        return out.view(embeddings.shape[0], self.config.tokens, self.config.out_dim)

    @torch.no_grad()
    def start_among(self, token_embeddings: torch.Tensor) -> None:
        """Start the soft tokens where the LM's token embeddings live: centred on their mean, at their spread.

        A soft token far from every token embedding (in place or scale) gets little of the LM's
        attention, so early gradients are weak; starting among the tokens makes training converge.
        """
        last = self.net if isinstance(self.net, nn.Linear) else list(self.net.children())[-1]
        assert isinstance(last, nn.Linear)
        table = token_embeddings.detach().float()
        mean, spread = table.mean(dim=0), table.std(dim=0).mean()
        probe = torch.nn.functional.normalize(torch.randn(256, self.config.in_dim), dim=-1)
        current = self(probe.to(last.weight)).float().std(dim=0).mean()  # (256, k, H) -> per-unit spread
        last.weight.mul_((spread / current.clamp_min(1e-8)).to(last.weight.dtype))
        last.bias.copy_(mean.repeat(self.config.tokens).to(last.bias.dtype))

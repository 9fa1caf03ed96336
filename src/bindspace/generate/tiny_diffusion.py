"""A tiny embedding-conditioned diffusion model in plain torch: the demo's stand-in for Stable unCLIP.

It denoises a small flat image (the digits world's 8x8 pictures) conditioned on a unit
embedding, the way unCLIP's UNet is conditioned on a CLIP image embedding: trained with the
embedding dropped now and then (so classifier-free guidance works) and with the embedding
noised (unCLIP's "noise augmentation", which makes it tolerate embeddings a little off the
image manifold, such as those of another modality). Sampling is deterministic DDIM.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BindspaceError, first_line
from ..fsio import atomic_path, atomic_write

CONFIG_FILE = "generator.json"
WEIGHTS_FILE = "generator.safetensors"
KIND = "bindspace-tiny-diffusion"


@dataclass
class TinyDiffusionConfig:
    """Shape of the images and of the denoiser, and the training-time noise schedule."""

    embed_dim: int = 64
    channels: int = 1
    height: int = 8
    width: int = 8
    hidden: int = 256
    layers: int = 3
    time_dim: int = 64
    timesteps: int = 1000
    # Pixel values in [-1, 1] map to 0..255 as: "dark-on-light" -> -1 is white paper, 1 is black ink.
    ink: str = "dark-on-light"

    @property
    def pixels(self) -> int:
        """Numbers in one image."""
        return self.channels * self.height * self.width


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps in [0, 1] -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)  # (half,)
    angles = t.float()[:, None] * 1000.0 * freqs[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal): the signal fraction at continuous time t in [0, 1]."""
    s = 0.008
    return (torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2).clamp(1e-5, 1.0)


class TinyDiffusion(nn.Module):
    """An MLP that predicts the noise in a flat image given the time and a conditioning embedding."""

    def __init__(self, config: TinyDiffusionConfig) -> None:
        super().__init__()
        self.config = config
        width = config.hidden
        self.embed_in = nn.Linear(config.embed_dim + config.time_dim, width)
        self.image_in = nn.Linear(config.pixels, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(config.layers)
        )
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, config.pixels))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted noise (B, pixels) for noisy images x (B, pixels) at times t (B,) given cond (B, D)."""
        h = self.image_in(x) + self.embed_in(torch.cat([cond, time_embedding(t, self.config.time_dim)], dim=1))
        for block in self.blocks:
            h = h + block(h)  # residual MLP blocks
        return self.out(h)

    def loss(self, images: torch.Tensor, cond: torch.Tensor, gen: torch.Generator,
             drop: float = 0.1) -> torch.Tensor:
        """Noise-prediction MSE on a batch (B, pixels); `drop` of the embeddings are zeroed (for guidance)."""
        batch = images.shape[0]
        t = torch.rand(batch, generator=gen)
        noise = torch.randn(images.shape, generator=gen)
        ab = alpha_bar(t)[:, None]  # (B, 1)
        noisy = ab.sqrt() * images + (1 - ab).sqrt() * noise
        keep = (torch.rand(batch, 1, generator=gen) >= drop).float()
        return F.mse_loss(self(noisy, t, cond * keep), noise)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, *, steps: int = 50, guidance: float = 3.0,
               generator: torch.Generator | None = None,
               callback: Callable[[int], None] | None = None) -> torch.Tensor:
        """DDIM (eta 0) from seeded noise: (B, D) embeddings -> (B, channels, H, W) images in [-1, 1]."""
        c = self.config
        batch = cond.shape[0]
        x = torch.randn(batch, c.pixels, generator=generator)
        times = torch.linspace(1.0, 0.0, steps + 1)
        uncond = torch.zeros_like(cond)
        for i in range(steps):
            t, t_next = times[i], times[i + 1]
            tt = t.expand(batch)
            if guidance == 1.0:
                eps = self(x, tt, cond)
            else:  # classifier-free guidance: one batched pass for both
                both = self(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, uncond]))
                eps_cond, eps_uncond = both.chunk(2)
                eps = eps_uncond + guidance * (eps_cond - eps_uncond)
            ab, ab_next = alpha_bar(t), alpha_bar(t_next) if i + 1 < steps else torch.tensor(1.0)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # consistent with the clamped estimate
            x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
            if callback is not None:
                callback(i)
        return x.clamp(-1, 1).view(batch, c.channels, c.height, c.width)


def to_uint8(images: torch.Tensor, ink: str) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> uint8 (B, H, W, C) as drawn on paper (ink dark or light)."""
    level = (images + 1) / 2  # 0 = no ink, 1 = full ink
    if ink == "dark-on-light":
        level = 1 - level
    return (level * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def save_generator(model: TinyDiffusion, out: str | Path, extra: dict[str, object] | None = None) -> Path:
    """Write the generator directory: generator.json (kind, config, extra) + generator.safetensors."""
    from safetensors.torch import save_file

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    meta = {"kind": KIND, "config": asdict(model.config), **(extra or {})}
    atomic_write(folder / CONFIG_FILE, json.dumps(meta, indent=1) + "\n")
    return folder


def is_tiny_generator(folder: str | Path) -> bool:
    """Whether `folder` holds a generator written by `save_generator`."""
    return (Path(folder) / CONFIG_FILE).is_file()


def load_generator(folder: str | Path) -> tuple[TinyDiffusion, dict[str, object]]:
    """The model (eval mode) and the metadata of a generator directory."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
        kind = meta.get("kind")
    except (OSError, ValueError, AttributeError) as exc:
        raise BindspaceError(f"{folder / CONFIG_FILE}: unreadable generator config ({exc})") from None
    if kind != KIND:
        raise BindspaceError(f"{folder / CONFIG_FILE}: not a bindspace generator (kind {kind!r})")
    try:
        config = TinyDiffusionConfig(**meta["config"])
    except (TypeError, KeyError) as exc:
        raise BindspaceError(f"{folder / CONFIG_FILE}: unreadable generator config ({exc})") from None
    model = TinyDiffusion(config)
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
        model.load_state_dict(state)
    except (OSError, SafetensorError, RuntimeError) as exc:
        first = first_line(exc)
        raise BindspaceError(f"{folder / WEIGHTS_FILE}: unreadable generator weights ({first})") from None
    return model.eval(), meta

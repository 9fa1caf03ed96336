"""Patch stems and token assembly: raw model input -> (B, N, D) tokens per modality.

Attribute names follow the released checkpoint (`rgbt_stem`, `depth_stem`, `imu_stem`,
`pos_embedding_helper.pos_embed`, ...), so its state dict loads without renaming.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TowerConfig

STEM_NORM_EPS = 1e-5  # the stems' LayerNorms use PyTorch's default eps


class VideoPatchStem(nn.Module):
    """Conv3d patches over (time, height, width) for 2-frame clips; images take a 2-D shortcut.

    The checkpoint's `proj.0` was a parameter-free "repeat the image into 2 frames" step.
    Repeating an image T times and convolving over time equals one 2-D convolution with
    the kernel summed over time, which does half the work, so we keep only `proj.1`.
    """

    def __init__(self, in_channels: int, width: int, patch_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.frames = patch_size[0]
        conv = nn.Conv3d(in_channels, width, patch_size, patch_size, bias=False)
        self.proj = nn.Sequential(OrderedDict([("1", conv)]))

    @property
    def conv(self) -> nn.Conv3d:
        """The Conv3d (`proj.1` in the checkpoint)."""
        return cast(nn.Conv3d, self.proj[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) or clip (B, C, T, H, W) -> (B, N, D) in (t, h, w) order."""
        conv = self.conv
        if x.ndim == 4:
            kernel = conv.weight.sum(dim=2)  # (D, C, ph, pw): time folded into the kernel
            out = F.conv2d(x, kernel, stride=conv.stride[1:])  # (B, D, h, w)
        else:
            out = conv(x)  # (B, D, t, h, w)
        return out.flatten(2).transpose(1, 2)  # (B, N, D)


class PatchStem2d(nn.Module):
    """Conv2d patches then LayerNorm: audio spectrograms, depth and thermal maps."""

    def __init__(self, in_channels: int, width: int, patch_size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, patch_size, stride, bias=False)
        self.norm_layer = nn.LayerNorm(width, eps=STEM_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, h*w, D)."""
        return self.norm_layer(self.proj(x).flatten(2).transpose(1, 2))


class IMUStem(nn.Module):
    """Cut the signal into fixed windows, each flattened channel-major, then Linear + LayerNorm."""

    def __init__(self, in_channels: int, width: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.proj = nn.Linear(in_channels * window, width, bias=False)
        self.norm_layer = nn.LayerNorm(width, eps=STEM_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, T // window, D)."""
        B, C, T = x.shape
        windows = x.view(B, C, T // self.window, self.window)  # (B, C, W, w)
        windows = windows.permute(0, 2, 1, 3).reshape(B, T // self.window, C * self.window)  # (B, W, C*w)
        return self.norm_layer(self.proj(windows))


class PositionTable(nn.Module):
    """A learned (1, N, D) position table (the checkpoint's `pos_embedding_helper`)."""

    def __init__(self, tokens: int, width: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))


class PatchTokenizer(nn.Module):
    """stem -> prepend cls token -> add positions. The stem's attribute name is the checkpoint's."""

    def __init__(self, stem_name: str, stem: nn.Module, tokens: int, width: int) -> None:
        super().__init__()
        self.stem_name = stem_name
        self.add_module(stem_name, stem)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding_helper = PositionTable(tokens + 1, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> (B, 1 + N, D)."""
        tokens = getattr(self, self.stem_name)(x)  # (B, N, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, tokens], dim=1) + self.pos_embedding_helper.pos_embed


class IMUTokenizer(nn.Module):
    """IMU windows -> prepend cls token -> add positions."""

    def __init__(self, stem: IMUStem, tokens: int, width: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.imu_stem = stem

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, 1 + T // window, D)."""
        tokens = self.imu_stem(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed


class TextTokenizer(nn.Module):
    """Token ids -> embeddings + positions.

    The checkpoint stores the causal mask as the buffer `mask`; we keep it so state dicts
    round-trip, but attention applies causality with SDPA's `is_causal`, which lets it pick
    fused kernels and works for any (shorter) sequence length.
    """

    def __init__(self, vocab_size: int, context_length: int, width: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, context_length, width))
        self.register_buffer("mask", torch.full((context_length, context_length), float("-inf")).triu_(1))
        self.token_embedding = nn.Embedding(vocab_size, width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids with L <= context length -> (B, L, D)."""
        return self.token_embedding(ids) + self.pos_embed[:, : ids.shape[1]]


def build_tokenizer(modality: str, cfg: TowerConfig) -> nn.Module:
    """The preprocessor (stem + token assembly) for one modality."""
    if modality == "text":
        return TextTokenizer(cfg.vocab_size, cfg.input_size[0], cfg.width)
    if modality == "imu":
        imu_stem = IMUStem(cfg.in_channels, cfg.width, cfg.patch_size[0])
        return IMUTokenizer(imu_stem, cfg.num_patches, cfg.width)
    if modality == "vision":
        t, h, w = cfg.patch_size
        video_stem = VideoPatchStem(cfg.in_channels, cfg.width, (t, h, w))
        return PatchTokenizer("rgbt_stem", video_stem, cfg.num_patches, cfg.width)
    stem_name = "depth_stem" if modality == "depth" else "rgbt_stem"
    (ph, pw), (sh, sw) = cfg.patch_size, cfg.stride
    stem = PatchStem2d(cfg.in_channels, cfg.width, (ph, pw), (sh, sw))
    return PatchTokenizer(stem_name, stem, cfg.num_patches, cfg.width)

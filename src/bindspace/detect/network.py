"""The detector network: a small convolutional backbone and three per-cell heads (objectness, box, embedding).

Each cell of the (grid x grid) output is a candidate region: an objectness logit (is an object
centred here?), a box, and a unit embedding in the shared space. Classes are not part of the
network: they are embeddings given at query time, so text, audio or image classes score the
same regions (Detic's open-vocabulary classifier).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import DetectorConfig


@dataclass
class Regions:
    """The network's output for a batch of B images with N = grid * grid cells each."""

    objectness: torch.Tensor  # (B, N) logits
    boxes: torch.Tensor  # (B, N, 4) corners as fractions of the image side, x0 y0 x1 y1
    embeddings: torch.Tensor  # (B, N, D) unit vectors


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: detection batches are small and results must not depend on batchmates.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(8, cout), nn.GELU())


class RegionNetwork(nn.Module):
    """Backbone + heads; `forward(pixels (B, 3, S, S)) -> Regions`."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        # Narrow at full resolution, where a channel costs the most; each stride-2 layer halves the side.
        layers, width = [_conv(3, c // 2)], c // 2
        for _ in range(int(math.log2(config.stride))):
            layers.append(_conv(width, c, stride=2))
            width = c
        # Three 3x3 layers at the output stride widen the receptive field to objects a few cells wide.
        layers += [_conv(width, c), _conv(c, c), _conv(c, c)]
        self.backbone = nn.Sequential(*layers)
        self.objectness = nn.Conv2d(c, 1, 1)
        self.box = nn.Conv2d(c, 4, 1)
        self.embed = nn.Sequential(_conv(c, c), nn.Conv2d(c, config.embed_dim, 1))
        # Detic-style open-vocabulary classifier: logit = scale * cos(region, class) + bias.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-4.0))
        with torch.no_grad():
            self.objectness.bias.fill_(-4.0)  # type: ignore[union-attr]  # a rare positive at first (focal prior)
            self.box.weight.zero_()
            self.box.bias.zero_()  # type: ignore[union-attr]

    def forward(self, pixels: torch.Tensor) -> Regions:
        """Regions for a batch of normalised images (B, 3, S, S)."""
        cfg = self.config
        features = self.backbone(pixels)  # (B, C, G, G)
        batch, _, grid, _ = features.shape
        objectness = self.objectness(features).flatten(1)  # (B, G*G)
        raw = self.box(features).flatten(2).transpose(1, 2)  # (B, C=4, G, G) -> (B, G*G, 4)
        ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        cells = torch.stack([xs, ys], dim=-1).reshape(1, grid * grid, 2).to(raw)  # (1, G*G, 2) cell x, y
        centre = (cells + torch.sigmoid(raw[..., :2])) / grid  # (B, G*G, 2) as fractions of the side
        size = torch.exp(raw[..., 2:].clamp(max=6.0)) * cfg.box_prior / grid  # (B, G*G, 2)
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)  # (B, G*G, 4)
        embeddings = self.embed(features).flatten(2).transpose(1, 2)  # (B, D, G, G) -> (B, G*G, D)
        return Regions(objectness, boxes, F.normalize(embeddings, dim=-1))

    def class_logits(self, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Per-class logits (..., C) of region embeddings (..., D) against unit class embeddings (C, D)."""
        return self.logit_scale.exp() * embeddings @ classes.T + self.logit_bias

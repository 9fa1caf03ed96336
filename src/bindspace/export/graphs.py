"""What one exported ONNX graph computes: a tower from its model input to its scaled embedding.

Used only at export time (it wraps the torch model); serving runs the ONNX graphs.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import TowerConfig
from ..modality import Modality

# Graph input names, one per tower.
INPUT_NAMES = {
    Modality.VISION: "clips", Modality.TEXT: "tokens", Modality.AUDIO: "mel", Modality.DEPTH: "depth",
    Modality.THERMAL: "thermal", Modality.IMU: "imu",
}
MIN_TEXT_LENGTH = 2  # start and end of text: the shortest a cut batch can be


class TowerGraph(nn.Module):
    """One tower of an ImageBindModel as a plain function: input batch -> (B, E) postprocessed embeddings.

    Vision takes 2-frame clips only: an image is the clip of itself repeated (what the
    original model did), so one graph serves images and video. Text takes ids already cut
    at the batch's longest text (the runtime cuts, as the torch model does), any length.
    """

    def __init__(self, model: Any, modality: Modality) -> None:
        super().__init__()
        self.modality = modality
        self.pre = model.modality_preprocessors[modality]
        self.trunk = model.modality_trunks[modality]
        self.head = model.modality_heads[modality]
        self.post = model.modality_postprocessors[modality]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (batch first) -> (B, E)."""
        if self.modality == Modality.TEXT:
            eot = x.argmax(dim=-1)  # (B,) end-of-text holds the largest id
            tokens = self.trunk(self.pre(x), causal=True)
            return self.post(self.head(tokens, eot))
        return self.post(self.head(self.trunk(self.pre(x))))


def input_shape(modality: Modality, cfg: TowerConfig) -> list[int | str]:
    """The graph input's shape with named dynamic axes ("batch", "length")."""
    size = list(cfg.input_size)
    if modality == Modality.TEXT:
        return ["batch", "length"]
    if modality == Modality.VISION:
        return ["batch", cfg.in_channels, cfg.patch_size[0], *size]
    return ["batch", cfg.in_channels, *size]


def sample_input(modality: Modality, cfg: TowerConfig, batch: int, *, seed: int = 0,
                 length: int | None = None) -> torch.Tensor:
    """Deterministic stand-in input of the graph's shape (text: random ids, end-of-text at varied positions)."""
    g = torch.Generator().manual_seed(seed)
    if modality == Modality.TEXT:
        context = cfg.input_size[0]
        length = context if length is None else length
        ids = torch.zeros(batch, length, dtype=torch.int64)
        for row in range(batch):
            end = length - 1 - (row * 3) % max(1, length - MIN_TEXT_LENGTH)  # varied ends, the first at the cut
            ids[row, 0] = cfg.vocab_size - 2  # start of text
            ids[row, 1:end] = torch.randint(1, cfg.vocab_size - 2, (max(0, end - 1),), generator=g)
            ids[row, end] = cfg.vocab_size - 1  # end of text: the largest id
        return ids
    shape = [batch] + [int(s) for s in input_shape(modality, cfg)[1:]]
    return torch.randn(shape, generator=g)

"""The calling contract every bindspace model keeps (torch towers or ONNX Runtime sessions)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..config import ModelConfig, TowerConfig
from ..errors import BindspaceError
from ..modality import Modality, as_modality

# The one home of the per-item rank and clip-axis rules (the model, the embedder, int8 calibration
# and the server's call sizes all read them from here).
ITEM_RANK = {  # dimensions of one item, without batch or clip axes
    Modality.VISION: 3,  # (C, H, W); a 2-frame clip (C, T, H, W) has 4
    Modality.TEXT: 1,
    Modality.AUDIO: 3,
    Modality.DEPTH: 3,
    Modality.THERMAL: 3,
    Modality.IMU: 2,
}


def plain_rank(modality: str | Modality) -> int:
    """The most dimensions one item without a clip axis has (vision: a clip (C, T, H, W), 4)."""
    modality = as_modality(modality)
    return ITEM_RANK[modality] + (1 if modality == Modality.VISION else 0)


def has_clip_axis(modality: str | Modality, item_ndim: int) -> bool:
    """Whether an item of `item_ndim` dimensions (no batch axis) starts with a clip axis: (S, ...) clips."""
    return item_ndim > plain_rank(modality)


def clips_per_item(modality: str | Modality, item_shape: Sequence[int]) -> int:
    """How many clips one item of this shape (no batch axis) holds: S with a clip axis, else 1."""
    return int(item_shape[0]) if has_clip_axis(modality, len(item_shape)) else 1


def flatten_clips(modality: str | Modality, batch: torch.Tensor) -> torch.Tensor:
    """(N, S, ...) items with a clip axis -> (N*S, ...) plain items; a batch without one is returned as is."""
    if not has_clip_axis(modality, batch.ndim - 1):
        return batch
    rank = plain_rank(modality)
    return batch.reshape(-1, *batch.shape[batch.ndim - rank:])  # (N*S, ...)

TEXT_LENGTH_STEP = 8  # text batches run at a multiple of this many positions


def text_run_length(tokens: int, available: int) -> int:
    """Positions a text batch runs at: its longest text (end-of-text included) rounded up to a multiple of 8.

    Causal attention makes every length past the longest end-of-text exact; a few fixed lengths
    mean a text's bits depend on its own length bucket, not on how long its batchmates are,
    once a caller batches texts by bucket (the server does). Capped at the ids given.
    """
    return min(available, max(TEXT_LENGTH_STEP, -(-tokens // TEXT_LENGTH_STEP) * TEXT_LENGTH_STEP))


class EmbeddingModel(nn.Module):
    """`encode` (unit vectors) and `forward` (the original's dict contract) over `_embed_items`.

    Subclasses set `config` and `modalities` and implement `_embed_items` (one postprocessed
    embedding per item of a plain batch) and `logit_scale`.
    """

    config: ModelConfig
    modalities: tuple[Modality, ...]

    @property
    def embed_dim(self) -> int:
        """Width of the shared space (1024 for imagebind_huge)."""
        return self.config.embed_dim

    def tower_config(self, modality: str | Modality) -> TowerConfig:
        """Config of a tower this model holds."""
        return self.config.towers[self._check(modality)]

    def logit_scale(self, modality: str | Modality) -> torch.Tensor:
        """The multiplier the tower's postprocessor applies (1.0 for vision), as a 0-d tensor."""
        raise NotImplementedError

    def encode(self, modality: str | Modality, x: torch.Tensor, *, clip_axis: bool | None = None) -> torch.Tensor:
        """Unit-norm float32 embeddings (B, embed_dim); clips along a clip axis are averaged.

        Accepted shapes: text (B, L) ids; audio (B, 1, 128, 204) or (B, S, 1, 128, 204);
        vision (B, 3, H, W) images, (B, 3, 2, H, W) clips or (B, S, 3, 2, H, W) videos;
        depth/thermal (B, 1, H, W) or (B, S, 1, H, W); imu (B, 6, T) or (B, S, 6, T).
        `clip_axis` forces (True) or forbids (False) reading axis 1 as clips.
        """
        modality = self._check(modality)
        scaled = self._embed(modality, x, clip_axis)
        return nn.functional.normalize(scaled.float(), dim=-1)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The original model's contract: postprocessor scales included, clip axes averaged."""
        return {name: self._embed(self._check(name), x, None).float() for name, x in inputs.items() if x is not None}

    # ----------------------------------------------------------------- internals

    def _embed_items(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        """One postprocessed embedding per item of a plain batch (no clip axis)."""
        raise NotImplementedError

    def _check(self, modality: str | Modality) -> Modality:
        modality = as_modality(modality)
        if modality not in self.modalities:
            have = ", ".join(self.modalities) or "none"
            raise BindspaceError(f"this model was built without the {modality} tower (it has: {have})")
        return modality

    def _embed(self, modality: Modality, x: torch.Tensor, clip_axis: bool | None) -> torch.Tensor:
        """Postprocessed embeddings (B, E); items with a clip axis are averaged over it."""
        if clip_axis is None:
            clip_axis = has_clip_axis(modality, x.ndim - 1)
        if clip_axis:
            B, S = x.shape[:2]
            out = self._embed_items(modality, x.flatten(0, 1))  # (B*S, E)
            return out.view(B, S, -1).mean(dim=1)  # (B, E)
        return self._embed_items(modality, x)

    def _check_shape(self, modality: Modality, x: torch.Tensor) -> None:
        cfg = self.config.towers[modality]
        size = tuple(cfg.input_size)
        if modality == Modality.TEXT:
            ok = x.ndim == 2 and x.shape[1] <= size[0] and not x.is_floating_point()
            want = f"(B, L<={size[0]}) integer token ids"
        elif modality == Modality.VISION:
            frames = cfg.patch_size[0]
            ok = (x.ndim == 4 and x.shape[1:] == (cfg.in_channels, *size)) or (
                x.ndim == 5 and x.shape[1:] == (cfg.in_channels, frames, *size)
            )
            channels, (height, width) = cfg.in_channels, size
            want = f"(B, {channels}, {height}, {width}) or (B, {channels}, {frames}, {height}, {width})"
        else:
            ok = tuple(x.shape[1:]) == (cfg.in_channels, *size)
            want = f"(B, {cfg.in_channels}, {', '.join(map(str, size))})"
        if not ok:
            raise BindspaceError(f"{modality} input has shape {tuple(x.shape)}, expected {want}")

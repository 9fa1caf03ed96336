"""The per-item rank and clip-axis rules (model/contract.py), the one copy the model, the embedder,
int8 calibration and the server's call sizes read."""
from __future__ import annotations

import pytest
import torch

from bindspace.export.calibration import plain_rows
from bindspace.modality import Modality
from bindspace.model.contract import clips_per_item, flatten_clips, has_clip_axis, plain_rank
from bindspace.serve.pipeline import call_size

# (tower, one item's shape without batch axis, clips it holds); shapes as the loaders make them
ITEMS = [
    (Modality.TEXT, (77,), 1),
    (Modality.VISION, (3, 224, 224), 1),  # an image
    (Modality.VISION, (3, 2, 224, 224), 1),  # one 2-frame clip: channels are not clips
    (Modality.VISION, (15, 3, 2, 224, 224), 15),  # a video of 15 clips
    (Modality.AUDIO, (1, 128, 204), 1),
    (Modality.AUDIO, (3, 1, 128, 204), 3),
    (Modality.DEPTH, (1, 224, 224), 1),
    (Modality.DEPTH, (4, 1, 224, 224), 4),
    (Modality.THERMAL, (1, 16, 16), 1),
    (Modality.IMU, (6, 2000), 1),
    (Modality.IMU, (5, 6, 2000), 5),
]


def test_plain_ranks():
    assert {m: plain_rank(m) for m in Modality} == {
        Modality.TEXT: 1, Modality.VISION: 4, Modality.AUDIO: 3, Modality.DEPTH: 3, Modality.THERMAL: 3,
        Modality.IMU: 2}
    assert plain_rank("vision") == 4  # names work as well as Modality members


@pytest.mark.parametrize("tower,shape,clips", ITEMS)
def test_clip_axis_and_clip_count(tower, shape, clips):
    with_axis = len(shape) > {Modality.VISION: 4, Modality.TEXT: 1, Modality.IMU: 2}.get(tower, 3)
    assert has_clip_axis(tower, len(shape)) is with_axis
    assert clips_per_item(tower, shape) == clips


@pytest.mark.parametrize("tower,shape,clips", ITEMS)
def test_flatten_clips_makes_plain_items(tower, shape, clips):
    batch = torch.arange(2 * torch.Size(shape).numel(), dtype=torch.float32).reshape(2, *shape)
    flat = flatten_clips(tower, batch)
    plain = shape[1:] if clips > 1 else shape
    assert tuple(flat.shape) == (2 * clips, *plain)
    # clip order is kept: item 0's clips first, each clip's values unchanged
    assert torch.equal(flat.reshape(-1), batch.reshape(-1))


def test_calibration_rows_use_the_rule():
    """int8 calibration reads videos and audio clip by clip, and images as 2-frame clips."""
    video = torch.rand(2, 3, 3, 2, 16, 16)  # (N, S, C, T, H, W)
    assert tuple(plain_rows(Modality.VISION, video, 2).shape) == (6, 3, 2, 16, 16)
    images = torch.rand(4, 3, 16, 16)
    rows = plain_rows(Modality.VISION, images, 2)
    assert tuple(rows.shape) == (4, 3, 2, 16, 16) and torch.equal(rows[:, :, 1], images)
    audio = torch.rand(2, 3, 1, 128, 204)
    assert tuple(plain_rows(Modality.AUDIO, audio, 2).shape) == (6, 1, 128, 204)
    imu = torch.rand(5, 6, 2000)
    assert plain_rows(Modality.IMU, imu, 2) is imu


def test_call_sizes_count_clips_by_the_rule():
    """GPU calls hold max_batch clips: an audio item of 3 clips takes 3 rows, a single vision clip 1, a video all."""
    assert call_size(Modality.AUDIO, (3, 1, 128, 204), 8, "cuda") == 2
    assert call_size(Modality.DEPTH, (4, 1, 16, 16), 8, "cuda") == 2
    assert call_size(Modality.VISION, (3, 2, 16, 16), 8, "cuda") == 8
    assert call_size(Modality.VISION, (15, 3, 2, 16, 16), 32, "cuda") == 1


def test_encode_infers_the_clip_axis_as_the_rule_says(tiny_model):
    """encode without clip_axis averages exactly when the rule sees a clip axis."""
    torch.manual_seed(0)
    cfg = tiny_model.tower_config("audio")
    audio = torch.randn(2, 3, cfg.in_channels, *cfg.input_size)  # (B, S, 1, mel, frames)
    with torch.inference_mode():
        inferred = tiny_model.encode("audio", audio)
        forced = tiny_model.encode("audio", audio, clip_axis=True)
        plain = tiny_model.encode("audio", audio[:, 0])
        plain_forced = tiny_model.encode("audio", audio[:, 0], clip_axis=False)
    assert torch.equal(inferred, forced) and torch.equal(plain, plain_forced)
    assert not torch.allclose(inferred, plain)

"""Training augmentations in plain torch, each drawing from an explicit generator (so runs resume exactly)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def uniform(gen: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """One float in [low, high) from `gen`."""
    return low + (high - low) * float(torch.rand((), generator=gen))


def randint(gen: torch.Generator, low: int, high: int) -> int:
    """One int in [low, high] from `gen`."""
    return int(torch.randint(low, high + 1, (), generator=gen))


def random_resized_crop(
    x: torch.Tensor,
    size: tuple[int, int],
    gen: torch.Generator,
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Crop a random area fraction in `scale` with aspect ratio in `ratio`, resize to `size` (bilinear).

    x is (C, H, W) or (C, T, H, W) (every frame gets the same crop). After 10 failed draws
    the largest centred crop of a clamped ratio is used.
    """
    height, width = x.shape[-2:]
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * uniform(gen, *scale)
        aspect = math.exp(uniform(gen, *log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = randint(gen, 0, height - h)
            left = randint(gen, 0, width - w)
            break
    else:
        aspect = min(max(width / height, ratio[0]), ratio[1])
        w, h = (width, int(round(width / aspect))) if width / height < aspect else (int(round(height * aspect)), height)
        w, h = min(w, width), min(h, height)
        top, left = (height - h) // 2, (width - w) // 2
    crop = x[..., top:top + h, left:left + w]
    return resize(crop, size)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of the last two axes of (C, H, W) or (C, T, H, W)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-2]
    flat = x.reshape(1, -1, *x.shape[-2:])  # (1, C*T, H, W)
    out = F.interpolate(flat.float(), size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).to(x.dtype)  # (C, [T,] h, w)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centred (h, w) window of the last two axes."""
    height, width = x.shape[-2:]
    h, w = size
    top, left = max((height - h) // 2, 0), max((width - w) // 2, 0)
    return x[..., top:top + h, left:left + w]


def random_hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror the last axis with probability p."""
    return x.flip(-1) if uniform(gen) < p else x


def spec_mask(x: torch.Tensor, gen: torch.Generator, *, freq: int, time: int,
              frames: int | None = None) -> torch.Tensor:
    """Zero one random band of mel bins (<= freq wide) and one run of frames (<= time long) in (..., F, T).

    Zero is the normalised spectrogram's mean, so masks read as "average energy". Only the
    first `frames` columns (the audible part, before padding) are eligible for the time mask.
    """
    x = x.clone()
    bins, length = x.shape[-2:]
    if freq > 0:
        width = randint(gen, 0, min(freq, bins))
        start = randint(gen, 0, bins - width)
        x[..., start:start + width, :] = 0
    usable = length if frames is None else max(min(frames, length), 0)
    if time > 0 and usable > 0:
        width = randint(gen, 0, min(time, usable))
        start = randint(gen, 0, usable - width)
        x[..., start:start + width] = 0
    return x


def imu_jitter(x: torch.Tensor, gen: torch.Generator, *, noise: float, scale: float) -> torch.Tensor:
    """Per-channel random gain in [1 - scale, 1 + scale] plus gaussian noise of `noise` x channel std; x is (C, T)."""
    channels = x.shape[0]
    gain = 1 + (torch.rand(channels, 1, generator=gen) * 2 - 1) * scale  # (C, 1)
    std = x.std(dim=-1, keepdim=True).clamp_min(1e-6)  # (C, 1)
    return x * gain + torch.randn(x.shape, generator=gen) * std * noise


def sample_generator(seed: int, *keys: int) -> torch.Generator:
    """A generator seeded from (seed, *keys), so an item's augmentation depends only on what it is, not on workers."""
    value = seed & 0xFFFFFFFF
    for key in keys:  # splitmix-style mixing keeps nearby keys far apart
        value = (value * 0x9E3779B97F4A7C15 + (key & 0xFFFFFFFFFFFF) + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    gen = torch.Generator()
    gen.manual_seed(value & 0x7FFFFFFFFFFFFFFF)
    return gen

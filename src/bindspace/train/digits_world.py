"""The digits-and-tones world the demos share: handwritten digits (images), their DTMF keypad tones
(audio), and prompts naming them (text); small, deterministic, and on every machine.

`bindspace demo`, `demo generate` and `demo llm` all draw from it.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BindspaceError
from .augment import sample_generator

SAMPLE_RATE = 16000
CLIP_SECONDS = 2.0
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "the digit {w}", "a handwritten {n}", "the number {w}", "a drawing of the digit {n}", "{w}",
    "a picture of a {w}", "the numeral {n}", "a scribbled {w}", "digit {n}", "an image of the number {w}",
)
# DTMF (ITU-T Q.23): each key is the sum of one low-group and one high-group sine.
DTMF_LOW = {1: 697, 2: 697, 3: 697, 4: 770, 5: 770, 6: 770, 7: 852, 8: 852, 9: 852, 0: 941}
DTMF_HIGH = {1: 1209, 2: 1336, 3: 1477, 4: 1209, 5: 1336, 6: 1477, 7: 1209, 8: 1336, 9: 1477, 0: 1336}


@dataclass
class DemoRun:
    """How a digits-world demo runs (every demo's settings extend it): its seed, CPU threads and progress bars."""

    seed: int = 0
    # Matrices this small gain little from threads, and on a shared CPU extra threads mostly
    # wait for each other (2 threads measured 5x slower than 1 on a busy 2-core machine).
    threads: int = 1
    progress: bool = True

    def run_options(self) -> dict[str, Any]:
        """seed, threads and progress as keywords: another demo (the encoder demo first) runs the same way."""
        return {f.name: getattr(self, f.name) for f in fields(DemoRun)}



def digit_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits through the standard image loader -> (N, 3, size, size) and labels (N,)."""
    from PIL import Image

    from ..preprocess.image import load_image

    images, labels = load_digits()
    pixels = [load_image(Image.fromarray(render_digit(image)), f"digit {i}", size=size)
              for i, image in enumerate(images)]
    return torch.stack(pixels), torch.from_numpy(labels).long()


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits: (images (N, 8, 8), labels (N,))."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise BindspaceError("the demo needs scikit-learn for its bundled digits: "
                             "pip install 'bindspace[train]'") from None
    digits = sklearn_digits()
    return digits.images, digits.target


def render_digit(image: np.ndarray) -> np.ndarray:
    """An 8x8 digit (ink 0..16) as an 8x8 grey image of dark ink on white paper (uint8)."""
    return (255 - np.clip(image, 0, 16) * 255 / 16).round().astype(np.uint8)


def dtmf_waveforms(labels: torch.Tensor, gen: torch.Generator, seconds: float = CLIP_SECONDS) -> torch.Tensor:
    """Keypad tones (N, seconds*16k): random duration, onset, level, twist, detuning, phase and noise."""
    n, length = labels.shape[0], int(seconds * SAMPLE_RATE)

    def draw(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, 1, generator=gen, dtype=torch.float64)  # (N, 1)

    low = torch.tensor([DTMF_LOW[int(y)] for y in labels], dtype=torch.float64)[:, None]
    high = torch.tensor([DTMF_HIGH[int(y)] for y in labels], dtype=torch.float64)[:, None]
    duration = draw(0.2, 1.5)
    onset = draw(0.0, 1.0) * (seconds - duration)
    level = 10 ** (draw(-30, -3) / 20)  # dBFS
    twist = 10 ** (draw(-3, 3) / 20)  # high-group level relative to the low group
    snr = 10 ** (draw(0, 30) / 20)
    low = low * (1 + draw(-0.015, 0.015))  # DTMF receivers accept 1.5 % deviation
    high = high * (1 + draw(-0.015, 0.015))
    phase1, phase2 = draw(0, 2 * math.pi), draw(0, 2 * math.pi)
    noise_seed = int(torch.randint(0, 2**62, (), generator=gen))
    t = torch.arange(length, dtype=torch.float64) / SAMPLE_RATE  # (T,)
    out = torch.empty(n, length)
    for rows in torch.arange(n).split(256):  # chunks keep the float64 phase arrays small
        gate = (t >= onset[rows]) & (t < onset[rows] + duration[rows])  # (b, T)
        tone = (torch.sin(2 * math.pi * low[rows] * t + phase1[rows]).float()
                + twist[rows].float() * torch.sin(2 * math.pi * high[rows] * t + phase2[rows]).float())
        noise_gen = torch.Generator().manual_seed(noise_seed + int(rows[0]))
        noise = torch.randn(len(rows), length, generator=noise_gen) / snr[rows].float()
        out[rows] = level[rows].float() * (0.5 * tone * gate + noise)
    return out


def audio_features(waveforms: torch.Tensor, frames: int = 204) -> torch.Tensor:
    """(N, T) 16 kHz waveforms of <= 2 s -> (N, 1, 128, frames), exactly what `load_audio` gives each.

    For audio no longer than one clip the loader's three clips coincide, so one batched
    pass of the same filterbank and normalisation reproduces it (a test checks this).
    """
    from ..preprocess.audio import MEL_BINS, MEL_MEAN, MEL_STD
    from ..preprocess.fbank import fbank

    out = []
    for chunk in waveforms.split(64):  # bounds the filterbank's intermediates (~20 MB a chunk)
        chunk = chunk - chunk.mean(dim=1, keepdim=True)
        mel = fbank(chunk, SAMPLE_RATE, MEL_BINS).transpose(1, 2)  # (B, 128, F)
        have = mel.shape[2]
        mel = F.pad(mel, (0, frames - have)) if have < frames else mel[..., :frames]
        out.append(((mel - MEL_MEAN) / MEL_STD)[:, None])  # (B, 1, 128, frames)
    return torch.cat(out)


def tone_features(labels: torch.Tensor, gen: torch.Generator, chunk: int = 64) -> torch.Tensor:
    """Audio model inputs (N, 1, 128, 204) of fresh random tones, made a chunk at a time to bound memory."""
    return torch.cat([audio_features(dtmf_waveforms(part, gen)) for part in labels.split(chunk)])


def tokenized_prompts() -> torch.Tensor:
    """(10, templates, 77) token ids: every template for every digit."""
    from ..preprocess.tokenizer import tokenize

    texts = [t.format(w=WORDS[d], n=d) for d in range(10) for t in TEMPLATES]
    return tokenize(texts).view(10, len(TEMPLATES), -1)


def jitter_images(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random shifts and zooms of a batch (B, 3, H, W), as handwriting varies."""
    batch = images.shape[0]
    scale = 1 + (torch.rand(batch, generator=gen) * 2 - 1) * 0.1
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = (torch.rand(batch, 2, generator=gen) * 2 - 1) * 0.15
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` (at least 1) torch threads, restoring the previous number after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(count, 1))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def generator(seed: int, stream: int) -> torch.Generator:
    """A generator for one random stream of the world (digit split, tone labels, noise ...) under `seed`."""
    return sample_generator(seed, 1_000_000 + stream)

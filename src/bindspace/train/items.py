"""One manifest value (a path, bytes from a shard, or a caption) -> one model input, with train augmentations.

Loading goes through `bindspace.preprocess`, so a trained tower sees the same numbers at
training time as `bindspace embed` gives it later; geometry comes from the tower config
(image side = input_size[-1], audio frames = input_size[1], IMU length = input_size[0]).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..config import TowerConfig
from ..errors import InputError
from ..kinds import VIDEO_EXTENSIONS
from ..modality import Modality
from . import augment as aug
from .config import AugmentConfig

SAMPLE_RATE = 16000
# Crops are taken from a slightly larger view so a full-scale crop is not just the eval view.
CROP_HEADROOM = 8 / 7

Value = str | bytes


@dataclass(frozen=True)
class Window:
    """A time window inside a recording (seconds; None = from the start / to the end)."""

    start: float | None = None
    end: float | None = None


class ItemLoader:
    """Loads items of one modality for one tower; `augment=None` gives the deterministic eval view."""

    def __init__(self, modality: Modality, tower: TowerConfig, augment: AugmentConfig | None) -> None:
        self.modality = modality
        self.tower = tower
        self.augment = augment if augment is not None and augment.enabled else None

    @property
    def clip_seconds(self) -> float:
        """Length of the audio / video clip cut from each item."""
        return self.augment.clip_seconds if self.augment else AugmentConfig().clip_seconds

    def __call__(
        self,
        value: Value,
        *,
        name: str | None = None,
        ext: str | None = None,
        window: Window = Window(),
        phase: float = 0.5,
        gen: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One model input without batch axis. `phase` in [0, 1) places the clip inside the window.

        `gen` drives the augmentations; without it (or with augmentation disabled) the
        item is loaded as for evaluation.
        """
        name = name or (value if isinstance(value, str) else f"<{len(value)} bytes>")
        if ext is None and isinstance(value, str) and self.modality != Modality.TEXT:
            ext = os.path.basename(value).split(".", 1)[-1].lower() if "." in os.path.basename(value) else ""
        gen = gen if self.augment is not None else None
        m = self.modality
        if m == Modality.TEXT:
            return self._text(value, name)
        if m == Modality.VISION:
            if ext and f".{ext.rsplit('.', 1)[-1]}" in VIDEO_EXTENSIONS:
                return self._video(value, name, window, phase, gen)
            return self._image(value, name, gen)
        if m == Modality.AUDIO:
            return self._audio(value, name, window, phase, gen)
        if m in (Modality.DEPTH, Modality.THERMAL):
            return self._map(value, name, gen)
        if m == Modality.IMU:
            return self._imu(value, name, gen)
        raise InputError(name, f"no training loader for modality {m}")

    # ------------------------------------------------------------------ per modality

    def _size(self) -> tuple[int, int]:
        return tuple(self.tower.input_size[-2:])  # type: ignore[return-value]

    def _load_side(self, gen: torch.Generator | None) -> int:
        side = self.tower.input_size[-1]
        return int(round(side * CROP_HEADROOM)) if gen is not None else side

    def _spatial(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Random resized crop + flip in training; centre crop to the input size in evaluation."""
        size = self._size()
        if gen is None:
            return aug.resize(aug.center_crop(x, size), size)
        assert self.augment is not None
        x = aug.random_resized_crop(x, size, gen, scale=self.augment.crop_scale, ratio=self.augment.crop_ratio)
        return aug.random_hflip(x, gen) if self.augment.hflip else x

    def _text(self, value: Value, name: str) -> torch.Tensor:
        from ..preprocess.tokenizer import tokenize

        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
        if not text.strip():
            raise InputError(name, "empty text")
        return tokenize([text.strip()], context_length=self.tower.input_size[0])[0]

    def _image(self, value: Value, name: str, gen: torch.Generator | None) -> torch.Tensor:
        from ..preprocess.image import load_image

        return self._spatial(load_image(value, name, size=self._load_side(gen)), gen)

    def _video(self, value: Value, name: str, window: Window, phase: float,
               gen: torch.Generator | None) -> torch.Tensor:
        from ..preprocess.video import load_video_window, video_info

        _, _, duration = video_info(value, name)
        start, end = _clamp_window(window, duration)
        clip = min(self.clip_seconds, end - start)
        begin = start + phase * (end - start - clip)
        frames = self.tower.patch_size[0] if len(self.tower.patch_size) == 3 else 2
        views = load_video_window(value, begin, begin + clip, name, clips=1, clip_seconds=clip,
                                  frames_per_clip=frames, size=self._load_side(gen), crops=1)  # (1, 3, T, S, S)
        return self._spatial(views[0], gen)  # (3, T, H, W)

    def _audio(self, value: Value, name: str, window: Window, phase: float,
               gen: torch.Generator | None) -> torch.Tensor:
        from ..preprocess.audio import load_audio
        from ..preprocess.audio_io import decode_audio
        from ..preprocess.fbank import num_frames
        from ..preprocess.resample import resample

        wave, rate = decode_audio(value, name, start=window.start, end=window.end)
        wave = resample(wave, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else wave  # (C, T)
        clip = int(round(self.clip_seconds * SAMPLE_RATE))
        begin = int(phase * max(wave.shape[1] - clip, 0))
        segment = wave[:, begin:begin + clip]
        if segment.shape[1] == 0:
            raise InputError(name, "no audio in the requested window")
        frames = self.tower.input_size[1]
        x = load_audio((segment.numpy(), SAMPLE_RATE), name, clips=1, clip_seconds=self.clip_seconds,
                       target_frames=frames)[0]  # (1, 128, frames)
        if gen is not None and self.augment is not None:
            x = aug.spec_mask(x, gen, freq=self.augment.freq_mask, time=self.augment.time_mask,
                              frames=num_frames(segment.shape[1], SAMPLE_RATE))
        return x

    def _map(self, value: Value, name: str, gen: torch.Generator | None) -> torch.Tensor:
        if self.modality == Modality.DEPTH:
            from ..preprocess.depth import load_depth

            x = load_depth(value, name, size=self._load_side(gen))
        else:
            from ..preprocess.thermal import load_thermal

            x = load_thermal(value, name, size=self._load_side(gen))
        return self._spatial(x, gen)  # (1, H, W)

    def _imu(self, value: Value, name: str, gen: torch.Generator | None) -> torch.Tensor:
        from ..preprocess.imu import load_imu

        x = load_imu(value, name, length=self.tower.input_size[0])  # (6, T)
        if gen is not None and self.augment is not None:
            x = aug.imu_jitter(x, gen, noise=self.augment.imu_noise, scale=self.augment.imu_scale)
        return x


def _clamp_window(window: Window, duration: float) -> tuple[float, float]:
    start = max(window.start or 0.0, 0.0)
    end = duration if window.end is None else min(window.end, duration)
    if end <= start:
        start, end = 0.0, duration
    return start, end


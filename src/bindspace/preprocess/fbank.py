"""Kaldi-compatible log-mel filterbank (the reference's audio features), batched over clips.

Options fixed by the reference: 25 ms frames every 10 ms with edges snipped,
per-frame DC removal, pre-emphasis 0.97, symmetric Hann window, power spectrum,
triangular HTK-mel bins from 20 Hz to Nyquist, log with a float-epsilon floor,
no dither, no energy term.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

FRAME_MS = 25.0
SHIFT_MS = 10.0
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
LOG_FLOOR = 1.1920929e-07  # float32 epsilon, Kaldi's floor before the log


def frame_sizes(sample_rate: int) -> tuple[int, int, int]:
    """(frame length, frame shift, FFT size) in samples for a sample rate."""
    length = int(sample_rate * FRAME_MS / 1000)
    shift = int(sample_rate * SHIFT_MS / 1000)
    return length, shift, 1 << (length - 1).bit_length()


def num_frames(num_samples: int, sample_rate: int = 16000) -> int:
    """Frames produced for a clip of num_samples (0 when shorter than one frame)."""
    length, shift, _ = frame_sizes(sample_rate)
    return 0 if num_samples < length else 1 + (num_samples - length) // shift


def fbank(waveforms: torch.Tensor, sample_rate: int = 16000, num_mel_bins: int = 128) -> torch.Tensor:
    """Log-mel energies (B, frames, num_mel_bins) of float waveforms (B, T) at sample_rate."""
    if waveforms.ndim != 2:
        raise ValueError(f"expected waveforms of shape (B, T), got {tuple(waveforms.shape)}")
    length, shift, nfft = frame_sizes(sample_rate)
    if waveforms.shape[-1] < length:
        raise ValueError(f"need at least {length} samples for one frame, got {waveforms.shape[-1]}")
    dtype, device = waveforms.dtype, waveforms.device
    frames = waveforms.unfold(-1, length, shift)  # (B, F, length), F = 1 + (T - length) // shift
    frames = frames - frames.mean(dim=-1, keepdim=True)
    # Kaldi's pre-emphasis treats the sample before the frame as a copy of its first one.
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = (frames - PREEMPHASIS * previous) * hann_window(length, dtype, device)
    spectrum = torch.fft.rfft(frames, n=nfft)  # (B, F, nfft/2 + 1)
    power = spectrum.real.square() + spectrum.imag.square()
    mel = power @ mel_matrix(sample_rate, num_mel_bins, dtype, device)  # (B, F, num_mel_bins)
    return mel.clamp_min(LOG_FLOOR).log()


@lru_cache(maxsize=16)
def hann_window(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Symmetric Hann window 0.5 - 0.5·cos(2πi/(length-1))."""
    i = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * i / (length - 1))).to(dtype=dtype, device=device)


def mel_scale(freq: torch.Tensor | float) -> torch.Tensor | float:
    """HTK mel: 1127·ln(1 + f/700)."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log1p(freq / 700.0)


@lru_cache(maxsize=16)
def mel_matrix(
    sample_rate: int, num_mel_bins: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Triangular mel weights (nfft/2 + 1, num_mel_bins); the Nyquist row is zero, as in Kaldi."""
    _, _, nfft = frame_sizes(sample_rate)
    low, high = mel_scale(LOW_FREQ), mel_scale(sample_rate / 2)
    delta = (high - low) / (num_mel_bins + 1)
    edges = low + delta * torch.arange(num_mel_bins + 2, dtype=torch.float64)  # (bins + 2,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (bins,) each
    bin_mel = 1127.0 * torch.log1p(torch.arange(nfft // 2, dtype=torch.float64) * sample_rate / nfft / 700.0)
    bin_mel = bin_mel[:, None]  # (nfft/2, 1): HTK mel of each FFT bin, as mel_scale
    up = (bin_mel - left) / (centre - left)  # (nfft/2, bins)
    down = (right - bin_mel) / (right - centre)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)
    weights = torch.cat([weights, torch.zeros(1, num_mel_bins, dtype=torch.float64)])
    return weights.to(dtype=dtype, device=device)

"""Kaldi-style log-mel filterbank against a direct numpy loop written from the SPEC formulas."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

F = importlib.import_module("bindspace.preprocess.fbank")


def reference_fbank(x: np.ndarray) -> np.ndarray:
    """16 kHz, 128 bins, float64, one frame and one mel bin at a time."""
    frames = 1 + (len(x) - 400) // 160
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    low, delta = mel(20.0), (mel(8000.0) - mel(20.0)) / 129
    window = [0.5 - 0.5 * math.cos(2 * math.pi * i / 399) for i in range(400)]
    weights = np.zeros((257, 128))
    for b in range(128):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        for k in range(256):
            m = mel(k * 16000 / 512)
            up, down = (m - left) / (centre - left), (right - m) / (right - centre)
            weights[k, b] = max(0.0, min(up, down))
    out = np.zeros((frames, 128))
    for f in range(frames):
        frame = x[f * 160 : f * 160 + 400].astype(np.float64)
        frame = frame - frame.mean()
        emph = np.array([frame[j] - 0.97 * frame[max(j - 1, 0)] for j in range(400)])
        padded = np.zeros(512)
        padded[:400] = emph * window
        power = np.abs(np.fft.rfft(padded)) ** 2
        for b in range(128):
            out[f, b] = math.log(max(float(power @ weights[:, b]), 1.1920929e-07))
    return out


def test_float32_matches_reference_loop_within_fft_rounding() -> None:
    """float32 features agree with the float64 loop to within what float32 FFT rounding allows.

    A float32 FFT's error is absolute, about eps32·log2(nfft) times the frame's power (standard
    FFT error analysis), not relative to each bin: a mel bin holding 1e-7 of its frame's power
    (here the lowest bin, next to a 0.2 DC offset and a 440 Hz tone) can show a 1.5e-4 log
    error, and how large depends on the CPU's SIMD summation order. So energies are compared
    against that absolute scale (measured: 0.02 of it on one CPU); bins above 1 % of their
    frame's power must also agree to 1e-4 in log. The algorithm itself is checked exactly in
    float64 below.
    """
    rng = np.random.default_rng(0)
    t = np.arange(3200) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(3200) + 0.2).astype(np.float32)
    ours = F.fbank(torch.from_numpy(x)[None])[0].numpy()
    expected = reference_fbank(x)
    assert ours.shape == expected.shape == (18, 128)
    frame_power = np.exp(expected).sum(axis=1, keepdims=True)  # (frames, 1): power seen by the mel bins
    bound = np.finfo(np.float32).eps * math.log2(512) * frame_power
    error = np.abs(np.exp(ours.astype(np.float64)) - np.exp(expected))
    assert (error <= bound).all(), float((error / bound).max())
    loud = np.exp(expected) > 1e-2 * frame_power  # bins well above the rounding floor: tight in log too
    assert loud.sum() > 100 and np.abs(ours - expected)[loud].max() < 1e-4


def test_float64_matches_reference_tightly() -> None:
    x = np.random.default_rng(1).standard_normal(1000)
    ours = F.fbank(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(ours, reference_fbank(x), atol=1e-9)


@pytest.mark.parametrize("samples,frames", [(400, 1), (559, 1), (560, 2), (32000, 198), (19200, 118)])
def test_frame_count_snips_edges(samples: int, frames: int) -> None:
    assert F.num_frames(samples) == frames
    assert F.fbank(torch.randn(1, samples)).shape == (1, frames, 128)


def test_batch_equals_single_clips() -> None:
    x = torch.randn(3, 4000)
    batch = F.fbank(x)
    for i in range(3):
        torch.testing.assert_close(batch[i], F.fbank(x[i : i + 1])[0])


def test_mel_matrix_shape_and_cache() -> None:
    weights = F.mel_matrix(16000, 128, torch.float32, torch.device("cpu"))
    assert weights.shape == (257, 128)
    assert bool((weights[256] == 0).all())  # the Nyquist bin takes no part
    assert float(weights.min()) >= 0 and float(weights.max()) <= 1
    # At 31.25 Hz resolution the lowest triangles are narrower than a bin: some stay empty.
    assert int((weights.sum(0) == 0).sum()) > 0
    assert F.mel_matrix(16000, 128, torch.float32, torch.device("cpu")) is weights


def test_silence_hits_the_log_floor() -> None:
    out = F.fbank(torch.zeros(1, 800))
    torch.testing.assert_close(out, torch.full_like(out, math.log(1.1920929e-07)))


def test_rejects_short_or_misshapen_input() -> None:
    with pytest.raises(ValueError):
        F.fbank(torch.zeros(1, 399))
    with pytest.raises(ValueError):
        F.fbank(torch.zeros(800))

"""Windowed-sinc resampler: spec formula, signal properties, windowed and sparse paths."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

R = importlib.import_module("bindspace.preprocess.resample")


def reference_resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Direct float64 loop over output samples, straight from the SPEC formulas."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    base = min(o, n) * 0.99
    width = math.ceil(6 * o / base)
    out = np.zeros(-(-n * len(x) // o))
    for q in range(len(out)):
        m, p = divmod(q, n)
        acc = 0.0
        for j in range(-width, width + o):
            i = m * o + j
            if 0 <= i < len(x):
                t = min(max((j / o - p / n) * base, -6.0), 6.0)
                w = math.cos(t * math.pi / 12) ** 2
                sinc = 1.0 if t == 0 else math.sin(math.pi * t) / (math.pi * t)
                acc += x[i] * sinc * w * base / o
        out[q] = acc
    return out


@pytest.mark.parametrize("orig,new", [(3, 2), (2, 3), (441, 160), (5, 7)])
def test_matches_spec_loop(orig: int, new: int) -> None:
    x = np.random.default_rng(0).standard_normal(300)
    ours = R.resample(torch.from_numpy(x), orig, new).numpy()  # float64 in, float64 out
    np.testing.assert_allclose(ours, reference_resample(x, orig, new), atol=1e-10)


def test_identity_when_rates_equal() -> None:
    x = torch.randn(2, 1000)
    assert R.resample(x, 16000, 16000) is x


@pytest.mark.parametrize("orig,new", [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000), (16000, 44100)])
@pytest.mark.parametrize("length", [0, 1, 441, 1000, 4410])
def test_length_is_ceil(orig: int, new: int, length: int) -> None:
    out = R.resample(torch.randn(length), orig, new)
    assert out.shape[-1] == math.ceil(new * length / orig) == R.resampled_length(length, orig, new)


@pytest.mark.parametrize("orig,new,freq", [(44100, 16000, 440.0), (16000, 44100, 1000.0), (48000, 16000, 3000.0)])
def test_low_frequency_sine_stays_a_sine(orig: int, new: int, freq: float) -> None:
    x = torch.sin(2 * math.pi * freq * torch.arange(orig) / orig).double()
    y = R.resample(x, orig, new)
    expected = torch.sin(2 * math.pi * freq * torch.arange(y.shape[-1]) / new).double()
    inner = slice(200, -200)  # the zero padding beyond the ends bends the edges
    assert (y[inner] - expected[inner]).abs().max() < 5e-3  # passband ripple of a 6-crossing Hann sinc


def test_content_above_new_nyquist_is_removed() -> None:
    x = torch.sin(2 * math.pi * 11000 * torch.arange(44100) / 44100).double()
    y = R.resample(x, 44100, 16000)
    assert y[200:-200].abs().max() < 1e-2


def test_batched_over_leading_axes() -> None:
    x = torch.randn(2, 3, 2000)
    y = R.resample(x, 44100, 16000)
    assert y.shape == (2, 3, math.ceil(2000 * 160 / 441))
    torch.testing.assert_close(y[1, 2], R.resample(x[1, 2], 44100, 16000))


@pytest.mark.parametrize("orig,new", [(44100, 16000), (8000, 16000), (48000, 16000), (7, 5)])
def test_region_equals_slice_of_whole(orig: int, new: int) -> None:
    x = torch.randn(2, 20000)
    whole = R.resample(x, orig, new)
    spans: list[tuple[int, int]] = []

    def read(first: int, last: int) -> torch.Tensor:
        spans.append((first, last))
        return x[:, first:last]

    total = whole.shape[-1]
    width = R.filter_width(orig, new)
    o, n = R.reduced_rates(orig, new)
    for start, stop in [(0, 10), (0, total), (total - 7, total), (1234, 3456), (5, 6), (100, 100)]:
        spans.clear()
        part = R.resample_region(read, x.shape[-1], orig, new, start, stop)
        torch.testing.assert_close(part, whole[:, start:stop], atol=1e-5, rtol=0)
        if spans and stop > start:  # reads only the support, not the whole signal
            first, last = spans[0]
            assert last - first <= (stop - start) * o / n + 2 * width + 2 * o


def test_region_rejects_span_outside_output() -> None:
    with pytest.raises(ValueError):
        R.resample_region(lambda a, b: torch.zeros(1, b - a), 100, 44100, 16000, 0, 1000)


@pytest.mark.parametrize("orig,new", [(44100, 16000), (8000, 16000), (16000, 44100), (7, 5)])
def test_sparse_path_equals_dense(monkeypatch: pytest.MonkeyPatch, orig: int, new: int) -> None:
    x = torch.randn(2, 5000)
    dense = R.resample(x, orig, new)
    monkeypatch.setattr(R, "MAX_DENSE_TAPS", 0)
    torch.testing.assert_close(R.resample(x, orig, new), dense, atol=1e-5, rtol=0)


def test_coprime_rates_stay_small() -> None:
    # 44101 and 16000 are coprime: a dense kernel would have 16000 x 44135 taps.
    x = torch.sin(2 * math.pi * 440 * torch.arange(44101) / 44101)
    y = R.resample(x, 44101, 16000)
    expected = torch.sin(2 * math.pi * 440 * torch.arange(y.shape[-1]) / 16000)
    assert y.shape[-1] == 16000
    assert (y[200:-200] - expected[200:-200]).abs().max() < 2e-3


@pytest.mark.parametrize("rate", [0, -16000, 1.5, True])
def test_bad_rates(rate: object) -> None:
    with pytest.raises(ValueError):
        R.resample(torch.zeros(10), rate, 16000)

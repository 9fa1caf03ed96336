"""Windowed-sinc (Hann) resampling, bit-compatible with the reference preprocessing.

The filter has 6 zero crossings and a 0.99 roll-off.  Output sample `q = m·n + p`
(phase `p`, block `m`) reads input samples `m·o - width … m·o + width + o - 1`, so any
span of the output can be computed from a bounded span of the input: `resample_region`
uses this to resample windows of hours-long files without decoding them whole.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

ZERO_CROSSINGS = 6
ROLLOFF = 0.99
# Above this many kernel taps (n phases x (2·width + o)), e.g. for coprime rates such as
# 44101 -> 16000 whose dense kernel would need gigabytes, switch to a gather over the
# taps that can be non-zero; the dense kernel is exactly zero elsewhere in float32.
MAX_DENSE_TAPS = 1 << 22


def reduced_rates(orig_sr: int, new_sr: int) -> tuple[int, int]:
    """Both rates divided by their gcd: (o, n)."""
    _check_rate(orig_sr)
    _check_rate(new_sr)
    g = math.gcd(orig_sr, new_sr)
    return orig_sr // g, new_sr // g


def filter_width(orig_sr: int, new_sr: int) -> int:
    """Number of input samples the filter reaches beyond each block, on either side."""
    o, n = reduced_rates(orig_sr, new_sr)
    return math.ceil(ZERO_CROSSINGS * o / (min(o, n) * ROLLOFF))


def resampled_length(num_samples: int, orig_sr: int, new_sr: int) -> int:
    """Length of `resample` output for an input of `num_samples`: ceil(n·len / o)."""
    o, n = reduced_rates(orig_sr, new_sr)
    return -(-n * num_samples // o)


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample the last axis of a float tensor (..., T) from orig_sr to new_sr Hz."""
    if orig_sr == new_sr:
        return waveform
    o, n = reduced_rates(orig_sr, new_sr)
    width = filter_width(orig_sr, new_sr)
    length = waveform.shape[-1]
    padded = torch.nn.functional.pad(waveform, (width, width + o))
    return _correlate(padded, o, n)[..., : resampled_length(length, orig_sr, new_sr)]


def input_span(orig_sr: int, new_sr: int, start: int, stop: int) -> tuple[int, int]:
    """Input samples [first, last) that output samples [start, stop) depend on (may pass the ends)."""
    o, n = reduced_rates(orig_sr, new_sr)
    width = filter_width(orig_sr, new_sr)
    first_block, last_block = start // n, (stop - 1) // n
    return first_block * o - width, last_block * o + width + o


def resample_region(
    read: Callable[[int, int], torch.Tensor],
    num_samples: int,
    orig_sr: int,
    new_sr: int,
    start: int,
    stop: int,
) -> torch.Tensor:
    """Samples [start, stop) of `resample` of a signal of `num_samples`, reading only what they need.

    `read(first, last)` must return input samples [first, last) as (..., last - first)
    for 0 <= first <= last <= num_samples.
    """
    total = resampled_length(num_samples, orig_sr, new_sr)
    if not 0 <= start <= stop <= total:
        raise ValueError(f"output span [{start}, {stop}) outside [0, {total})")
    if orig_sr == new_sr:
        return read(start, stop)
    if start == stop:
        return read(0, 0)[..., :0]
    o, n = reduced_rates(orig_sr, new_sr)
    first, last = input_span(orig_sr, new_sr, start, stop)
    chunk = read(max(first, 0), min(last, num_samples))
    # Zeros stand in for input beyond either end, exactly as `resample` pads the whole signal.
    chunk = torch.nn.functional.pad(chunk, (max(-first, 0), max(last - num_samples, 0)))
    offset = start - (start // n) * n
    return _correlate(chunk, o, n)[..., offset : offset + stop - start]


def _correlate(padded: torch.Tensor, o: int, n: int) -> torch.Tensor:
    """Correlate each phase kernel with stride o over a pre-padded (..., T) signal and interleave."""
    width = math.ceil(ZERO_CROSSINGS * o / (min(o, n) * ROLLOFF))
    lead = padded.shape[:-1]
    flat = padded.reshape(-1, padded.shape[-1])  # (B, T)
    if n * (2 * width + o) > MAX_DENSE_TAPS:
        out = _correlate_sparse(flat, o, n, width)  # (B, blocks·n)
    else:
        kernels = _kernels(o, n, padded.dtype, padded.device)  # (n, 1, 2·width + o)
        out = torch.nn.functional.conv1d(flat[:, None], kernels, stride=o)  # (B, n, blocks)
        out = out.transpose(1, 2).reshape(flat.shape[0], -1)  # (B, blocks·n), phases interleaved
    return out.reshape(*lead, -1)


def _correlate_sparse(flat: torch.Tensor, o: int, n: int, width: int) -> torch.Tensor:
    """Same as the dense correlation, summing only the 2·width + 2 taps around each phase's centre."""
    blocks = (flat.shape[-1] - (2 * width + o)) // o + 1
    taps, weights = _sparse_kernels(o, n, width, flat.dtype, flat.device)  # (n, K) each
    out = []
    step = max(1, MAX_DENSE_TAPS // (n * taps.shape[1]))
    for m0 in range(0, blocks, step):
        m = torch.arange(m0, min(m0 + step, blocks), device=flat.device)
        index = m[:, None, None] * o + taps[None]  # (blocks', n, K) positions in the padded signal
        out.append((flat[:, index] * weights).sum(-1).reshape(flat.shape[0], -1))  # (B, blocks'·n)
    return torch.cat(out, dim=-1) if out else flat.new_zeros(flat.shape[0], 0)


@lru_cache(maxsize=8)
def _sparse_kernels(
    o: int, n: int, width: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per phase, padded-signal offsets of the taps that can be non-zero and their weights."""
    base = min(o, n) * ROLLOFF
    phases = torch.arange(n, dtype=torch.int64)
    centre = (phases * o) // n  # floor(o·p/n): the support is centre ± width
    j = centre[:, None] - width + torch.arange(2 * width + 2)[None, :]  # (n, K) tap j as in the spec
    t = ((j.double() / o - phases[:, None].double() / n) * base).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    weights = _kernel_values(t, base, o)
    inside = (j >= -width) & (j < width + o)  # taps the spec's kernel has at all
    weights = torch.where(inside, weights, torch.zeros_like(weights))
    return (j.clamp(-width, width + o - 1) + width).to(device), weights.to(dtype=dtype, device=device)


def _kernel_values(t: torch.Tensor, base: float, o: int) -> torch.Tensor:
    """Hann-windowed sinc at clamped float64 positions t (in zero crossings)."""
    window = torch.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return sinc * window * (base / o)


@lru_cache(maxsize=32)
def _kernels(o: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Phase kernels (n, 1, 2·width + o), computed in float64 then cast, as the reference does."""
    base = min(o, n) * ROLLOFF
    width = math.ceil(ZERO_CROSSINGS * o / base)
    taps = torch.arange(-width, width + o, dtype=torch.float64)[None, :] / o
    phases = torch.arange(n, dtype=torch.float64)[:, None] / n
    t = ((taps - phases) * base).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    return _kernel_values(t, base, o).to(dtype=dtype, device=device)[:, None, :]


def _check_rate(rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {rate!r}")

"""Audio inputs: waveform -> 16 kHz -> clips of 2 s -> normalised Kaldi log-mel, as the reference does.

Per input: resample to 16 kHz, cut `clips` clips of `clip_seconds` evenly over the
recording, subtract each clip's mean, take the log-mel of the first channel, pad or
cut to `target_frames` frames and normalise -> (clips, 1, 128, target_frames).

Long seekable files (over LONG_AUDIO_SECONDS) are never decoded whole: only each
clip's input window plus the resampler's filter support is read, which gives the same
16 kHz samples as resampling the whole file (up to float32 summation order). The decoders
(`audio_io`: soundfile, PyAV) are imported when a file is opened, not with this module.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import InputError
from .batching import load_batch
from .fbank import fbank, frame_sizes
from .resample import resample, resample_region, resampled_length
from .sources import source_name

if TYPE_CHECKING:
    from .audio_io import AudioReader

MEL_MEAN = -4.268
MEL_STD = 9.138
MEL_BINS = 128
LONG_AUDIO_SECONDS = 60.0  # above this, seekable files are read clip window by clip window
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000
MAX_CHANNELS = 64

Region = Callable[[int, int], torch.Tensor]  # (start, stop) at the target rate -> (C, stop - start)


def audio(items: Sequence[object], **kwargs: object) -> torch.Tensor:
    """Batch of audio inputs -> (N, clips, 1, 128, target_frames)."""
    return load_batch("audio", items, load_audio, **kwargs)


def load_audio(
    item: object,
    name: str | None = None,
    *,
    clips: int = 3,
    clip_seconds: float = 2.0,
    target_frames: int = 204,
    sample_rate: int = 16000,
) -> torch.Tensor:
    """One audio input (path, bytes, file object or (waveform, rate)) -> (clips, 1, 128, target_frames).

    Silent audio (all samples zero) is embedded as the original does: every log-mel value is
    the epsilon floor. Too-short, NaN/infinite and undecodable inputs raise InputError.
    """
    name = name or source_name(item)
    if isinstance(item, (np.ndarray, torch.Tensor)):
        raise InputError(name, "an array needs its sample rate: pass (waveform, sample_rate)")
    if isinstance(item, tuple):
        waveform = resample(*array_waveform(item, name), sample_rate)
        return _clip_features(waveform, name, clips, clip_seconds, target_frames, sample_rate)
    from .audio_io import open_audio

    with open_audio(item, name) as reader:  # type: ignore[arg-type]
        _check_reader(reader, name)
        if _is_long(reader):
            return _windowed_features(reader, name, clips, clip_seconds, target_frames, sample_rate)
        waveform = _whole(reader, name, sample_rate)
    return _clip_features(waveform, name, clips, clip_seconds, target_frames, sample_rate)


def load_audio_segments(
    item: object,
    name: str | None = None,
    *,
    segment_seconds: float,
    min_last_seconds: float = 0.5,
    clips: int = 3,
    clip_seconds: float = 2.0,
    target_frames: int = 204,
    sample_rate: int = 16000,
) -> tuple[list[tuple[float, float]], torch.Tensor]:
    """Consecutive windows [k·S, (k+1)·S) -> their (start, end) seconds and (S, clips, 1, 128, frames).

    Each window becomes exactly what `load_audio` makes of that stretch of 16 kHz audio.
    A trailing partial window is kept when it lasts at least `min_last_seconds` (or when
    it is the only window). Silent windows are embedded like any other (see `load_audio`).
    """
    name = name or source_name(item)
    segment = int(round(segment_seconds * sample_rate))
    if segment < frame_sizes(sample_rate)[0]:
        raise InputError(name, f"segment_seconds={segment_seconds} is shorter than one 25 ms frame")
    if isinstance(item, tuple):
        waveform = resample(*array_waveform(item, name), sample_rate)
        return _segments(lambda a, b: waveform[:, a:b], waveform.shape[1], segment, min_last_seconds,
                         name, clips, clip_seconds, target_frames, sample_rate)
    from .audio_io import open_audio

    with open_audio(item, name) as reader:  # type: ignore[arg-type]
        _check_reader(reader, name)
        if _is_long(reader):
            length = resampled_length(reader.frames, reader.sample_rate, sample_rate)
            region = _reader_region(reader, sample_rate)
        else:
            waveform = _whole(reader, name, sample_rate)
            length, region = waveform.shape[1], (lambda a, b: waveform[:, a:b])
        return _segments(region, length, segment, min_last_seconds,
                         name, clips, clip_seconds, target_frames, sample_rate)


def array_waveform(item: tuple, name: str) -> tuple[torch.Tensor, int]:
    """Validate a (waveform, sample_rate) pair -> float32 (C, T) tensor and int rate."""
    if len(item) != 2:
        raise InputError(name, "expected a (waveform, sample_rate) pair")
    data, rate = item
    rate = _check_rate(rate, name)
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        raise InputError(name, f"waveform must be a numpy array or torch tensor, not {type(data).__name__}")
    data = _to_float(data, name)
    if data.ndim == 1:
        data = data[None]  # (T,) -> (1, T)
    if data.ndim != 2:
        raise InputError(name, f"waveform must have shape (T,) or (channels, T), got {data.shape}")
    if data.size == 0:
        raise InputError(name, "contains no audio samples")
    if data.shape[0] > MAX_CHANNELS or data.shape[0] > data.shape[1]:
        raise InputError(name, f"waveform shape {data.shape} looks like (T, channels): pass waveform.T")
    if not np.isfinite(data).all():
        raise InputError(name, "waveform contains NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), rate


def clip_bounds(length: int, clips: int, clip_seconds: float, sample_rate: int) -> list[tuple[int, int]]:
    """Sample ranges of the clips in a waveform of `length` samples, exactly as the reference cuts them."""
    # The reference works in exact rationals from the *float* duration len / rate, then floors.
    duration = Fraction(length / sample_rate)
    clip = Fraction(clip_seconds)
    spare = max(duration - clip, Fraction(0))
    bounds = []
    for k in range(clips):
        start = spare * k / clips
        bounds.append((int(start * sample_rate), min(int((start + clip) * sample_rate), length)))
    return bounds


def _clip_features(
    waveform: torch.Tensor, name: str, clips: int, clip_seconds: float, target_frames: int, sample_rate: int,
) -> torch.Tensor:
    """(C, T) float waveform at sample_rate -> (clips, 1, 128, target_frames)."""
    _check_waveform(waveform, name, sample_rate)
    buffer = waveform.clone()  # modified in place below
    firsts = []
    for start, stop in clip_bounds(buffer.shape[1], clips, clip_seconds, sample_rate):
        part = buffer[:, start:stop]  # a view into the shared buffer
        # The reference subtracts each clip's mean in place on the shared waveform, so where
        # clips overlap (recordings under 8 s) a later clip sees samples already shifted by the
        # earlier clips' means.  It moves the log-mel by up to 1e-2, so we do the same.
        part -= part.mean()
        firsts.append(part[0].clone())  # fbank sees this clip before later clips shift it again
    return _features(firsts, target_frames, sample_rate)


def _windowed_features(
    reader: AudioReader, name: str, clips: int, clip_seconds: float, target_frames: int, sample_rate: int
) -> torch.Tensor:
    """Clips of a long file, reading and resampling only each clip's window."""
    length = resampled_length(reader.frames, reader.sample_rate, sample_rate)
    bounds = clip_bounds(length, clips, clip_seconds, sample_rate)
    if any(b0 > a1 for (_, b0), (a1, _) in zip(bounds, bounds[1:])):
        # Overlapping clips need the in-place mean quirk on one shared buffer (only with
        # unusual clips/clip_seconds: 3 clips of 2 s never overlap beyond 8 s).
        waveform = _whole(reader, name, sample_rate)
        return _clip_features(waveform, name, clips, clip_seconds, target_frames, sample_rate)
    region = _reader_region(reader, sample_rate)
    parts = [region(start, stop) for start, stop in bounds]
    _check_finite(torch.cat(parts, dim=1), name)
    return _features([(part - part.mean())[0] for part in parts], target_frames, sample_rate)


def _segments(
    region: Region, length: int, segment: int, min_last_seconds: float, name: str,
    clips: int, clip_seconds: float, target_frames: int, sample_rate: int,
) -> tuple[list[tuple[float, float]], torch.Tensor]:
    """Split [0, length) into windows of `segment` samples and featurise each like a whole input."""
    min_last = max(int(round(min_last_seconds * sample_rate)), frame_sizes(sample_rate)[0])
    spans = [(a, min(a + segment, length)) for a in range(0, length, segment)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < min_last:
        spans.pop()
    features = []
    for start, stop in spans:
        waveform = region(start, stop)
        _check_finite(waveform, name)
        features.append(_clip_features(waveform, name, clips, clip_seconds, target_frames, sample_rate))
    times = [(start / sample_rate, stop / sample_rate) for start, stop in spans]
    return times, torch.stack(features)


def _features(firsts: list[torch.Tensor], target_frames: int, sample_rate: int) -> torch.Tensor:
    """First-channel clips (each (T_k,)) -> normalised log-mel (clips, 1, 128, target_frames)."""
    out = torch.empty(len(firsts), 1, MEL_BINS, target_frames, dtype=torch.float32)
    by_length: dict[int, list[int]] = {}
    for k, clip in enumerate(firsts):
        by_length.setdefault(clip.shape[0], []).append(k)
    for indices in by_length.values():  # clips of equal length share one batched fbank
        mel = fbank(torch.stack([firsts[k].float() for k in indices]), sample_rate, MEL_BINS)  # (B, F, 128)
        mel = mel.transpose(1, 2)  # (B, 128, F)
        frames = mel.shape[2]
        if frames < target_frames:
            mel = torch.nn.functional.pad(mel, (0, target_frames - frames))  # zeros, before normalising
        mel = mel[..., :target_frames]
        out[indices, 0] = (mel - MEL_MEAN) / MEL_STD
    return out


def _reader_region(reader: AudioReader, sample_rate: int) -> Region:
    """Samples [start, stop) of the reader's audio resampled to sample_rate, reading only their support."""
    def read(first: int, last: int) -> torch.Tensor:
        return torch.from_numpy(reader.read(first, last))

    def region(start: int, stop: int) -> torch.Tensor:
        return resample_region(read, reader.frames, reader.sample_rate, sample_rate, start, stop)

    return region


def _whole(reader: AudioReader, name: str, sample_rate: int) -> torch.Tensor:
    """Decode everything and resample -> (C, T) at sample_rate."""
    data = torch.from_numpy(reader.read_all())
    if data.shape[1] == 0:
        raise InputError(name, "contains no audio samples")
    _check_finite(data, name)
    return resample(data, reader.sample_rate, sample_rate)


def _is_long(reader: AudioReader) -> bool:
    """Long and seekable: worth reading by windows (then with an exact frame count)."""
    if not (reader.seekable and reader.frames > LONG_AUDIO_SECONDS * reader.sample_rate):
        return False
    return reader.measure() > LONG_AUDIO_SECONDS * reader.sample_rate


def _check_reader(reader: AudioReader, name: str) -> None:
    _check_rate(reader.sample_rate, name)
    if reader.exact and reader.frames == 0:
        raise InputError(name, "contains no audio samples")


def _check_waveform(waveform: torch.Tensor, name: str, sample_rate: int) -> None:
    # Silence is not an error: the original's filterbank floors zero energy at float epsilon, so
    # silent audio has a well-defined embedding (every log-mel value log(1.19e-7)); we embed it too.
    frame = frame_sizes(sample_rate)[0]
    if waveform.shape[1] < frame:
        seconds = waveform.shape[1] / sample_rate
        raise InputError(name, f"audio too short: {seconds * 1000:.1f} ms, need at least one 25 ms frame")


def _check_finite(waveform: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(waveform).all()):
        raise InputError(name, "audio contains NaN or infinite samples")


def _check_rate(rate: object, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(float(rate)):
        raise InputError(name, f"bad sample rate {rate!r}")
    value = float(rate)
    if value != int(value) or not MIN_SAMPLE_RATE <= int(value) <= MAX_SAMPLE_RATE:
        bounds = f"[{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]"
        raise InputError(name, f"bad sample rate {rate!r}: need an integer in {bounds} Hz")
    return int(value)


def _to_float(data: np.ndarray, name: str) -> np.ndarray:
    """Float samples pass through; integer PCM is scaled to [-1, 1]."""
    if data.dtype.kind == "f":
        return data
    if data.dtype.kind == "i":
        return data / float(2 ** (8 * data.dtype.itemsize - 1))
    if data.dtype.kind == "u":
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        return (data - half) / half
    raise InputError(name, f"waveform has unsupported dtype {data.dtype}")

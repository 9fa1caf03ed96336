"""Decode audio from paths, bytes or file objects: soundfile first, PyAV (FFmpeg) as fallback.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis/Opus and MP3 with exact frame
counts and sample-accurate seeks.  Anything else FFmpeg understands (m4a/AAC, the
audio track of an mp4, ...) goes through PyAV, whose frame count comes from container
metadata and may differ from the decoded count by an encoder delay (a few ms).
Readers return float32 arrays (channels, samples) in [-1, 1] and can read windows,
so long files never have to be decoded whole.  A window equals the same span of a
whole decode, except where a codec's decoder carries random state across frames
(AAC noise substitution): there the noise-like bands get another noise realisation.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from fractions import Fraction
from typing import IO

import av
import numpy as np
import soundfile
import torch

from ..errors import InputError
from .sources import Source, check_path, is_path, source_name

# Decoding after a seek starts this early so that codecs with inter-frame state
# (AAC overlap, MP3 bit reservoir, Opus pre-roll) are warm by the first wanted sample.
PREROLL_SECONDS = 0.5

_INT_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}


class AudioReader:
    """An open audio stream: frames, sample_rate, channels; read(first, last) -> (C, n) float32."""

    frames: int
    sample_rate: int
    channels: int
    exact: bool  # frames is the exact decoded length, not a metadata estimate
    seekable: bool

    def read(self, first: int, last: int) -> np.ndarray:
        """Frames [first, last) as (channels, last - first) float32, zero-filled past the end."""
        raise NotImplementedError

    def read_window(self, first: int, last: int) -> np.ndarray:
        """Frames [first, last) that exist, as (channels, n) float32 (shorter at the end of the stream)."""
        raise NotImplementedError

    def read_all(self) -> np.ndarray:
        """Every frame as (channels, frames) float32; updates `frames` to the decoded count."""
        raise NotImplementedError

    def read_to_end(self, first: int) -> np.ndarray:
        """Frames from `first` to the end of the stream as (channels, n) float32."""
        raise NotImplementedError

    def measure(self) -> int:
        """Make `frames` exact (decoding as little as possible) and return it."""
        return self.frames


class _SoundfileReader(AudioReader):
    def __init__(self, handle: soundfile.SoundFile, name: str) -> None:
        self._file, self._name = handle, name
        self.frames, self.sample_rate, self.channels = handle.frames, handle.samplerate, handle.channels
        # MP3 lengths come from a Xing/LAME header or a bitrate estimate; other formats are exact.
        self.exact, self.seekable = handle.format != "MP3", handle.seekable()
        if _declares_missing_data(handle.extra_info):
            raise InputError(name, "truncated file: the header declares more audio than the file holds")

    def read(self, first: int, last: int) -> np.ndarray:
        out = np.zeros((self.channels, max(last - first, 0)), dtype=np.float32)
        stop = min(last, self.frames)
        if stop > first:
            try:
                self._file.seek(first)
                data = self._file.read(stop - first, dtype="float32", always_2d=True)  # (n, C)
            except (RuntimeError, soundfile.SoundFileError) as err:
                raise InputError(self._name, f"corrupt or truncated audio ({err})") from None
            out[:, : data.shape[0]] = data.T
        return out

    def read_all(self) -> np.ndarray:
        try:
            if self.seekable:
                self._file.seek(0)
            data = self._file.read(dtype="float32", always_2d=True)  # (frames, C)
        except (RuntimeError, soundfile.SoundFileError) as err:
            raise InputError(self._name, f"corrupt or truncated audio ({err})") from None
        if self.exact and data.shape[0] < self.frames:
            raise InputError(self._name, f"truncated audio: decoded {data.shape[0]} of {self.frames} frames")
        self.frames, self.exact = data.shape[0], True
        return np.ascontiguousarray(data.T)

    def read_window(self, first: int, last: int) -> np.ndarray:
        return self.read(first, max(first, min(last, self.frames)))

    def measure(self) -> int:
        # An MP3 length can be an estimate: decode from shortly before the stated end to EOF.
        if self.exact or not self.seekable:
            return self.frames
        start = max(self.frames - 2 * self.sample_rate, 0)
        try:
            self._file.seek(start)
            tail = self._file.read(dtype="float32", always_2d=True).shape[0]
        except (RuntimeError, soundfile.SoundFileError):
            tail = 0
        if tail == 0:
            return self.read_all().shape[1]
        self.frames, self.exact = start + tail, True
        return self.frames

    def read_to_end(self, first: int) -> np.ndarray:
        """Frames from `first` to the end of the file."""
        return self.read(first, max(first, self.frames))


# A chunk size a streaming writer puts in the header because it cannot seek back to fill it in
# (`ffmpeg ... -f wav -` writes it for RIFF and data): "unknown length", not "longer than the file".
_STREAMED_SIZE = 0xFFFFFFFF
_SIZE_NOTE = re.compile(r"^\s*(\S+)\s*:\s*(\d+)\s*\(should be", re.MULTILINE)


def _declares_missing_data(extra_info: str) -> bool:
    """Whether libsndfile noted a chunk declared longer than the file ("data : N (should be M)"),
    other than a streamed file's placeholder size."""
    return any(int(size) != _STREAMED_SIZE for _, size in _SIZE_NOTE.findall(extra_info))


class _AvReader(AudioReader):
    def __init__(self, target: str | IO[bytes], name: str) -> None:
        self._target, self._name = target, name
        self._position = None if isinstance(target, str) else target.tell()
        self._container = container = self._open()
        if not container.streams.audio:
            container.close()
            raise InputError(name, "no audio stream (not an audio file?)")
        self._stream = stream = container.streams.audio[0]
        self._fresh = True  # nothing decoded since the container was opened
        ctx = stream.codec_context
        self.sample_rate = int(ctx.sample_rate or stream.rate or 0)
        self.channels = int(ctx.layout.nb_channels if ctx.layout else 0) or int(getattr(ctx, "channels", 0))
        if self.sample_rate <= 0 or self.channels <= 0:
            raise InputError(name, "audio stream without sample rate or channel layout")
        self._start = stream.start_time or 0
        self.frames = self._metadata_frames()
        self.exact = False
        # Windows need timestamps that resolve single samples (mp4: 1/rate; Matroska's
        # 1 ms does not); otherwise samples are placed by counting from the start.
        tb = stream.time_base
        self.seekable = tb is not None and tb <= Fraction(1, self.sample_rate)

    def _open(self) -> av.container.InputContainer:
        if self._position is not None:
            self._target.seek(self._position)  # type: ignore[union-attr]
        try:
            return av.open(self._target, mode="r")
        except (av.error.FFmpegError, ValueError, OSError) as err:
            raise InputError(self._name, f"not a readable audio file ({_short(err)})") from None

    def close(self) -> None:
        """Close the container (not a caller's file object)."""
        self._container.close()

    def _metadata_frames(self) -> int:
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None:
            return max(int(round(float(stream.duration * stream.time_base) * self.sample_rate)), 0)
        if self._container.duration is not None:
            return max(int(round(self._container.duration / av.time_base * self.sample_rate)), 0)
        return 0

    def _decode_from(self, sample: int) -> Iterator[tuple[int, np.ndarray]]:
        """Decoded frames as (index of their first sample, (C, n) float32), starting at or before `sample`."""
        if self.seekable and sample > 0:
            self._seek(max(sample - int(PREROLL_SECONDS * self.sample_rate), 0))
        else:
            self._restart()
        tb, count = self._stream.time_base, 0
        try:
            for frame in self._container.decode(self._stream):
                if self.seekable and frame.pts is None:  # timestamps missing after all
                    self.seekable = False
                    yield from self._decode_from(sample)
                    return
                index = count
                if self.seekable and sample > 0 and frame.pts is not None and tb is not None:
                    index = int(round(float((frame.pts - self._start) * tb) * self.sample_rate))
                count += frame.samples
                yield index, _frame_array(frame, self.channels)
        except (av.error.FFmpegError, ValueError) as err:
            raise InputError(self._name, f"corrupt or truncated audio ({_short(err)})") from None

    def measure(self) -> int:
        # Container durations can miss encoder delay/padding; decoding the last couple of
        # seconds gives the decoded length exactly, which clip boundaries depend on.
        if not self.exact:
            end = 0
            for index, array in self._decode_from(max(self.frames - 2 * self.sample_rate, 0)):
                end = max(end, index + array.shape[1])
            self.frames, self.exact = end, True
        return self.frames

    def read_all(self) -> np.ndarray:
        chunks = [array for _, array in self._decode_from(0)]
        data = np.concatenate(chunks, axis=1) if chunks else np.zeros((self.channels, 0), np.float32)
        self.frames, self.exact = data.shape[1], True
        return data

    def read(self, first: int, last: int) -> np.ndarray:
        return self._read(first, last)[0]

    def read_window(self, first: int, last: int) -> np.ndarray:
        out, filled = self._read(first, last)
        return out[:, :filled]

    def _read(self, first: int, last: int) -> tuple[np.ndarray, int]:
        """Zero-filled (C, last - first) window and how many leading samples the stream covered."""
        out = np.zeros((self.channels, max(last - first, 0)), dtype=np.float32)
        filled = 0
        if last <= first:
            return out, filled
        for index, array in self._decode_from(first):
            lo, hi = max(index, first), min(index + array.shape[1], last)
            if hi > lo:
                out[:, lo - first : hi - first] = array[:, lo - index : hi - index]
                filled = max(filled, hi - first)
            if index + array.shape[1] >= last:
                break
        return out, filled

    def read_to_end(self, first: int) -> np.ndarray:
        """Frames from `first` to the end of the decoded stream."""
        chunks = [array[:, max(first - index, 0) :] for index, array in self._decode_from(first)
                  if index + array.shape[1] > first]
        return np.concatenate(chunks, axis=1) if chunks else np.zeros((self.channels, 0), np.float32)

    def _restart(self) -> None:
        """Position at the very start with a fresh decoder."""
        # Seeking back does not fully reset some decoders (AAC's first frame comes out
        # different), so reading from the start reopens the container instead.
        if not self._fresh:
            self._container.close()
            self._container = self._open()
            self._stream = self._container.streams.audio[0]
        self._fresh = False

    def _seek(self, sample: int) -> None:
        """Seek to the packet at or before `sample`."""
        self._fresh = False
        time_base = self._stream.time_base
        assert time_base is not None  # seekable implies a time base (see __init__)
        target = self._start + int(sample / self.sample_rate / time_base)
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except (av.error.FFmpegError, ValueError, OverflowError) as err:
            raise InputError(self._name, f"cannot seek in audio ({_short(err)})") from None


def _frame_array(frame: av.AudioFrame, channels: int) -> np.ndarray:
    """A decoded frame as (channels, samples) float32 in [-1, 1]."""
    array = frame.to_ndarray()
    fmt = frame.format
    if not fmt.is_planar:
        array = array.reshape(-1, channels).T  # packed (1, n·C) -> (C, n)
    kind = fmt.name.rstrip("p")
    if kind in _INT_SCALE:
        return (array / _INT_SCALE[kind]).astype(np.float32)
    if kind == "u8":
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    return array.astype(np.float32, copy=False)


@contextmanager
def open_audio(item: Source, name: str | None = None) -> Iterator[AudioReader]:
    """Open an audio input for reading; InputError if it is empty or not decodable audio."""
    name = name or source_name(item)
    with ExitStack() as stack:
        stack.enter_context(_as_input_error(name))
        reader = _open_reader(_prepare(item, name), name, stack)
        yield reader


def _open_reader(target: str | IO[bytes], name: str, stack: ExitStack) -> AudioReader:
    position = None if isinstance(target, str) else target.tell()
    try:
        return _SoundfileReader(stack.enter_context(soundfile.SoundFile(target)), name)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        pass  # not a libsndfile format: let FFmpeg try
    if position is not None:
        target.seek(position)  # type: ignore[union-attr]
    reader = _AvReader(target, name)
    stack.callback(reader.close)
    return reader


@contextmanager
def _as_input_error(name: str) -> Iterator[None]:
    """Closing a half-read container can raise decoder errors of its own: name the input."""
    try:
        yield
    except (av.error.FFmpegError, soundfile.LibsndfileError) as err:
        raise InputError(name, f"corrupt or truncated audio ({_short(err)})") from None


def _prepare(item: Source, name: str) -> str | IO[bytes]:
    """A path string or a seekable binary file object positioned at the data."""
    if is_path(item):
        return check_path(item)  # type: ignore[arg-type]
    if isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise InputError(name, "empty input (0 bytes)")
        return io.BytesIO(bytes(item))
    if hasattr(item, "read"):
        handle: IO[bytes] = item  # type: ignore[assignment]
        seekable = getattr(handle, "seekable", lambda: False)()
        if not seekable:  # pipes and sockets: both decoders need to seek
            handle = io.BytesIO(handle.read())
        position = handle.tell()
        if not handle.read(1):
            raise InputError(name, "empty input (0 bytes)")
        handle.seek(position)
        return handle
    raise InputError(name, f"unsupported input type {type(item).__name__}")


def _short(err: BaseException) -> str:
    # FFmpeg's errors carry their sentence in strerror; str() adds "[Errno -1094995529] ... 'file'".
    text = (getattr(err, "strerror", None) or str(err)).strip() or type(err).__name__
    return text if len(text) < 160 else text[:157] + "..."


def decode_audio(
    item: Source, name: str | None = None, *, start: float | None = None, end: float | None = None
) -> tuple[torch.Tensor, int]:
    """Decode to float32 (channels, T) in [-1, 1] and the sample rate; start/end (s) read only a window."""
    name = name or source_name(item)
    if (start is not None and start < 0) or (start is not None and end is not None and end < start):
        raise InputError(name, f"bad window start={start} end={end}")
    with open_audio(item, name) as reader:
        rate = reader.sample_rate
        if start is None and end is None:
            data = reader.read_all()
            if data.shape[1] == 0:
                raise InputError(name, "contains no audio samples")
        else:
            first = int(round((start or 0.0) * rate))
            if end is None:
                data = reader.read_to_end(first)
            else:
                data = reader.read_window(first, max(first, int(round(end * rate))))
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), rate


def audio_info(item: Source, name: str | None = None) -> tuple[int, int, int]:
    """(num_frames, sample_rate, channels) from the header or container metadata, without decoding."""
    name = name or source_name(item)
    with open_audio(item, name) as reader:
        frames = reader.frames if reader.frames > 0 else reader.read_all().shape[1]
        return frames, reader.sample_rate, reader.channels

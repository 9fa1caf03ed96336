"""Audio decoding and the audio loader: parity with the reference goldens, decoders, windows, guards."""
from __future__ import annotations

import importlib
import io
import math
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.numpy import load_file

from bindspace.errors import InputError

A = importlib.import_module("bindspace.preprocess.audio")
IO = importlib.import_module("bindspace.preprocess.audio_io")
R = importlib.import_module("bindspace.preprocess.resample")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AUDIO_FILES = [FIXTURES / "media" / f"audio_{i}.wav" for i in (1, 2, 3)]


def tone(seconds: float, rate: int, channels: int = 1, noise: float = 0.03) -> np.ndarray:
    """(channels, T) float32: a gliding tone plus a little noise, different per channel."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    rows = [0.3 * np.sin(2 * np.pi * (300 + 80 * c + 50 * np.sin(t / 3)) * t) + noise * rng.standard_normal(t.size)
            for c in range(channels)]
    return np.stack(rows).astype(np.float32)


def write_av(path: Path, wave: np.ndarray, rate: int, codec: str, video: bool = False) -> Path:
    """Encode (C, T) float32 with PyAV, optionally beside a tiny video stream."""
    layout = "stereo" if wave.shape[0] == 2 else "mono"
    with av.open(str(path), "w") as container:
        if video:
            vstream = container.add_stream("mpeg4", rate=10)
            vstream.width = vstream.height = 32
            vstream.pix_fmt = "yuv420p"
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        step = 4096
        for i in range(0, wave.shape[1], step):
            chunk = np.ascontiguousarray(wave[:, i : i + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if video:
            for k in range(int(wave.shape[1] / rate * 10)):
                image = av.VideoFrame.from_ndarray(np.full((32, 32, 3), k * 8 % 255, np.uint8), format="rgb24")
                for packet in vstream.encode(image):
                    container.mux(packet)
            for packet in vstream.encode(None):
                container.mux(packet)
    return path


# --- parity with the reference -------------------------------------------------------------

def test_goldens_parity() -> None:
    golden = load_file(str(FIXTURES / "goldens_tiny.safetensors"))["audio.mel"]
    ours = A.audio([str(p) for p in AUDIO_FILES])
    assert ours.shape == golden.shape == (3, 3, 1, 128, 204)
    for i in range(3):  # 16 kHz, 44.1 kHz stereo (resampled), 1.2 s (padded)
        assert np.abs(ours[i].numpy() - golden[i]).max() < 1e-3, AUDIO_FILES[i].name


def test_in_place_mean_quirk_is_what_matches() -> None:
    # audio_1 lasts 5 s, so its clips overlap; subtracting means on copies drifts from the reference.
    golden = load_file(str(FIXTURES / "goldens_tiny.safetensors"))["audio.mel"][0]
    wave, rate = IO.decode_audio(AUDIO_FILES[0])
    clips = []
    for start, stop in A.clip_bounds(wave.shape[1], 3, 2.0, 16000):
        part = wave[:, start:stop] - wave[:, start:stop].mean()  # no in-place sharing
        clips.append(part[0])
    naive = A._features(clips, 204, 16000).numpy()
    ours = A.load_audio(AUDIO_FILES[0]).numpy()
    assert np.abs(ours - golden).max() < np.abs(naive - golden).max()


def test_clip_bounds() -> None:
    assert A.clip_bounds(80000, 3, 2.0, 16000) == [(0, 32000), (16000, 48000), (32000, 64000)]
    assert A.clip_bounds(19200, 3, 2.0, 16000) == [(0, 19200)] * 3  # shorter than a clip
    for length in (32000, 32001, 48017, 160003, 9_600_000):
        bounds = A.clip_bounds(length, 3, 2.0, 16000)
        assert all(b - a == 32000 and b <= length for a, b in bounds)


# --- inputs and decoders -------------------------------------------------------------------

def test_path_bytes_and_file_objects_agree() -> None:
    path = AUDIO_FILES[1]
    expected = A.load_audio(path)
    data = path.read_bytes()
    torch.testing.assert_close(A.load_audio(data), expected)
    with open(path, "rb") as handle:
        torch.testing.assert_close(A.load_audio(handle), expected)

    class Pipe(io.RawIOBase):  # a non-seekable stream
        def __init__(self) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    torch.testing.assert_close(A.load_audio(Pipe()), expected)


def test_array_inputs_match_file() -> None:
    path = AUDIO_FILES[1]
    expected = A.load_audio(path)
    pcm, rate = sf.read(path, dtype="int16", always_2d=True)  # (T, C)
    torch.testing.assert_close(A.load_audio((pcm.T, rate)), expected)  # int16 is scaled to [-1, 1]
    wave, _ = IO.decode_audio(path)
    torch.testing.assert_close(A.load_audio((wave, rate)), expected)
    as_float64 = (wave.numpy().astype(np.float64), np.int64(rate))
    torch.testing.assert_close(A.load_audio(as_float64), expected, atol=1e-5, rtol=0)
    mono = A.load_audio((wave[0], rate))
    assert mono.shape == (3, 1, 128, 204)


@pytest.mark.parametrize("fmt,subtype,suffix,tol", [
    ("WAV", "PCM_16", ".wav", 1e-4), ("WAV", "FLOAT", ".wav", 0), ("FLAC", "PCM_24", ".flac", 1e-6),
    ("OGG", "VORBIS", ".ogg", None), ("OGG", "OPUS", ".opus", None), ("MP3", None, ".mp3", None),
])
def test_soundfile_formats(tmp_path: Path, fmt: str, subtype: str | None, suffix: str, tol: float | None) -> None:
    wave = tone(1.5, 48000 if subtype == "OPUS" else 22050, channels=2)
    rate = 48000 if subtype == "OPUS" else 22050
    path = tmp_path / f"x{suffix}"
    sf.write(path, wave.T, rate, format=fmt, subtype=subtype)
    frames, info_rate, channels = IO.audio_info(path)
    decoded, decoded_rate = IO.decode_audio(path)
    assert (info_rate, channels) == (decoded_rate, decoded.shape[0]) == (rate, 2)
    assert decoded.dtype == torch.float32 and abs(frames - wave.shape[1]) <= 0.1 * rate
    if tol is not None:
        torch.testing.assert_close(decoded, torch.from_numpy(wave), atol=tol, rtol=0)
    # A window equals the same span of the whole decode.
    window, _ = IO.decode_audio(path, start=0.5, end=0.9)
    first = round(0.5 * rate)
    torch.testing.assert_close(window, decoded[:, first : first + window.shape[1]], atol=1e-6, rtol=0)
    assert window.shape[1] == round(0.9 * rate) - first
    assert A.load_audio(path).shape == (3, 1, 128, 204)


@pytest.mark.parametrize("suffix,codec,video",
                         [(".m4a", "aac", False), (".mp4", "aac", True), (".mka", "libmp3lame", False)])
def test_pyav_fallback(tmp_path: Path, suffix: str, codec: str, video: bool) -> None:
    # No noise: AAC's decoder fills noise-like bands from a random generator whose state
    # depends on every earlier frame, so only tonal content decodes identically after a seek.
    wave = tone(3.0, 44100, channels=2, noise=0.0)
    path = write_av(tmp_path / f"x{suffix}", wave, 44100, codec, video)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)  # so the PyAV path is the one exercised
    decoded, rate = IO.decode_audio(path)
    frames, info_rate, channels = IO.audio_info(path)
    assert (rate, info_rate, channels, decoded.shape[0]) == (44100, 44100, 2, 2)
    assert abs(frames - decoded.shape[1]) <= 4096 and abs(decoded.shape[1] - wave.shape[1]) <= 4096  # metadata estimate
    # Windows come from a seek plus pre-roll, yet equal the whole decode.
    for start in (0.0, 1.3, 2.5):
        window, _ = IO.decode_audio(path, start=start, end=start + 0.4)
        first = round(start * rate)
        assert window.shape[1] == round((start + 0.4) * rate) - first
        torch.testing.assert_close(window, decoded[:, first : first + window.shape[1]], atol=1e-4, rtol=0)
    tail, _ = IO.decode_audio(path, start=2.0)
    assert tail.shape[1] == decoded.shape[1] - 88200
    # The final AAC frame (encoder padding) decodes slightly differently after a seek.
    torch.testing.assert_close(tail[:, :-1024], decoded[:, 88200:-1024], atol=1e-3, rtol=0)
    mel = A.load_audio(path.read_bytes())
    assert mel.shape == (3, 1, 128, 204) and bool(torch.isfinite(mel).all())


# --- long files: windowed reading --------------------------------------------------------------

class CountingReads:
    """Wraps AudioReader.read to count the samples a loader asks for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.samples = 0
        self.whole = 0
        for cls in (IO._SoundfileReader, IO._AvReader):
            read, read_all = cls.read, cls.read_all
            monkeypatch.setattr(cls, "read", self._wrap(read))
            monkeypatch.setattr(cls, "read_all", self._wrap_all(read_all))

    def _wrap(self, read):
        def wrapped(reader, first, last):
            self.samples += last - first
            return read(reader, first, last)
        return wrapped

    def _wrap_all(self, read_all):
        def wrapped(reader):
            self.whole += 1
            return read_all(reader)
        return wrapped


def test_long_file_reads_only_clip_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rate = 44100
    wave = tone(61.0, rate)
    path = tmp_path / "long.wav"
    sf.write(path, wave.T, rate, subtype="PCM_16")
    counter = CountingReads(monkeypatch)
    windowed = A.load_audio(path)
    assert counter.whole == 0 and counter.samples < 3 * 2.1 * rate  # three 2 s windows plus filter margins
    monkeypatch.setattr(A, "LONG_AUDIO_SECONDS", math.inf)
    whole = A.load_audio(path)
    assert counter.whole == 1
    assert float((windowed - whole).abs().max()) < 1e-4


def test_long_pyav_file_windowed_equals_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_av(tmp_path / "long.m4a", tone(12.0, 44100, channels=2, noise=0.0), 44100, "aac")
    monkeypatch.setattr(A, "LONG_AUDIO_SECONDS", 8.0)
    counter = CountingReads(monkeypatch)
    windowed = A.load_audio(path)
    assert counter.whole == 0
    monkeypatch.setattr(A, "LONG_AUDIO_SECONDS", math.inf)
    whole = A.load_audio(path)
    # AAC decodes ~1e-5 differently after a seek (see test_pyav_fallback); lossless input is exact.
    assert float((windowed - whole).abs().max()) < 1e-3


# --- segments ----------------------------------------------------------------------------------

def test_segments_equal_load_audio_of_each_window() -> None:
    wave = tone(13.2, 44100, channels=2)
    wave[:, 5 * 44100 : 10 * 44100] = 0  # a pause: kept, not an error
    times, features = A.load_audio_segments((wave, 44100), segment_seconds=5.0)
    assert times == [(0.0, 5.0), (5.0, 10.0), (10.0, 13.2)]
    assert features.shape == (3, 3, 1, 128, 204)
    at16k = R.resample(torch.from_numpy(wave), 44100, 16000)
    for k in (0, 2):
        start, stop = (round(t * 16000) for t in times[k])
        torch.testing.assert_close(features[k], A.load_audio((at16k[:, start:stop], 16000)))
    short_tail, _ = A.load_audio_segments((wave[:, : int(10.3 * 44100)], 44100), segment_seconds=5.0)
    assert short_tail == [(0.0, 5.0), (5.0, 10.0)]  # a 0.3 s remainder is dropped
    only, _ = A.load_audio_segments((wave[:, : int(0.2 * 44100)], 44100), segment_seconds=5.0)
    assert only == [(0.0, 0.2)]  # but a lone short window is kept


def test_segments_of_long_file_read_by_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wave = tone(13.0, 44100)
    path = tmp_path / "seg.flac"
    sf.write(path, wave.T, 44100, subtype="PCM_24")
    in_memory = A.load_audio_segments(path, segment_seconds=4.0)
    monkeypatch.setattr(A, "LONG_AUDIO_SECONDS", 5.0)
    counter = CountingReads(monkeypatch)
    windowed = A.load_audio_segments(path, segment_seconds=4.0)
    assert counter.whole == 0
    assert windowed[0] == in_memory[0] == [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 13.0)]
    assert float((windowed[1] - in_memory[1]).abs().max()) < 1e-4


# --- guards ------------------------------------------------------------------------------------

def wav_bytes(wave: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave.T if wave.ndim == 2 else wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("make,problem", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"RIFF not really a wave file" * 20), "not a readable audio file"),
    (lambda p: p.write_bytes(wav_bytes(tone(1.0, 16000))[:3000]), "truncated"),
    (lambda p: p.write_bytes(wav_bytes(np.zeros(0, np.float32))), "no audio samples"),
    (lambda p: p.write_bytes(wav_bytes(tone(0.02, 16000))), "too short"),
    (lambda p: p.write_bytes(wav_bytes(np.full(800, np.nan, np.float32), subtype="FLOAT")), "NaN"),
    (lambda p: p.write_bytes((FIXTURES / "media" / "image_2.png").read_bytes()), "no audio stream"),
])
def test_bad_files_name_the_input(tmp_path: Path, make, problem: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(InputError, match=problem) as caught:
        A.load_audio(path)
    assert str(path) in str(caught.value)


def test_missing_and_empty_inputs() -> None:
    with pytest.raises(InputError, match="no such file"):
        A.load_audio("/nonexistent/x.wav")
    with pytest.raises(InputError, match="empty"):
        A.load_audio(b"")
    with pytest.raises(InputError, match="empty"):
        A.load_audio(io.BytesIO(b""))
    with pytest.raises(InputError, match="empty batch"):
        A.audio([])


@pytest.mark.parametrize("item,problem", [
    ((np.full(16000, np.inf, np.float32), 16000), "NaN or infinite"),
    ((np.zeros((16000, 2), np.float32), 16000), r"\(T, channels\)"),
    ((np.zeros((1, 2, 16000), np.float32), 16000), "shape"),
    ((np.zeros(0, np.float32), 16000), "no audio samples"),
    ((tone(1.0, 16000), 0), "bad sample rate"),
    ((tone(1.0, 16000), 16000.5), "bad sample rate"),
    ((tone(1.0, 16000), True), "bad sample rate"),
    ((tone(1.0, 16000), "16k"), "bad sample rate"),
    ((tone(1.0, 16000),), "pair"),
    (([0.1, 0.2], 16000), "numpy array or torch tensor"),
])
def test_bad_arrays(item: tuple, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        A.load_audio(item, "clip")


def streamed_wav(wave: np.ndarray, rate: int = 16000) -> bytes:
    """A WAV as `ffmpeg ... -f wav -` writes it to a pipe: RIFF and data sizes 0xFFFFFFFF (length unknown)."""
    data = bytearray(wav_bytes(wave, rate))
    data[4:8] = b"\xff\xff\xff\xff"
    at = data.index(b"data")
    data[at + 4 : at + 8] = b"\xff\xff\xff\xff"
    return bytes(data)


def test_streamed_wav_reads_like_the_normal_file(tmp_path: Path) -> None:
    wave = tone(1.5, 16000)
    normal, streamed = tmp_path / "normal.wav", tmp_path / "streamed.wav"
    normal.write_bytes(wav_bytes(wave))
    streamed.write_bytes(streamed_wav(wave))
    expected, _ = IO.decode_audio(normal)
    got, rate = IO.decode_audio(streamed)
    assert rate == 16000 and got.shape == expected.shape == (1, 24000)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    torch.testing.assert_close(A.load_audio(streamed), A.load_audio(normal), atol=0, rtol=0)
    torch.testing.assert_close(A.load_audio(streamed.read_bytes()), A.load_audio(normal), atol=0, rtol=0)


def test_wav_declaring_more_data_than_it_holds_is_still_truncated(tmp_path: Path) -> None:
    data = bytearray(wav_bytes(tone(1.0, 16000)))
    at = data.index(b"data")
    data[at + 4 : at + 8] = (40000).to_bytes(4, "little")  # 32000 bytes present
    path = tmp_path / "short.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="truncated"):
        A.load_audio(path)


def test_silent_audio_is_embedded_like_the_original(tmp_path: Path) -> None:
    """Silence is not an error: the original floors zero energy at float32 eps before the log."""
    path = tmp_path / "silence.wav"
    path.write_bytes(wav_bytes(np.zeros(16000, np.float32)))
    floor = (math.log(1.1920929e-07) - A.MEL_MEAN) / A.MEL_STD
    features = A.load_audio(path)
    assert features.shape == (3, 1, 128, 204)
    frames = 1 + (16000 - 400) // 160  # 98 real frames, then zero padding (normalised)
    torch.testing.assert_close(features[..., :frames], torch.full_like(features[..., :frames], floor))
    torch.testing.assert_close(features[..., frames:], torch.full_like(features[..., frames:], -A.MEL_MEAN / A.MEL_STD))
    spans, rows = A.load_audio_segments(path, segment_seconds=0.5)
    assert len(spans) == 2 and rows.shape[0] == 2

"""Videos to (clips·crops, 3, frames, 224, 224) tensors as the original samples them (SPEC.md, Video).

Only the frames the sampler needs are decoded: we seek close to each one and decode
forward, identifying frames by their presentation timestamp. PyAV is imported when a video is
opened, not with the module (a text-only process never loads FFmpeg).
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .batching import load_batch
from .image import normalize
from .sources import check_path, is_path, read_bytes, source_name

if TYPE_CHECKING:
    import av

# Demuxers that hold a single still image: these are images, not videos.
_IMAGE_FORMATS = {"image2", "image2pipe", "webp_pipe"}
# Decoding forward is cheaper than seeking when the next wanted frame is this close (seconds).
_FORWARD_SECONDS = 2.0
# How far before a wanted frame to retry a seek that landed past it (seconds).
_SEEK_MARGINS = (0.0, 1.0, 5.0)


def _av_errors() -> tuple[type[BaseException], ...]:
    """What PyAV and file reading raise for an unreadable or corrupt video."""
    import av

    return (av.FFmpegError, OSError, ValueError, UnicodeDecodeError, EOFError)


class _SeekFailed(Exception):
    """Seeking landed after a wanted frame even with margins; decode sequentially instead."""


class _Video:
    """One open video stream: container, frame count, frame rate, decode counter."""

    def __init__(self, item: Any, name: str) -> None:
        self.name = name
        if is_path(item):
            self._source: str | bytes = check_path(item)
        else:
            self._source = read_bytes(item, name)  # file objects are read once so we can reopen
        self.decoded = 0
        self._open()
        try:
            stream = self.stream
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or rate <= 0:
                raise InputError(name, "video has no frame rate")
            self.fps = Fraction(rate)
            self.time_base = Fraction(stream.time_base) if stream.time_base else None
            self.num_frames = stream.frames if stream.frames and stream.frames > 0 else self._count_packets()
            if self.num_frames <= 0:
                raise InputError(name, "video stream has no frames")
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """(Re)open the container at its start."""
        # Always a Python file object, never a name FFmpeg would parse as a URL, and no
        # protocols for nested opens: playlists (HLS, concat) and external references in
        # an uploaded file must not make FFmpeg read other local files or the network.
        import av

        self._handle = open(self._source, "rb") if isinstance(self._source, str) else io.BytesIO(self._source)
        try:
            self.container = av.open(self._handle, "r", metadata_errors="ignore",
                                     container_options={"protocol_whitelist": "none"})
        except _av_errors() as err:
            self._handle.close()
            raise InputError(self.name, f"not a readable video ({_reason(err)})") from None
        if self.container.format.name in _IMAGE_FORMATS or self.container.format.name.endswith("_pipe"):
            self.close()
            raise InputError(self.name, "is a still image, not a video")
        # Cover art in audio files is a one-picture "video" stream; it is not a video.
        streams = [s for s in self.container.streams.video
                   if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            self.close()
            raise InputError(self.name, "has no video stream")
        self.stream = streams[0]

    def _count_packets(self) -> int:
        """Frame count by demuxing (no decoding), for containers that do not store it."""
        try:
            count = sum(1 for packet in self.container.demux(self.stream) if packet.size > 0)
        except _av_errors() as err:
            raise InputError(self.name, f"corrupt video ({_reason(err)})") from None
        self.close()
        self._open()
        return count

    def reopen(self) -> None:
        """Start again from the beginning with a fresh demuxer and decoder."""
        self.close()
        self._open()

    def close(self) -> None:
        self.container.close()
        self._handle.close()

    def __enter__(self) -> _Video:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(err: BaseException) -> str:
    """A short reason from a PyAV/OS error."""
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def clip_frame_indices(num_frames: int, fps: float, start: float, end: float, *, clips: int = 5,
                       clip_seconds: float = 2.0, frames_per_clip: int = 2) -> list[list[int]]:
    """Frame indices of each clip sampled from the window [start, end) seconds."""
    # Plain float arithmetic on purpose: the original computes in floats, and e.g.
    # ceil(25 * 2.2) = 56 there (not 55) - the goldens confirm it.
    fps = float(fps)
    spare = max(end - start - clip_seconds, 0.0)
    last_stop = min(num_frames, math.ceil(fps * end))
    out = []
    for k in range(clips):
        clip_start = start + k * spare / clips
        first = math.ceil(fps * clip_start)
        stop = min(math.ceil(fps * (clip_start + clip_seconds)), last_stop)
        frames = list(range(first, stop)) or [min(first, num_frames - 1)]
        picks = np.linspace(0, len(frames) - 1, frames_per_clip).astype(np.int64)  # truncation, as the original
        out.append([frames[i] for i in picks])
    return out


def _read_frames(video: _Video, wanted: Sequence[int], *, allow_seek: bool = True) -> dict[int, np.ndarray]:
    """RGB frames (H, W, 3) uint8 for the wanted indices, decoding as few frames as possible."""
    try:
        return _decode(video, sorted(set(wanted)), allow_seek)
    except _SeekFailed:
        video.reopen()
        return _decode(video, sorted(set(wanted)), False)
    except _av_errors() as err:
        raise InputError(video.name, f"corrupt video ({_reason(err)})") from None


def _decode(video: _Video, wanted: list[int], allow_seek: bool) -> dict[int, np.ndarray]:
    """Walk the stream forward, seeking ahead when the next wanted frame is far away."""
    frames = video.container.decode(video.stream)
    first = next(frames, None)
    if first is None:
        raise InputError(video.name, "no decodable video frames")
    video.decoded += 1
    tb, fps = video.time_base, video.fps
    by_pts = first.pts is not None and tb is not None
    allow_seek = allow_seek and by_pts
    origin = first.pts if by_pts and first.pts is not None else 0
    count = 0  # decode-order position of the newest frame, the index when there are no timestamps

    def index_of(frame: av.VideoFrame) -> int:
        if by_pts and frame.pts is not None and tb is not None:
            return round((frame.pts - origin) * tb * fps)
        return count

    current, current_index, ahead = first, 0, None
    out: dict[int, np.ndarray] = {}
    for target in wanted:
        if allow_seek and target - current_index > max(_FORWARD_SECONDS * fps, 1):
            frames, current, current_index = _seek(video, target, origin)
            ahead = None
        # Advance to the last frame shown at or before `target` (the stream may be shorter
        # than its header says, or have gaps: then the nearest earlier frame stands in).
        while current_index < target:
            if ahead is None:
                ahead = next(frames, None)
                if ahead is None:
                    break
                video.decoded += 1
                count += 1
            ahead_index = index_of(ahead)
            if ahead_index > target:
                break
            current, current_index, ahead = ahead, ahead_index, None
        out[target] = current.to_ndarray(format="rgb24")
    return out


def _seek(video: _Video, target: int, origin: int) -> tuple[Any, av.VideoFrame, int]:
    """Seek to a keyframe at or before frame `target`; returns (decoder, first frame, its index)."""
    tb, fps = video.time_base, video.fps
    assert tb is not None  # only called when frames have timestamps
    for margin in _SEEK_MARGINS:
        seconds = max(Fraction(target) / fps - Fraction(margin), Fraction(0))
        video.container.seek(origin + math.floor(seconds / tb), backward=True, any_frame=False, stream=video.stream)
        frames = video.container.decode(video.stream)
        frame = next(frames, None)
        if frame is None or frame.pts is None:
            break
        video.decoded += 1
        index = round((frame.pts - origin) * tb * fps)
        if index <= target:
            return frames, frame, index
    raise _SeekFailed


def _views(frames: np.ndarray, size: int, crops: int) -> torch.Tensor:
    """One clip (T, H, W, 3) uint8 -> (crops, 3, T, size, size): resize, normalise, crop."""
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)  # (T, 3, H, W)
    height, width = clip.shape[-2:]
    if height <= width:
        new_h, new_w = size, int(math.floor(width / height * size))
    else:
        new_h, new_w = int(math.floor(height / width * size)), size
    clip = F.interpolate(clip, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
    clip = normalize(clip).permute(1, 0, 2, 3)  # (3, T, new_h, new_w)
    length = max(new_h, new_w)
    offsets = {1: [math.ceil((length - size) / 2)], 3: [0, math.ceil((length - size) / 2), length - size]}[crops]
    if new_w >= new_h:
        views = [clip[..., :, o : o + size] for o in offsets]
    else:
        views = [clip[..., o : o + size, :] for o in offsets]
    return torch.stack(views)  # (crops, 3, T, size, size)


def video_info(item: Any, name: str | None = None) -> tuple[int, float, float]:
    """(frame count, average fps, duration in seconds) of a video."""
    with _Video(item, name or source_name(item)) as video:
        return video.num_frames, float(video.fps), video.num_frames / float(video.fps)


def load_video_window(item: Any, start: float, end: float, name: str | None = None, *, clips: int = 5,
                      clip_seconds: float = 2.0, frames_per_clip: int = 2, size: int = 224,
                      crops: int = 3) -> torch.Tensor:
    """The sampler applied to the window [start, end) s: (clips·crops, 3, frames, size, size)."""
    name = name or source_name(item)
    if crops not in (1, 3):
        raise ValueError(f"crops must be 1 or 3, got {crops}")
    with _Video(item, name) as video:
        return _load(video, start, end, clips, clip_seconds, frames_per_clip, size, crops)


def _load(video: _Video, start: float | None, end: float | None, clips: int, clip_seconds: float,
          frames_per_clip: int, size: int, crops: int) -> torch.Tensor:
    """Sample, decode and turn one open video into views."""
    fps = float(video.fps)
    start = 0.0 if start is None else float(start)
    end = video.num_frames / fps if end is None else float(end)  # duration = frame count / average fps
    if not (0 <= start < end) or math.ceil(start * fps) >= video.num_frames:
        raise InputError(video.name, f"window [{start}, {end}) s is outside the video "
                                     f"({video.num_frames / fps:.3f} s)")
    indices = clip_frame_indices(video.num_frames, fps, start, end, clips=clips,
                                 clip_seconds=clip_seconds, frames_per_clip=frames_per_clip)
    decoded = _read_frames(video, [i for clip in indices for i in clip])
    views = [_views(np.stack([decoded[i] for i in clip]), size, crops) for clip in indices]
    return torch.cat(views)  # (clips * crops, 3, T, size, size), clip-major


def load_video(item: Any, name: str | None = None, *, clips: int = 5, clip_seconds: float = 2.0,
               frames_per_clip: int = 2, size: int = 224, crops: int = 3) -> torch.Tensor:
    """One whole video as (clips·crops, 3, frames, size, size); (15, 3, 2, 224, 224) by default."""
    # Rotation metadata is ignored, as in the original, to keep parity.
    name = name or source_name(item)
    if crops not in (1, 3):
        raise ValueError(f"crops must be 1 or 3, got {crops}")
    with _Video(item, name) as video:
        return _load(video, None, None, clips, clip_seconds, frames_per_clip, size, crops)


def video(items: Sequence[Any], **kwargs: Any) -> torch.Tensor:
    """A batch of videos as (N, clips·crops, 3, frames, size, size)."""
    return load_batch("video", items, load_video, **kwargs)

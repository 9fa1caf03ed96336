"""Video preprocessing: parity with the original, sparse decoding, windows, guarded failures."""
from __future__ import annotations

import importlib
import io
import math
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bindspace.errors import InputError
from bindspace.preprocess.video import clip_frame_indices, load_video, load_video_window, video, video_info

# The package re-exports a function named `video`, which hides the submodule from `import ... as`.
vmod = importlib.import_module("bindspace.preprocess.video")

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"
GOLDENS = Path(__file__).resolve().parents[1] / "fixtures" / "goldens_tiny.safetensors"
CLIP = MEDIA / "video_1.mp4"


def write_video(path: Path, frames: int, fps: int = 10, size: tuple[int, int] = (64, 48),
                codec: str = "libx264", gop: int = 10) -> Path:
    """A synthetic video whose frame i has a moving bar and colour depending on i."""
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(frames):
            array = np.zeros((height, width, 3), np.uint8)
            array[..., 0] = (i * 3) % 256
            array[..., 1] = (i * 11) % 256
            array[:, i % width] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame, decoded sequentially: the reference for sparse decoding."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "long.mp4", frames=600)  # 60 s at 10 fps


@pytest.fixture(scope="module")
def fixture_views() -> torch.Tensor:
    return load_video(CLIP)


def test_matches_original_statistics_and_patches(fixture_views: torch.Tensor) -> None:
    golden = load_file(str(GOLDENS))
    views = fixture_views
    assert list(views.shape) == golden["video.shape"].tolist()[1:] == [15, 3, 2, 224, 224]
    assert (views.mean(dim=(-1, -2)) - golden["video.mean"]).abs().max() <= 1e-4
    assert (views.std(dim=(-1, -2)) - golden["video.std"]).abs().max() <= 1e-4
    assert (views[..., 104:120, 104:120] - golden["video.center_patch"]).abs().max() <= 1e-4
    assert (views[..., :8, :8] - golden["video.corner_patch"]).abs().max() <= 1e-4


def test_fixture_sampler_uses_float_arithmetic() -> None:
    # 75 frames at 25 fps: clip 1 ends at ceil(25 * 2.2) = 56 in floats, so its last frame is 55.
    assert clip_frame_indices(75, 25.0, 0.0, 3.0) == [[0, 49], [5, 55], [10, 59], [15, 64], [20, 69]]
    assert video_info(CLIP) == (75, 25.0, 3.0)


def test_short_video_uses_first_and_last_frame() -> None:
    assert clip_frame_indices(12, 10.0, 0.0, 1.2) == [[0, 11]] * 5
    assert clip_frame_indices(1, 10.0, 0.0, 0.1, clips=2) == [[0, 0]] * 2
    assert clip_frame_indices(100, 10.0, 0.0, 10.0, frames_per_clip=3)[0] == [0, 9, 19]


def test_inputs_as_bytes_and_file_objects(fixture_views: torch.Tensor) -> None:
    data = CLIP.read_bytes()
    assert torch.equal(load_video(data), fixture_views)
    assert torch.equal(load_video(io.BytesIO(data)), fixture_views)
    assert torch.equal(video([str(CLIP)])[0], fixture_views)


def test_only_needed_frames_are_decoded(long_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts: list[int] = []
    real = vmod._read_frames

    def spy(video_: Any, wanted: list[int], **kwargs: Any) -> dict[int, np.ndarray]:
        out = real(video_, wanted, **kwargs)
        counts.append(video_.decoded)
        return out

    monkeypatch.setattr(vmod, "_read_frames", spy)
    views = load_video(long_video)
    assert views.shape == (15, 3, 2, 224, 224)
    assert video_info(long_video)[0] == 600
    assert counts and counts[0] < 200, f"decoded {counts[0]} of 600 frames"


@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".mkv", "libx264"), (".webm", "libvpx")])
def test_seeking_gives_the_same_frames_as_sequential_decoding(tmp_path: Path, suffix: str, codec: str) -> None:
    path = write_video(tmp_path / f"v{suffix}", frames=300, codec=codec, gop=12)
    reference = decode_all(path)
    wanted = [0, 5, 77, 78, 150, 151, 152, 260, 299]
    with vmod._Video(path, "v") as opened:
        assert opened.num_frames == 300  # .mkv/.webm store no count: counted by demuxing
        frames = vmod._read_frames(opened, wanted)
        assert opened.decoded < 200
    for i in wanted:
        np.testing.assert_array_equal(frames[i], reference[i])


def test_failed_seek_falls_back_to_sequential_decoding(long_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def overshoot(*args: object) -> None:
        raise vmod._SeekFailed

    monkeypatch.setattr(vmod, "_seek", overshoot)
    reference = decode_all(long_video)
    with vmod._Video(long_video, "long") as opened:
        frames = vmod._read_frames(opened, [3, 333, 599])
        assert opened.decoded >= 600  # the whole stream was walked
    for i in (3, 333, 599):
        np.testing.assert_array_equal(frames[i], reference[i])


def test_window_samples_inside_the_window(long_video: Path) -> None:
    reference = decode_all(long_video)
    start, end = 20.0, 32.5
    views = load_video_window(long_video, start, end)
    assert views.shape == (15, 3, 2, 224, 224)
    indices = clip_frame_indices(600, 10.0, start, end)
    assert indices[0][0] == 200 and indices[-1][-1] < 325
    expected = torch.cat([vmod._views(np.stack([reference[i] for i in clip]), 224, 3) for clip in indices])
    assert torch.equal(views, expected)


def test_full_window_equals_whole_video() -> None:
    assert torch.equal(load_video_window(CLIP, 0.0, 3.0), load_video(CLIP))


def test_window_outside_video_is_an_input_error(long_video: Path) -> None:
    with pytest.raises(InputError, match="long.mp4"):
        load_video_window(long_video, 70.0, 80.0)
    with pytest.raises(InputError):
        load_video_window(long_video, 5.0, 5.0)


def test_portrait_crops_run_along_height(tmp_path: Path) -> None:
    path = write_video(tmp_path / "tall.mp4", frames=30, size=(48, 96))
    views = load_video(path, crops=3, clips=2)
    assert views.shape == (6, 3, 2, 224, 224)
    # 48x96 -> 224x448: start / centre / end crops along height differ, widths are whole.
    assert not torch.equal(views[0], views[2])
    single = load_video(path, crops=1, clips=2, size=112)
    assert single.shape == (2, 3, 2, 112, 112)


def test_resize_is_bilinear_without_antialias(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", frames=25)
    frames = np.stack(decode_all(path)[:1] * 2)
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    resized = torch.nn.functional.interpolate(clip, size=(224, math.floor(64 / 48 * 224)), mode="bilinear")
    views = vmod._views(frames, 224, 3)
    offset = math.ceil((298 - 224) / 2)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1, 1)
    expected = (resized.permute(1, 0, 2, 3) - mean) / std
    assert torch.allclose(views[1], expected[..., offset : offset + 224], atol=1e-6)


# ---- failures: each is an InputError that names the input ---------------------------


def test_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("hello, I am not a video\n" * 50)
    with pytest.raises(InputError, match="notes.mp4"):
        load_video(text)
    with pytest.raises(InputError, match="clip.bin"):
        load_video(bytes(range(256)) * 40, name="clip.bin")


def test_still_image_and_audio_only_files() -> None:
    with pytest.raises(InputError, match="still image"):
        load_video(MEDIA / "image_2.png")
    with pytest.raises(InputError, match="no video stream"):
        load_video(MEDIA / "audio_1.wav")


def test_empty_missing_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for bad in (empty, tmp_path / "missing.mp4", tmp_path):
        with pytest.raises(InputError, match=str(bad).replace("\\", "\\\\")):
            load_video(bad)
    with pytest.raises(InputError):
        load_video(b"")
    with pytest.raises(InputError):
        video([])


def test_truncated_video(tmp_path: Path) -> None:
    data = CLIP.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="cut.mp4"):
        load_video(cut)


def test_corrupt_stream_data(tmp_path: Path) -> None:
    data = bytearray(CLIP.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(2000)
    with pytest.raises(InputError, match="broken.mp4"):
        load_video(bytes(data), name="broken.mp4")


def test_playlists_cannot_pull_in_other_files(tmp_path: Path) -> None:
    target = tmp_path / "private.mp4"
    target.write_bytes(CLIP.read_bytes())
    playlist = tmp_path / "upload.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n{target}\n#EXT-X-ENDLIST\n")
    with pytest.raises(InputError, match="upload.m3u8"):
        load_video(playlist)

"""Video embeddings fused with the video's own audio track."""
import numpy as np
import pytest

from bindspace.embedding import Embedder
from bindspace.errors import BindspaceError
from bindspace.tasks import embed_video

from .synthetic import write_video_with_audio


def unit(v):
    return v / np.linalg.norm(v)


def test_audio_and_vision_are_fused(tiny_model, tmp_path):
    with_sound = str(write_video_with_audio(tmp_path / "with_sound.mp4"))
    silent = str(write_video_with_audio(tmp_path / "silent.mp4", sound=False))
    missing = str(tmp_path / "nope.mp4")
    embedder = Embedder(tiny_model, batch_size=8)
    got = embed_video(embedder, [with_sound, missing, silent], on_error="skip", audio_weight=0.5)
    assert got.indices == [0, 2] and got.with_audio == [True, False]
    assert [e.index for e in got.errors] == [1]
    assert [e.index for e in got.audio_errors] == [2]  # mapped back to the input position

    vision = embedder.embed("video", [with_sound, silent]).vectors
    sound = embedder.embed("audio", [with_sound]).vectors[0]
    np.testing.assert_allclose(got.vectors[0], unit(unit(vision[0]) + 0.5 * unit(sound)), atol=1e-5)
    np.testing.assert_allclose(got.vectors[1], vision[1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)



def test_audio_off_and_file_objects(tiny_model, tmp_path):
    with_sound = str(write_video_with_audio(tmp_path / "with_sound.mp4"))
    embedder = Embedder(tiny_model, batch_size=8)
    vision = embedder.embed("video", [with_sound]).vectors
    sound = embedder.embed("audio", [with_sound]).vectors[0]
    only_frames = embed_video(embedder, [with_sound], audio=False)
    assert only_frames.with_audio == [False]
    np.testing.assert_allclose(only_frames.vectors[0], vision[0], atol=1e-6)

    with open(with_sound, "rb") as handle:  # a file object is read once and used by both passes
        from_file = embed_video(embedder, [handle], audio_weight=0.5)
    assert from_file.with_audio == [True]
    np.testing.assert_allclose(from_file.vectors[0], unit(unit(vision[0]) + 0.5 * unit(sound)), atol=1e-5)


def test_bad_weights(tiny_model):
    with pytest.raises(BindspaceError):
        embed_video(tiny_model, [], vision_weight=0.0)

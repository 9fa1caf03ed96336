"""The tiny preset with deterministic weights reproduces the original code's outputs."""
from typing import cast

import pytest
import torch

from bindspace.layers import Transformer
from bindspace.layers.block import Block
from bindspace.model.imagebind import ImageBindModel

INPUTS = {
    "text": "text.tokens",
    "vision": "vision.pixels",
    "audio": "audio.mel",
    "depth": "depth.input",
    "thermal": "thermal.input",
    "imu": "imu.input",
}


@pytest.mark.parametrize("modality", list(INPUTS))
def test_forward_matches_original(tiny_model, goldens, modality):
    with torch.no_grad():
        out = tiny_model({modality: goldens[INPUTS[modality]]})[modality]
    torch.testing.assert_close(out, goldens[f"{modality}.embedding"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("modality", list(INPUTS))
def test_encode_is_unit_norm_and_parallel_to_forward(tiny_model, goldens, modality):
    x = goldens[INPUTS[modality]]
    with torch.no_grad():
        unit = tiny_model.encode(modality, x)
    assert unit.dtype == torch.float32
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(len(x)), atol=1e-5, rtol=0)
    expected = torch.nn.functional.normalize(goldens[f"{modality}.embedding"], dim=-1)
    torch.testing.assert_close(unit, expected, atol=1e-4, rtol=0)


def test_logit_scales(tiny_model):
    expected = {"vision": 1.0, "text": 1 / 0.07, "audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}
    for modality, scale in expected.items():
        assert tiny_model.logit_scale(modality).item() == pytest.approx(scale, rel=1e-5)


def test_text_cut_at_longest_sequence_is_exact(tiny_model, goldens):
    ids = goldens["text.tokens"][:3]  # short texts: the batch is cut far before 77
    with torch.no_grad():
        cut = tiny_model.encode("text", ids)
        # Reference without the cut: run the tower by hand over all 77 positions.
        tokens = tiny_model.modality_preprocessors["text"](ids)
        tokens = tiny_model.modality_trunks["text"](tokens, causal=True)
        full = tiny_model.modality_heads["text"](tokens, ids.argmax(-1))
    torch.testing.assert_close(cut, torch.nn.functional.normalize(full, dim=-1), atol=1e-6, rtol=0)


def test_image_shortcut_equals_two_frame_clip(tiny_model, goldens):
    images = goldens["vision.pixels"]
    clips = images.unsqueeze(2).repeat(1, 1, 2, 1, 1)  # (B, 3, 2, H, W): the original's image-to-video step
    with torch.no_grad():
        from_images, from_clips = tiny_model.encode("vision", images), tiny_model.encode("vision", clips)
        torch.testing.assert_close(from_images, from_clips, atol=1e-5, rtol=0)


def test_clip_axis_is_averaged(tiny_model, goldens):
    mel = goldens["audio.mel"]  # (3 files, 3 clips, 1, 128, 204)
    with torch.no_grad():
        per_clip = tiny_model.encode("audio", mel.flatten(0, 1), clip_axis=False).view(3, 3, -1)
        scaled_mean = torch.nn.functional.normalize(per_clip.mean(1), dim=-1)
        torch.testing.assert_close(tiny_model.encode("audio", mel), scaled_mean, atol=1e-5, rtol=0)


def test_wrong_shape_is_a_clear_error(tiny_model):
    from bindspace.errors import BindspaceError

    with pytest.raises(BindspaceError, match=r"depth input has shape \(2, 3, 224, 224\)"):
        tiny_model.encode("depth", torch.zeros(2, 3, 224, 224))
    with pytest.raises(BindspaceError, match="without the"):
        import bindspace

        bindspace.create_model("imagebind_tiny_test", modalities=["text"]).encode("audio", torch.zeros(1, 1, 128, 204))


def test_video_end_to_end_matches_original(tiny_model, goldens, media_dir):
    from bindspace.preprocess import load_video

    clips = load_video(media_dir / "video_1.mp4")  # (15, 3, 2, 224, 224)
    with torch.no_grad():
        out = tiny_model({"vision": clips[None]})["vision"]  # 6-D: the 15 views are averaged
    torch.testing.assert_close(out, goldens["video.embedding"], atol=1e-4, rtol=0)


def test_bf16_load_casts_while_reading(tiny_model_dir, tiny_state):
    import bindspace

    model = bindspace.create_model(checkpoint=tiny_model_dir, modalities=["audio"], dtype=torch.bfloat16)
    assert isinstance(model, ImageBindModel)  # torch towers (not ONNX): their layers are reachable
    trunk = cast(Transformer, model.modality_trunks["audio"])
    weight = cast(Block, trunk.blocks[0]).mlp.fc1.weight
    assert weight.dtype == torch.bfloat16
    expected = tiny_state["modality_trunks.audio.blocks.0.mlp.fc1.weight"]
    torch.testing.assert_close(weight.float(), expected, atol=1e-2, rtol=1e-2)

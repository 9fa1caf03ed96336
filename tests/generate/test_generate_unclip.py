"""The unCLIP path end to end on a tiny pipeline: the query conditions the images, the transform is pinned."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bindspace.errors import BindspaceError
from bindspace.generate import GenerateOptions, generate, open_pipeline, to_image_embeds
from bindspace.generate.scaling import SETTINGS_FILE, calibrate

STEPS = 2


def pixels(generation) -> np.ndarray:
    return np.stack([np.asarray(image) for image in generation.images])


def capture_embeds(pipeline) -> list[torch.Tensor]:
    """Record the image_embeds the diffusers pipeline receives (before its own noise augmentation)."""
    seen: list[torch.Tensor] = []
    inner = pipeline.pipe
    original = inner.noise_image_embeddings

    def spy(image_embeds, *args, **kwargs):
        seen.append(image_embeds.detach().clone())
        return original(image_embeds, *args, **kwargs)

    inner.noise_image_embeddings = spy
    return seen


def test_same_inputs_give_identical_images(unclip_dir, tiny_model):
    pipeline = open_pipeline(unclip_dir)
    first = generate(pipeline, [("text", "a dog")], embedder=tiny_model, steps=STEPS, seed=3)
    second = generate(pipeline, [("text", "a dog")], embedder=tiny_model, steps=STEPS, seed=3)
    assert first.images[0].size == (16, 16)  # 8x8 latents through the 2-level VAE
    np.testing.assert_array_equal(pixels(first), pixels(second))


def test_the_embedding_conditions_the_image(unclip_dir, tiny_model, media_dir):
    pipeline = open_pipeline(unclip_dir)
    dog = generate(pipeline, [("text", "a dog")], embedder=tiny_model, steps=STEPS, seed=3)
    sound = generate(pipeline, [("audio", str(media_dir / "audio_1.wav"))], embedder=tiny_model, steps=STEPS, seed=3)
    assert not np.allclose(dog.query, sound.query)
    assert np.abs(pixels(dog).astype(int) - pixels(sound).astype(int)).max() > 0


def test_seed_and_batch(unclip_dir, tiny_model):
    pipeline = open_pipeline(unclip_dir)
    batch = generate(pipeline, [("text", "a cat")], embedder=tiny_model, steps=STEPS, seed=1, num_images=2)
    other = generate(pipeline, [("text", "a cat")], embedder=tiny_model, steps=STEPS, seed=2)
    assert len(batch.images) == 2
    assert not np.array_equal(np.asarray(batch.images[0]), np.asarray(other.images[0]))


def test_transform_scales_the_unit_query_to_the_encoders_measured_norm(unclip_dir, tiny_model):
    from tiny_unclip import constant_encoder_norm

    expected_norm = constant_encoder_norm(unclip_dir)  # every image embedding of this encoder has this norm
    pipeline = open_pipeline(unclip_dir)
    seen = capture_embeds(pipeline)
    result = generate(pipeline, [("text", "a dog"), ("text", "a cat")], [1.0, 0.5], embedder=tiny_model,
                      steps=STEPS)
    assert len(seen) == 1
    sent = seen[0].double()[0]
    assert float(sent.norm()) == pytest.approx(expected_norm, rel=1e-5)
    # Same direction as the unit query (the weighted combination of the two texts).
    unit = torch.from_numpy(result.query).double()
    assert float(unit.norm()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(sent, unit * expected_norm, rtol=1e-5, atol=1e-6)
    assert result.pipeline["embedding"]["source"] == "measured"
    assert result.pipeline["embedding"]["value"] == pytest.approx(expected_norm, rel=1e-5)


def test_settings_file_and_given_norm_take_precedence(unclip_dir, tiny_model, tmp_path):
    import shutil

    copy = Path(shutil.copytree(unclip_dir, tmp_path / "pipe"))
    (copy / SETTINGS_FILE).write_text(json.dumps({"embed_norm": 2.5}))
    from_file = open_pipeline(copy)
    seen = capture_embeds(from_file)
    generate(from_file, [("text", "a dog")], embedder=tiny_model, steps=STEPS)
    assert float(seen[0].norm()) == pytest.approx(2.5, rel=1e-6)

    given = open_pipeline(copy, embed_norm=7.0)
    seen = capture_embeds(given)
    generate(given, [("text", "a dog")], embedder=tiny_model, steps=STEPS)
    assert float(seen[0].norm()) == pytest.approx(7.0, rel=1e-6)


def test_to_image_embeds_keeps_direction_and_sets_length():
    unit = torch.tensor([[3.0, 4.0, 0.0]]) / 5.0
    out = to_image_embeds(unit, 10.0)
    torch.testing.assert_close(out, torch.tensor([[6.0, 8.0, 0.0]]))


def test_calibrate_measures_the_encoder_and_writes_the_settings(unclip_dir, tmp_path):
    import shutil

    from tiny_unclip import constant_encoder_norm

    copy = Path(shutil.copytree(unclip_dir, tmp_path / "pipe"))
    result = calibrate(copy)
    assert result.value == pytest.approx(constant_encoder_norm(unclip_dir), rel=1e-5)
    saved = json.loads((copy / SETTINGS_FILE).read_text())
    assert saved["embed_norm"] == pytest.approx(result.value)
    assert saved["images"] == result.images > 0


def test_width_mismatch_is_refused(unclip_wide_dir, tiny_model):
    with pytest.raises(BindspaceError, match="conditioned on 32-d image embeddings .* gives 24-d"):
        generate(unclip_wide_dir, [("text", "a dog")], embedder=tiny_model, steps=STEPS)


def test_options_reach_the_pipeline(unclip_dir, tiny_model):
    pipeline = open_pipeline(unclip_dir)
    plain = generate(pipeline, [("text", "a dog")], embedder=tiny_model, options=GenerateOptions(steps=STEPS))
    noisy = generate(pipeline, [("text", "a dog")], embedder=tiny_model,
                     options=GenerateOptions(steps=STEPS, noise_level=500))
    prompted = generate(pipeline, [("text", "a dog")], embedder=tiny_model,
                        options=GenerateOptions(steps=STEPS, prompt="cat"))
    assert not np.array_equal(pixels(plain), pixels(noisy))
    assert not np.array_equal(pixels(plain), pixels(prompted))


def test_unknown_kind_and_empty_query_are_clear_errors(tiny_generator_dir, tiny_model):
    with pytest.raises(BindspaceError, match="unknown modality 'smell'"):
        generate(tiny_generator_dir, [("smell", "rose.txt")], embedder=tiny_model)
    with pytest.raises(BindspaceError, match="nothing to generate from"):
        generate(tiny_generator_dir, [], embedder=tiny_model)

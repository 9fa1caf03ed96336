"""Embedding arithmetic: weighted sums of unit vectors, renormalised."""
import numpy as np
import pytest
import torch

from bindspace.errors import BindspaceError
from bindspace.tasks import combine, combine_vectors

RNG = np.random.default_rng(3)
A, B, C = (RNG.normal(size=24).astype(np.float32) for _ in range(3))


def unit(v):
    return v / np.linalg.norm(v)


def test_weighted_sum_of_unit_vectors():
    got = combine_vectors(np.stack([A, 5 * B]), [2.0, 1.0])  # B's length must not matter
    np.testing.assert_allclose(got, unit(2 * unit(A) + unit(B)), rtol=1e-5, atol=1e-6)
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)


def test_scale_invariance_of_weights():
    w = np.array([0.3, 1.7, -0.4])
    vectors = np.stack([A, B, C])
    np.testing.assert_allclose(combine_vectors(vectors, w), combine_vectors(vectors, 9.5 * w), atol=1e-6)


def test_single_part_returns_its_own_unit_vector():
    np.testing.assert_allclose(combine_vectors(3 * A), unit(A), atol=1e-6)
    np.testing.assert_allclose(combine({"audio": A}), unit(A), atol=1e-6)
    np.testing.assert_allclose(combine({"audio": torch.from_numpy(A)}, {"audio": 0.2}), unit(A), atol=1e-6)


def test_negative_weight_subtracts():
    got = combine({"image": A, "text": B}, {"image": 1.0, "text": -1.0})
    np.testing.assert_allclose(got, unit(unit(A) - unit(B)), atol=1e-6)


def test_a_part_with_several_rows_counts_once():
    got = combine({"image": np.stack([A, B]), "audio": C})
    np.testing.assert_allclose(got, unit(unit(unit(A) + unit(B)) + unit(C)), atol=1e-6)


@pytest.mark.parametrize("weights, message", [
    ([0.0, 0.0], "all weights are zero"),
    ([1.0], "1 weights for 2"),
    ([1.0, np.nan], "NaN"),
])
def test_bad_weights(weights, message):
    with pytest.raises(BindspaceError, match=message):
        combine_vectors(np.stack([A, B]), weights)


def test_cancelling_and_zero_vectors():
    with pytest.raises(BindspaceError, match="cancel"):
        combine({"image": A, "audio": 2 * A}, [1.0, -1.0])
    with pytest.raises(BindspaceError, match="zero length"):
        combine_vectors(np.stack([A, np.zeros(24)]))


def test_part_and_weight_mistakes():
    with pytest.raises(BindspaceError, match="unknown modality"):
        combine({"smell": A})
    with pytest.raises(BindspaceError, match="missing"):
        combine({"image": A, "audio": B}, {"image": 1.0})
    with pytest.raises(BindspaceError, match="embedder"):
        combine({"text": "a dog"})
    with pytest.raises(BindspaceError, match="nothing to combine"):
        combine({})


def test_items_are_embedded_with_the_model(tiny_model, media_dir):
    from bindspace import preprocess

    with torch.inference_mode():
        text = tiny_model.encode("text", preprocess.text(["a dog barking"]))[0].numpy()
    np.testing.assert_allclose(combine({"text": "a dog barking"}, embedder=tiny_model), text, atol=1e-5)
    audio_vec = np.random.default_rng(0).normal(size=24).astype(np.float32)
    got = combine({"text": ["a dog barking"], "audio": audio_vec}, {"text": 1.0, "audio": 0.5}, embedder=tiny_model)
    np.testing.assert_allclose(got, unit(unit(text) + 0.5 * unit(audio_vec)), atol=1e-5)

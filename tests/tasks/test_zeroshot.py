"""Zero-shot classifier invariants with the tiny model."""
import numpy as np
import pytest
import torch

from bindspace import preprocess
from bindspace.errors import BindspaceError, InputError
from bindspace.tasks import ZeroShotClassifier, default_templates
from bindspace.tasks.templates import AUDIO_TEMPLATES, GENERIC_TEMPLATES, VISION_TEMPLATES

LABELS = ["dog", "rain", "siren", "church bells"]
TEMPLATES = ["the sound of {}.", "a recording of a {}."]


@pytest.fixture(scope="module")
def vectors():
    v = np.random.default_rng(5).normal(size=(6, 24)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def clf(tiny_model):
    return ZeroShotClassifier(tiny_model, LABELS, TEMPLATES)


def encode_text(model, texts):
    with torch.inference_mode():
        return model.encode("text", preprocess.text(texts)).numpy().astype(np.float64)


def test_prototypes_are_renormalised_template_means(clf, tiny_model):
    for i, label in enumerate(LABELS):
        e = encode_text(tiny_model, [t.replace("{}", label) for t in TEMPLATES])
        mean = e.mean(axis=0)
        np.testing.assert_allclose(clf.prototypes[i], mean / np.linalg.norm(mean), atol=1e-5)
    assert clf.prototypes.shape == (len(LABELS), 24)


def test_probabilities_are_softmax_of_scaled_cosine(clf, tiny_model, vectors):
    scale = float(tiny_model.logit_scale("text"))
    logits = scale * vectors @ clf.prototypes.T
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = clf.probabilities(vectors)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    # the input's length does not matter: vectors are compared by angle
    np.testing.assert_allclose(clf.probabilities(3 * vectors), probs, rtol=1e-5)


def test_permuting_labels_permutes_probabilities(tiny_model, clf, vectors):
    perm = [2, 0, 3, 1]
    other = ZeroShotClassifier(tiny_model, [LABELS[i] for i in perm], TEMPLATES)
    np.testing.assert_allclose(other.probabilities(vectors), clf.probabilities(vectors)[:, perm], rtol=1e-5)
    for a, b in zip(clf.predict_vectors(vectors, k=4), other.predict_vectors(vectors, k=4)):
        assert a.labels == b.labels


def test_top_k_sorted_and_consistent(clf, vectors):
    probs = clf.probabilities(vectors)
    preds = clf.predict_vectors(vectors, k=3, names=[f"v{i}" for i in range(6)])
    assert len(preds) == 6
    for row, pred in enumerate(preds):
        assert pred.name == f"v{row}" and pred.index == row
        assert len(pred.labels) == 3
        assert list(pred.probabilities) == sorted(pred.probabilities, reverse=True)
        assert pred.label == LABELS[int(np.argmax(probs[row]))]
        assert pred.probabilities == pytest.approx([probs[row, j] for j in pred.label_indices])
        assert [LABELS[j] for j in pred.label_indices] == list(pred.labels)
    # k beyond the number of labels gives all labels, whose probabilities sum to 1
    full = clf.predict_vectors(vectors[0], k=50)[0]
    assert len(full.labels) == len(LABELS) and sum(full.probabilities) == pytest.approx(1.0)


def test_templates_averaging_differs_from_single_template(tiny_model, clf):
    single = ZeroShotClassifier(tiny_model, LABELS, TEMPLATES[:1])
    assert not np.allclose(single.prototypes, clf.prototypes, atol=1e-4)
    repeated = ZeroShotClassifier(tiny_model, LABELS, TEMPLATES[:1] * 3)
    np.testing.assert_allclose(repeated.prototypes, single.prototypes, atol=1e-6)


def test_default_templates_by_modality(tiny_model):
    assert ZeroShotClassifier(tiny_model, LABELS, modality="audio").templates == AUDIO_TEMPLATES
    generic = ZeroShotClassifier(tiny_model, LABELS)
    assert generic.templates == GENERIC_TEMPLATES
    assert generic.templates_for("image") == VISION_TEMPLATES
    assert default_templates("video") == VISION_TEMPLATES
    for name in ("image", "audio", "depth", "thermal", "imu", "text"):
        assert all(t.count("{}") == 1 for t in default_templates(name))
    assert ZeroShotClassifier(tiny_model, LABELS, ["{} sounds"], modality="audio").templates == ("{} sounds",)


def test_prototypes_computed_once(tiny_model, vectors):
    from bindspace.embedding import Embedder

    class Counting(Embedder):
        calls = 0

        def embed(self, modality, items, **kw):
            if modality == "text":
                Counting.calls += 1
            return super().embed(modality, items, **kw)

    clf = ZeroShotClassifier(Counting(tiny_model), LABELS, TEMPLATES)
    for _ in range(3):
        clf.predict_vectors(vectors)
    assert Counting.calls == 1


@pytest.mark.parametrize("labels, templates, message", [
    (["a", "a"], None, "duplicate"),
    ([], None, "no labels"),
    (["a", " "], None, "empty"),
    ("dog,cat", None, "not one string"),
    (["a", "b"], ["no placeholder"], "exactly once"),
    (["a", "b"], ["{} and {}"], "exactly once"),
    (["a", "b"], [], "no prompt templates"),
])
def test_bad_labels_and_templates(tiny_model, labels, templates, message):
    with pytest.raises(BindspaceError, match=message):
        ZeroShotClassifier(tiny_model, labels, templates)


def test_predict_files_and_bad_items(tiny_model, media_dir, tmp_path):
    clf = ZeroShotClassifier(tiny_model, LABELS, modality="audio")
    files = [str(media_dir / "audio_1.wav"), str(media_dir / "audio_3.wav")]
    preds = clf.predict("audio", files, k=2)
    assert [p.name for p in preds] == files and [p.index for p in preds] == [0, 1]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....garbage")
    result = clf.classify("audio", [files[0], str(bad), files[1]], k=2)
    assert [p.index for p in result.predictions] == [0, 2]
    assert [e.index for e in result.errors] == [1] and str(bad) in result.errors[0].name
    # the same file gives the same prediction whichever call made it
    assert result.predictions[0].probabilities == pytest.approx(preds[0].probabilities)
    with pytest.raises(InputError):
        clf.predict("audio", [files[0], str(bad)])


def test_wrong_width_vectors(clf):
    with pytest.raises(BindspaceError, match="dimensions"):
        clf.predict_vectors(np.ones((1, 8)))
    with pytest.raises(BindspaceError, match="k must"):
        clf.predict_vectors(np.ones((1, 24)), k=0)

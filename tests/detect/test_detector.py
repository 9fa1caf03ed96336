"""The detector: shapes, gradients, finding planted objects, swapping class embeddings, saving, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bindspace.detect import DetectorConfig, RegionNetwork, load_detector, save_detector
from bindspace.detect.objective import SceneTargets, detection_loss
from bindspace.errors import BindspaceError, CheckpointError, ConfigError

from .conftest import SIZE, planted_scene


def test_regions_have_one_box_and_unit_embedding_per_cell():
    config = DetectorConfig(embed_dim=24, image_size=32, stride=4, channels=16)
    regions = RegionNetwork(config)(torch.randn(3, 3, 32, 32))
    assert regions.objectness.shape == (3, 64)
    assert regions.boxes.shape == (3, 64, 4)
    assert regions.embeddings.shape == (3, 64, 24)
    assert torch.allclose(regions.embeddings.norm(dim=-1), torch.ones(3, 64), atol=1e-5)
    assert (regions.boxes[..., 2:] > regions.boxes[..., :2]).all()  # corners in order


def test_every_parameter_gets_a_gradient():
    config = DetectorConfig(embed_dim=8, image_size=16, stride=4, channels=16)
    network = RegionNetwork(config)
    targets = [SceneTargets(torch.tensor([[0.1, 0.1, 0.5, 0.6]]), torch.tensor([1]), torch.eye(8)[:1])]
    losses = detection_loss(network, network(torch.randn(1, 3, 16, 16)), targets, torch.eye(8)[:3])
    losses["total"].backward()
    missing = [name for name, p in network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="multiple of its stride"):
        DetectorConfig(embed_dim=8, image_size=30, stride=4)
    with pytest.raises(ConfigError, match="multiple of 16"):
        DetectorConfig(embed_dim=8, channels=20)
    with pytest.raises(ConfigError, match="unknown detector config keys: colour"):
        DetectorConfig.from_dict({"embed_dim": 8, "colour": "red"})


def _recall(detector, classes, count=40, seed=99):
    rng = np.random.default_rng(seed)
    scenes = [planted_scene(rng) for _ in range(count)]
    found = detector.detect([s[0] for s in scenes], classes, ["red", "blue"], threshold=0.2)
    hits = 0
    for (_, boxes, labels), dets in zip(scenes, found):
        truth = torch.from_numpy(boxes)
        from bindspace.detect.boxes import box_iou

        hits += any(d.class_index == int(labels[0]) and float(box_iou(torch.tensor([d.box]), truth)[0, 0]) >= 0.5
                    for d in dets[:1])
    return hits / count


def test_a_trained_detector_finds_the_planted_object(planted_detector):
    detector, classes = planted_detector
    assert _recall(detector, classes) >= 0.9


def test_other_class_embeddings_are_accepted_without_retraining(planted_detector):
    """Classes from another modality are only other vectors near the same directions: swap them in unchanged."""
    detector, classes = planted_detector
    gen = torch.Generator().manual_seed(3)
    noise = torch.nn.functional.normalize(torch.randn(2, 24, generator=gen), dim=-1)
    other = torch.nn.functional.normalize(classes + 0.3 * noise, dim=-1)  # cosine ~0.95 to the trained ones
    assert _recall(detector, other) >= 0.9
    # ... and the class named decides: swapping the two classes' vectors swaps the answers
    image, _, labels = planted_scene(np.random.default_rng(5))
    first = detector.detect([image], classes, ["red", "blue"], threshold=0.2)[0][0]
    swapped = detector.detect([image], classes.flip(0), ["blue", "red"], threshold=0.2)[0][0]
    assert first.label == swapped.label == ["red", "blue"][int(labels[0])]
    assert first.box == swapped.box


def test_one_absent_class_finds_nothing(planted_detector):
    detector, classes = planted_detector
    rng = np.random.default_rng(11)
    reds = [s[0] for s in (planted_scene(rng) for _ in range(30)) if int(s[2][0]) == 0]
    found = detector.detect(reds, classes[1:], ["blue"], threshold=0.3)
    assert sum(len(f) for f in found) <= len(reds) // 10  # asking only for blue does not label red squares blue


def test_boxes_are_in_the_input_image_pixels(planted_detector):
    from PIL import Image

    detector, classes = planted_detector
    image, boxes, _ = planted_scene(np.random.default_rng(21))
    big = np.asarray(Image.fromarray(image).resize((SIZE * 3, SIZE * 2), Image.Resampling.NEAREST))
    small_box = detector.detect([image], classes, ["red", "blue"], threshold=0.2)[0][0].box
    big_box = detector.detect([big], classes, ["red", "blue"], threshold=0.2)[0][0].box
    assert np.allclose(big_box, np.array(small_box) * [3, 2, 3, 2], atol=1.5)


def test_save_and_load_give_the_same_detections(planted_detector, tmp_path):
    detector, classes = planted_detector
    save_detector(detector, tmp_path / "det")
    loaded = load_detector(tmp_path / "det")
    image = planted_scene(np.random.default_rng(1))[0]
    assert detector.detect([image], classes, ["r", "b"]) == loaded.detect([image], classes, ["r", "b"])


def test_broken_detector_directories_are_one_line_errors(planted_detector, tmp_path):
    detector, _ = planted_detector
    with pytest.raises(CheckpointError, match="no such detector directory"):
        load_detector(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a detector directory"):
        load_detector(tmp_path / "empty")
    folder = save_detector(detector, tmp_path / "det")
    (folder / "weights.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="cannot load detector weights") as err:
        load_detector(folder)
    assert "\n" not in str(err.value)


def test_bad_classes_and_images_are_one_line_errors(planted_detector, tmp_path):
    detector, classes = planted_detector
    image = planted_scene(np.random.default_rng(1))[0]
    with pytest.raises(BindspaceError, match="64 dimensions; this detector's space has 24"):
        detector.detect([image], torch.randn(2, 64), ["a", "b"])
    with pytest.raises(BindspaceError, match=r"C >= 1"):
        detector.detect([image], torch.zeros(0, 24), [])
    with pytest.raises(BindspaceError, match="2 labels for 1 classes"):
        detector.detect([image], classes[:1], ["a", "b"])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not a picture")
    for name in ("empty.png", "text.png"):
        with pytest.raises(BindspaceError) as err:
            detector.detect([str(tmp_path / name)], classes, ["a", "b"])
        assert name in str(err.value) and "\n" not in str(err.value)

import numpy as np

from bindspace.detect.detector import Detection
from bindspace.detect.evaluate import recall_precision
from bindspace.detect.scenes import Scene, SceneSpec, draw_scene


def _ink(n=20):
    rng = np.random.default_rng(0)
    return rng.integers(0, 17, size=(n, 8, 8)).astype(float), np.arange(n) % 10


def test_scenes_place_digits_apart_inside_the_canvas_with_ink_in_each_box():
    ink, labels = _ink()
    spec = SceneSpec(canvas=64)
    for seed in range(20):
        scene = draw_scene(ink, labels, np.arange(20), np.random.default_rng(seed), spec)
        assert 1 <= len(scene.boxes) <= spec.max_objects
        assert (scene.boxes >= 0).all() and (scene.boxes <= 64).all()
        assert (scene.labels == labels[scene.sources]).all()
        for i, a in enumerate(scene.boxes):
            x0, y0, x1, y1 = a.astype(int)
            assert scene.image[y0:y1, x0:x1].min() < 128  # the digit's ink is in its box
            for b in scene.boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        outside = np.ones((64, 64), dtype=bool)
        for x0, y0, x1, y1 in scene.boxes.astype(int):
            outside[y0:y1, x0:x1] = False
        assert (scene.image[outside] == 255).all()  # paper stays white outside the boxes


def test_a_seed_draws_the_same_scene():
    ink, labels = _ink()
    one = draw_scene(ink, labels, np.arange(20), np.random.default_rng(4))
    two = draw_scene(ink, labels, np.arange(20), np.random.default_rng(4))
    assert (one.image == two.image).all() and (one.boxes == two.boxes).all()


def test_recall_and_precision_count_right_class_and_overlap():
    scene = Scene(np.zeros((64, 64, 3), np.uint8), np.array([[0, 0, 10, 10], [30, 30, 40, 40]], np.float32),
                  np.array([3, 5]), np.array([0, 1]))
    found = [[Detection((0, 0, 10, 9), 0.9, "3", 3),  # IoU 0.9, right class: a hit
              Detection((30, 30, 40, 40), 0.8, "4", 4),  # right place, wrong class
              Detection((0, 0, 10, 10), 0.7, "3", 3)]]  # a second box for an object already found
    assert recall_precision([scene], found) == (0.5, 1 / 3)

"""A detector trained in seconds on planted objects: red squares (class 0) and blue squares (class 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bindspace.detect import Detector, DetectorConfig, RegionNetwork, SpaceInfo
from bindspace.detect.objective import SceneTargets
from bindspace.detect.training import FitSettings, fit_detector
from bindspace.preprocess.image import normalize

SIZE = 32
COLOURS = ((220, 30, 30), (30, 30, 220))


def planted_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey SIZE x SIZE picture with one coloured square: (image, boxes (1, 4) pixels, labels (1,))."""
    image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    side = int(rng.integers(8, 13))
    x0, y0 = (int(v) for v in rng.integers(0, SIZE - side + 1, size=2))
    label = int(rng.integers(2))
    image[y0:y0 + side, x0:x0 + side] = COLOURS[label]
    return image, np.array([[x0, y0, x0 + side, y0 + side]], dtype=np.float32), np.array([label])


def class_vectors(dim: int, seed: int = 0) -> torch.Tensor:
    """Two random orthogonal-ish unit class embeddings (2, dim), standing in for text classes."""
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(2, dim, generator=gen), dim=-1)


@pytest.fixture(scope="session")
def planted_detector() -> tuple[Detector, torch.Tensor]:
    """A detector (24-d space, 32-px images) fitted for 150 steps, and the class embeddings it was fitted with."""
    torch.manual_seed(0)
    config = DetectorConfig(embed_dim=24, image_size=SIZE, stride=4, channels=16, box_prior=2.5)
    network = RegionNetwork(config)
    classes = class_vectors(24)

    def batch(step: int) -> tuple[torch.Tensor, list[SceneTargets]]:
        rng = np.random.default_rng([7, step])
        scenes = [planted_scene(rng) for _ in range(16)]
        pixels = normalize(torch.from_numpy(np.stack([s[0] for s in scenes])).permute(0, 3, 1, 2).float() / 255)
        return pixels, [SceneTargets(torch.from_numpy(b) / SIZE, torch.from_numpy(y)) for _, b, y in scenes]

    with torch.random.fork_rng():
        torch.set_num_threads(1)
        fit_detector(network, batch, classes, FitSettings(steps=150, lr=3e-3, warmup_steps=10),
                     log=lambda _m: None)
    return Detector(network, SpaceInfo(24, None)), classes

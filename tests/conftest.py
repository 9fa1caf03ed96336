"""Shared fixtures: the tiny preset with deterministic weights, as a model and as checkpoints."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from detweights import deterministic_state_dict  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
MEDIA = FIXTURES / "media"
TINY = "imagebind_tiny_test"

torch.set_num_threads(min(2, torch.get_num_threads()))
# Commands default to --dtype auto (bfloat16 on CPUs that have it); the CLI tests compare against float32
# references, so auto resolves to float32 here unless a test sets the variable itself.
os.environ.setdefault("BINDSPACE_DTYPE", "float32")


def tiny_shapes(modalities=None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the tiny preset's state dict."""
    from bindspace.model.imagebind import ImageBindModel
    from bindspace.model.presets import get_config

    with torch.device("meta"):
        model = ImageBindModel(get_config(TINY), modalities)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return MEDIA


@pytest.fixture(scope="session")
def goldens() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "goldens_tiny.safetensors"))


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, torch.Tensor]:
    """Deterministic weights for every tower of the tiny preset."""
    return deterministic_state_dict(tiny_shapes())


@pytest.fixture(scope="session")
def tiny_model(tiny_state):
    """The tiny preset with deterministic weights, eval mode, all towers (do not mutate)."""
    import bindspace

    model = bindspace.create_model(TINY)
    model.load_state_dict(tiny_state)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_pth(tmp_path_factory, tiny_state) -> Path:
    """The tiny weights saved like the released .pth (a plain state dict)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save(tiny_state, path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_state) -> Path:
    """The tiny weights in our per-modality safetensors layout (what `bindspace convert` writes)."""
    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.presets import get_config

    return save_model_dir(tiny_state, get_config(TINY), tmp_path_factory.mktemp("ckpt") / "tiny_dir")

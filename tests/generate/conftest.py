"""Fixtures: a tiny Stable unCLIP pipeline on disk (24-d, the tiny preset's width) and a tiny generator."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

TINY_WIDTH = 24  # imagebind_tiny_test's embed_dim


@pytest.fixture(scope="session")
def unclip_dir(tmp_path_factory) -> Path:
    """A saved StableUnCLIPImg2ImgPipeline conditioned on 24-d embeddings; its encoder gives one known norm."""
    from tiny_unclip import build_tiny_unclip

    return build_tiny_unclip(tmp_path_factory.mktemp("unclip") / "pipe", TINY_WIDTH, constant_encoder=True)


@pytest.fixture(scope="session")
def unclip_wide_dir(tmp_path_factory) -> Path:
    """The same kind of pipeline for 32-d embeddings: the wrong width for the tiny preset."""
    from tiny_unclip import build_tiny_unclip

    return build_tiny_unclip(tmp_path_factory.mktemp("unclip") / "wide", 32)


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """An untrained tiny diffusion generator for the tiny preset's space, recording that model directory."""
    from bindspace.generate.tiny_diffusion import TinyDiffusion, TinyDiffusionConfig, save_generator

    torch.manual_seed(0)
    model = TinyDiffusion(TinyDiffusionConfig(embed_dim=TINY_WIDTH, hidden=64, layers=1))
    return save_generator(model, tmp_path_factory.mktemp("gen") / "generator",
                          extra={"checkpoint": str(tiny_model_dir), "defaults": {"steps": 4, "guidance": 2.0}})


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

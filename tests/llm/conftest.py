"""Fixtures for the bridge tests: a 16-wide two-tower encoder, tiny word-level LMs, small media files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bindspace.config import ModelConfig, TowerConfig
from bindspace.modality import Modality

WORDS = ["what", "is", "this", "?", "the", "digit", "seven", "three", "a", "sound", "and", "picture", "answer",
         "question", ":", "it", "shows"]


def encoder_config(name: str = "llm_test_encoder") -> ModelConfig:
    """16-px images and standard log-mel audio, 16-d space."""
    return ModelConfig(name, 16, {
        Modality.VISION: TowerConfig(16, 1, 2, (16, 16), (2, 8, 8), in_channels=3, pre_norm=True),
        Modality.AUDIO: TowerConfig(16, 1, 2, (128, 204), (128, 51), add_bias_kv=True, logit_scale=20.0),
    })


def save_encoder(folder: Path, seed: int) -> Path:
    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.imagebind import ImageBindModel

    torch.manual_seed(seed)
    model = ImageBindModel(encoder_config())
    model.init_weights()
    return save_model_dir(model.state_dict(), model.config, folder)


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory) -> Path:
    """The encoder the bridges are trained with."""
    return save_encoder(tmp_path_factory.mktemp("enc") / "encoder", seed=0)


@pytest.fixture(scope="session")
def other_encoder_dir(tmp_path_factory) -> Path:
    """Same architecture, other weights: another embedding space."""
    return save_encoder(tmp_path_factory.mktemp("enc") / "other", seed=1)


def _tokenizer():
    from bindspace.llm.wordlm import word_tokenizer

    return word_tokenizer([" ".join(WORDS)])


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    """A 1-layer, 32-wide Llama with a word vocabulary (random init), as a transformers directory."""
    from bindspace.llm.wordlm import save_language_model, small_causal_lm

    lm = small_causal_lm(_tokenizer(), hidden=32, layers=1, heads=2, seed=0)
    return save_language_model(lm, tmp_path_factory.mktemp("lm") / "llama")


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    """Another architecture (GPT-2) from a config, same vocabulary."""
    import transformers

    tokenizer = _tokenizer()
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=24, n_layer=1, n_head=2, n_positions=64,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    out = tmp_path_factory.mktemp("lm") / "gpt2"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """A 16x16 PNG, a 1 s WAV, a corrupt WAV and a depth PNG."""
    import soundfile as sf
    from PIL import Image

    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / "digit.png")
    t = np.arange(16000) / 16000
    sf.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 852 * t)).astype(np.float32), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    Image.fromarray(rng.integers(0, 4000, (16, 16), dtype=np.uint16)).save(folder / "depth.png")
    return {"image": folder / "digit.png", "audio": folder / "tone.wav", "broken": folder / "broken.wav",
            "depth": folder / "depth.png"}


@pytest.fixture()
def rows_file(tmp_path, media) -> Path:
    """Training rows: single image, single audio, and a mixed image + audio row."""
    rows = [
        {"media": [{"modality": "image", "path": str(media["image"])}], "prompt": "what is this?",
         "response": "the digit seven"},
        {"media": [{"modality": "audio", "path": str(media["audio"])}], "prompt": "what is this?",
         "response": "a sound"},
        {"media": [{"modality": "image", "path": str(media["image"])}, {"modality": "audio",
                                                                        "path": str(media["audio"])}],
         "prompt": "<media> and <media> ?", "response": "a picture and a sound"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path

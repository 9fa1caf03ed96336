"""LoRA: only adapters train and are saved; merging gives the same outputs with the original keys."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from bindspace.model import checkpoint as ckpt  # noqa: E402
from bindspace.model.factory import create_model  # noqa: E402
from bindspace.model.imagebind import ImageBindModel  # noqa: E402
from bindspace.train.api import train  # noqa: E402
from bindspace.train.config import LoraConfig  # noqa: E402
from bindspace.train.lora import (  # noqa: E402
    ADAPTER_FILE,
    apply_lora,
    load_adapters,
    lora_state_dict,
    merge_lora,
    save_adapters,
)

from .conftest import SMALL_NAME, train_toml  # noqa: E402


def audio_batch() -> torch.Tensor:
    return torch.randn(3, 1, 128, 204, generator=torch.Generator().manual_seed(2))


def test_adapters_inject_save_merge_and_reload(small_base_dir, tmp_path):
    model = create_model(SMALL_NAME, checkpoint=small_base_dir, modalities=["audio"])
    assert isinstance(model, ImageBindModel)  # torch towers (not ONNX): their layers are reachable
    trunk = model.modality_trunks["audio"]
    base_keys = set(trunk.state_dict())
    apply_lora(trunk, LoraConfig(rank=2, alpha=4.0))
    trainable = [n for n, p in trunk.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # stand-in for training: B starts at zero, which would make LoRA a no-op
        for name, param in trunk.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    x = audio_batch()
    adapted = model.encode("audio", x)
    adapters = lora_state_dict(trunk)
    assert len(adapters) == 8 and all("lora_" in k for k in adapters)  # A and B for 4 targets, 1 block
    save_adapters(trunk, LoraConfig(rank=2, alpha=4.0), tmp_path / "adapters")
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "adapters" / ADAPTER_FILE))) == set(adapters)

    merge_lora(trunk)
    assert set(trunk.state_dict()) == base_keys  # no base_layer / lora keys left
    assert torch.allclose(model.encode("audio", x), adapted, atol=1e-5)

    fresh = create_model(SMALL_NAME, checkpoint=small_base_dir, modalities=["audio"])
    assert isinstance(fresh, ImageBindModel)  # torch towers (not ONNX): their layers are reachable
    plain = fresh.encode("audio", x)
    assert not torch.allclose(plain, adapted, atol=1e-3)
    load_adapters(fresh.modality_trunks["audio"], tmp_path / "adapters")
    assert torch.allclose(fresh.encode("audio", x), adapted, atol=1e-5)


def test_lora_training_run_saves_only_adapters_and_exports_merged_weights(small_base_dir, pair_files, tmp_path):
    cfg = tmp_path / "lora.toml"
    cfg.write_text(train_toml(small_base_dir, pair_files, tmp_path / "run",
                              target={"checkpoint": str(small_base_dir), "init": "checkpoint",
                                      "lora": {"rank": 2, "alpha": 4.0}},
                              optim={"lr": 1e-2, "weight_decay": 0.0}, run={"steps": 2}))
    out = train(cfg)
    assert out.result.checkpoint is not None and out.model_dir is not None
    state = torch.load(out.result.checkpoint, weights_only=True)["model"]
    assert state and all("lora_" in k for k in state)  # the training checkpoint holds adapters only
    assert out.adapter_dir is not None and (out.adapter_dir / ADAPTER_FILE).is_file()

    base = ckpt.load_state_dict(small_base_dir)
    exported = ckpt.load_state_dict(out.model_dir)
    assert set(exported) == set(base)  # merged: the usual keys, every tower of the base
    changed = [k for k in base if not torch.equal(base[k], exported[k])]
    assert changed and all(k.startswith("modality_trunks.audio.") for k in changed)
    model = create_model(checkpoint=out.model_dir)  # no preset name: the manifest has the config
    assert set(model.modalities) == {"vision", "text", "audio"}

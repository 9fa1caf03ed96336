"""The bridge directory holds only the projector and the LoRA adapter, and reloads to identical greedy answers."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from bindspace.errors import CheckpointError
from bindspace.llm.bridge import Bridge
from bindspace.llm.bridge_dir import load_bridge, save_bridge
from bindspace.llm.lm import LmLoraConfig, add_lora, load_language_model
from bindspace.llm.projector import Projector, ProjectorConfig
from bindspace.llm.space import space_of
from bindspace.llm.template import PromptTemplate
from bindspace.model import create_model


@pytest.fixture()
def bridge(llama_dir, encoder_dir) -> Bridge:
    """A bridge with a random MLP projector (2 soft tokens) and non-zero LoRA adapters."""
    lm = load_language_model(llama_dir)
    lora = LmLoraConfig(rank=2, alpha=4.0, dropout=0.0, targets=("q_proj", "v_proj"))
    add_lora(lm.model, lora)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in lm.model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: make the adapter change the model
                param.normal_(0, 0.5)
    projector = Projector(ProjectorConfig("mlp", tokens=2, hidden=20, in_dim=16, out_dim=32))
    space = space_of(encoder_dir, "llm_test_encoder", 16)
    encoder = create_model(checkpoint=encoder_dir)
    return Bridge(encoder, projector, lm, PromptTemplate(text="question : {prompt} answer :"), space, lora)


def test_only_projector_and_adapter_are_saved(bridge, tmp_path):
    out = save_bridge(bridge, tmp_path / "bridge")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["adapter/adapter_model.safetensors", "bridge.json", "projector.safetensors"]
    projector = load_file(str(out / "projector.safetensors"))
    assert set(projector) == set(bridge.projector.state_dict())
    adapter = load_file(str(out / "adapter/adapter_model.safetensors"))
    assert adapter and all("lora_" in key for key in adapter)
    saved = sum(t.numel() for t in (*projector.values(), *adapter.values()))
    trained = sum(p.numel() for p in bridge.projector.parameters()) + sum(
        p.numel() for n, p in bridge.lm_model.named_parameters() if "lora_" in n)
    assert saved == trained
    manifest = json.loads((out / "bridge.json").read_text())
    assert manifest["llm"]["path"] == str(bridge.lm.path) and manifest["llm"]["model_type"] == "llama"
    assert manifest["space"]["fingerprint"] == bridge.space.fingerprint
    assert not list(tmp_path.glob(".*"))  # no temporary directories left behind


def test_reload_gives_identical_greedy_generations(bridge, tmp_path, media):
    out = save_bridge(bridge, tmp_path / "bridge")
    loaded = load_bridge(out)
    items = [("image", media["image"]), ("audio", media["audio"])]
    prompt = "<media> and <media> what is this ?"
    with torch.no_grad():
        before = bridge.lm_model(inputs_embeds=bridge.prompt_embeds(prompt, bridge.embed(bridge_items(items))))
        after = loaded.lm_model(inputs_embeds=loaded.prompt_embeds(prompt, loaded.embed(bridge_items(items))))
    assert torch.equal(before.logits, after.logits)
    first = bridge.generate(prompt, items, max_new_tokens=12)
    assert first == loaded.generate(prompt, items, max_new_tokens=12)
    streamed = "".join(loaded.stream(prompt, items, max_new_tokens=12)).strip()
    assert streamed == first


def bridge_items(pairs):
    from bindspace.llm.bridge import as_media

    return as_media(pairs)


def test_a_bridge_refuses_an_encoder_from_another_space(bridge, tmp_path, other_encoder_dir):
    out = save_bridge(bridge, tmp_path / "bridge")
    with pytest.raises(CheckpointError, match="another embedding space"):
        load_bridge(out, checkpoint=other_encoder_dir)


def test_a_bridge_refuses_a_language_model_of_another_shape(bridge, tmp_path, gpt2_dir):
    out = save_bridge(bridge, tmp_path / "bridge")
    with pytest.raises(CheckpointError, match="hidden_size 24 differs"):
        load_bridge(out, llm=gpt2_dir)


def test_saving_over_a_bridge_replaces_it_whole(bridge, tmp_path, monkeypatch):
    out = save_bridge(bridge, tmp_path / "bridge")
    before = (out / "projector.safetensors").read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", explode)
    with torch.no_grad():
        next(bridge.projector.parameters()).add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_bridge(bridge, out)
    assert (out / "projector.safetensors").read_bytes() == before  # the old bridge is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge"]  # and no half-written folder remains

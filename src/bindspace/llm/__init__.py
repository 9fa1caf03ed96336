"""Language models that see through bindspace (PandaGPT / NExT-GPT style): any modality in, text out.

    from bindspace.llm import load_bridge
    bridge = load_bridge("runs/bridge/bridge")                 # names its LM and encoder
    print(bridge.generate("what is making this sound?", [("audio", "dog.wav")]))

A `Bridge` is the frozen bindspace encoder, a trained projector (linear, MLP, or k soft
tokens per item) and a frozen causal LM from a local transformers directory (optionally
with LoRA). Train one with a `kind = "llm"` recipe of `bindspace train`; see docs/llm.md.
Needs the [llm] extra (transformers). The heavy modules load on first use.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Bridge", "Media", "PromptTemplate", "Projector", "ProjectorConfig", "LmLoraConfig", "SpaceInfo",
           "load_language_model", "MEDIA_TOKEN", "load_bridge", "save_bridge"]

_LAZY = {
    "Bridge": ("bridge", "Bridge"),
    "load_bridge": ("bridge_dir", "load_bridge"),
    "save_bridge": ("bridge_dir", "save_bridge"),
    "Media": ("media", "Media"),
    "PromptTemplate": ("template", "PromptTemplate"),
    "MEDIA_TOKEN": ("template", "MEDIA_TOKEN"),
    "Projector": ("projector", "Projector"),
    "ProjectorConfig": ("projector", "ProjectorConfig"),
    "LmLoraConfig": ("lm", "LmLoraConfig"),
    "SpaceInfo": ("space", "SpaceInfo"),
    "load_language_model": ("lm", "load_language_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'bindspace.llm' has no attribute {name!r}")

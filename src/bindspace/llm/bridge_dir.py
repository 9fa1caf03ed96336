"""The bridge directory: projector weights, the LM's LoRA adapter, and a manifest naming the LM and the space.

    bridge.json                   format, projector and template settings, the LM (path + shape; a GGUF
                                  file's sha256 and known name), the
                                  embedding space (fingerprint, name, width, encoder path), LoRA settings
    projector.safetensors         the projector's weights
    adapter/adapter_model.safetensors   LoRA tensors on the LM (only when LoRA was trained)

Nothing of the LM or the encoder is copied: the manifest names them (absolute and relative to
the bridge, so a folder holding all three can move). The directory is written beside its
final place and renamed into it, so a crash leaves the old bridge or none, never half of one.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError
from ..fsio import atomic_open, atomic_path, publish_dir, work_dir
from .lm import LmLoraConfig, add_lora, load_language_model, load_lora_state, lora_state
from .projector import Projector, ProjectorConfig
from .space import SpaceInfo, check_space
from .template import PromptTemplate

if TYPE_CHECKING:
    from .bridge import Bridge

FORMAT = "bindspace-bridge"
VERSION = 1
MANIFEST = "bridge.json"
PROJECTOR_FILE = "projector.safetensors"
ADAPTER_FILE = "adapter/adapter_model.safetensors"


def is_bridge_dir(path: str | os.PathLike[str]) -> bool:
    """True when `path` holds a bridge manifest."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed bridge.json; CheckpointError when absent or not a bridge."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: bridge directory not found")
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not a bridge directory (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / MANIFEST}: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{folder / MANIFEST}: not a bindspace bridge manifest")
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(f"{folder}: bridge format version {data['version']} is newer than this bindspace "
                              f"reads ({VERSION}); upgrade bindspace")
    return data


def _where(target: str | None, out: Path) -> dict[str, str | None]:
    if not target:
        return {"path": None, "relative": None}
    absolute = Path(target).resolve()
    return {"path": str(absolute), "relative": os.path.relpath(absolute, out.resolve())}


def save_bridge(bridge: Bridge, out_dir: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
    """Write `bridge`'s trained parts and manifest to `out_dir` (replacing an older bridge there)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and not is_bridge_dir(out) and any(out.iterdir()):
        raise CheckpointError(f"{out}: exists and is not a bridge directory; choose another output")
    out.parent.mkdir(parents=True, exist_ok=True)
    space = bridge.space
    manifest = {
        "format": FORMAT, "version": VERSION,
        "projector": bridge.projector.config.to_dict(),
        "template": bridge.template.to_dict(),
        "llm": {**_where(bridge.lm.path, out), **bridge.lm.info},
        "space": space.to_dict() if space else None,
        "encoder": _where(space.checkpoint if space else None, out),
        "lora": bridge.lora.to_dict() if bridge.lora is not None else None,
        "files": {"projector": PROJECTOR_FILE, **({"adapter": ADAPTER_FILE} if bridge.lora is not None else {})},
        "training": extra or {},
    }
    with work_dir(out) as tmp:
        state = {k: v.detach().float().cpu().contiguous() for k, v in bridge.projector.state_dict().items()}
        with atomic_path(tmp / PROJECTOR_FILE) as path:
            save_file(state, str(path))
        if bridge.lora is not None:
            (tmp / ADAPTER_FILE).parent.mkdir()
            with atomic_path(tmp / ADAPTER_FILE) as path:
                save_file(lora_state(bridge.lm_model), str(path))
        with atomic_open(tmp / MANIFEST) as handle:
            handle.write(json.dumps(manifest, indent=1) + "\n")
        publish_dir(tmp, out, replace=True)
    return out


def _find(given: str | os.PathLike[str] | None, entry: dict[str, Any] | None, folder: Path) -> str | None:
    if given is not None:
        return str(given)
    entry = entry or {}
    if entry.get("relative"):
        candidate = (folder / entry["relative"]).resolve()
        if candidate.exists():
            return str(candidate)
    return entry.get("path")


def named_encoder(bridge_dir: str | os.PathLike[str]) -> str | None:
    """The encoder checkpoint a bridge names (relative to the bridge first, then its absolute path)."""
    folder = Path(bridge_dir)
    return _find(None, read_manifest(folder).get("encoder"), folder)


def load_bridge(bridge_dir: str | os.PathLike[str], *, checkpoint: str | os.PathLike[str] | None = None,
                llm: str | os.PathLike[str] | None = None, modalities: Iterable[str] | None = None,
                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                encoder: Any = None, encoder_fingerprint: str | None = None) -> Bridge:
    """Rebuild a Bridge: check the encoder's space and the LM's shape before loading anything big.

    `encoder` (with its weights fingerprint) reuses a model already loaded, e.g. the server's.
    """
    from safetensors.torch import load_file

    from ..model import create_model
    from ..model.checkpoint import is_model_dir
    from .bridge import Bridge

    folder = Path(bridge_dir)
    manifest = read_manifest(folder)
    space = SpaceInfo.from_dict(manifest["space"]) if manifest.get("space") else None
    encoder_path = None
    if encoder is not None:
        if space is not None and encoder_fingerprint != space.fingerprint:
            raise CheckpointError(
                f"{folder}: this bridge was trained in another embedding space ({space.name}, fingerprint "
                f"{space.fingerprint}); the loaded model has fingerprint {encoder_fingerprint}")
    else:
        encoder_path = _find(checkpoint, manifest.get("encoder"), folder)
        if encoder_path is None:
            raise CheckpointError(f"{folder}: the bridge names no encoder; give --checkpoint")
        if not Path(encoder_path).exists():
            raise CheckpointError(f"{encoder_path}: encoder checkpoint not found (give --checkpoint)")
        if space is not None:
            check_space(space, encoder_path, str(folder))
    recorded = manifest.get("llm") or {}
    llm_path = _find(llm, recorded, folder)
    if llm is None and recorded.get("name") and (llm_path is None or not Path(llm_path).exists()):
        llm_path = recorded["name"]  # a known GGUF name (smollm2): found in this machine's cache
    if llm_path is None:
        raise CheckpointError(f"{folder}: the bridge names no language model; give --llm DIR")
    projector_file = folder / PROJECTOR_FILE
    if not projector_file.is_file():
        raise CheckpointError(f"{projector_file}: missing")
    _check_llm_config(llm_path, recorded)
    lm = load_language_model(llm_path, device=device, dtype=dtype, expected_sha256=recorded.get("sha256"))
    for key in ("hidden_size", "vocab_size"):
        if key in recorded and recorded[key] != lm.info[key]:
            raise CheckpointError(f"{llm_path}: {key} {lm.info[key]} differs from the language model the bridge "
                                  f"was trained with ({recorded[key]}); give --llm with that model")
    if encoder is None:
        assert encoder_path is not None
        name = None if is_model_dir(encoder_path) else (space.name if space else None)
        _check_towers(encoder_path, name, modalities)
        encoder = create_model(name, checkpoint=encoder_path, modalities=modalities, device=device, dtype=dtype)
    projector = Projector(ProjectorConfig.from_dict(manifest["projector"]))
    try:
        projector.load_state_dict(load_file(str(projector_file)))
    except (RuntimeError, OSError, ValueError) as exc:
        raise CheckpointError(f"{projector_file}: does not fit the projector ({' '.join(str(exc).split())[:200]})") \
            from None
    projector.to(device=device, dtype=dtype).eval()
    lora = None
    if manifest.get("lora"):
        lora = LmLoraConfig(**{**manifest["lora"], "targets": tuple(manifest["lora"]["targets"])})
        add_lora(lm.model, lora)
        adapter = folder / ADAPTER_FILE
        try:
            state = load_file(str(adapter))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{adapter}: cannot read the LoRA adapter ({exc})") from None
        load_lora_state(lm.model, state, str(adapter))
        lm.model.to(device=device, dtype=dtype)
        lm.model.eval()
        for param in lm.model.parameters():
            param.requires_grad_(False)
    return Bridge(encoder, projector, lm, PromptTemplate.from_dict(manifest.get("template") or {}), space, lora)


def _check_towers(encoder_path: str, name: str | None, modalities: Iterable[str] | None) -> None:
    """A one-line error, before any weights load, when the encoder lacks a tower the media need."""
    from ..modality import as_modality
    from ..model.factory import manifest_config
    from ..model.presets import get_config

    if modalities is None:
        return
    config = manifest_config(encoder_path) if name is None else get_config(name)
    for wanted in modalities:
        if as_modality(wanted) not in config.towers:
            have = ", ".join(str(m) for m in config.towers)
            raise CheckpointError(f"{encoder_path}: the encoder has no {as_modality(wanted)} tower (it has: {have}), "
                                  f"so it cannot read {as_modality(wanted)} input")


def _check_llm_config(llm_path: str, recorded: dict[str, Any]) -> None:
    """Refuse an LM of another width or vocabulary from its config.json, before its weights are read.

    (A GGUF file has no config.json: the sha256 the bridge recorded decides, also before any weights load.)
    """
    config_file = Path(llm_path) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # load_language_model reports a missing or broken directory
    found = {"hidden_size": config.get("hidden_size", config.get("n_embd")), "vocab_size": config.get("vocab_size")}
    for key, value in found.items():
        if key in recorded and isinstance(value, int) and value != recorded[key]:
            raise CheckpointError(f"{llm_path}: {key} {value} differs from the language model the bridge was "
                                  f"trained with ({recorded[key]}); give --llm with that model")

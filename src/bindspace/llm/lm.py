"""The language model side: a causal LM and its tokenizer from a local directory or GGUF file, frozen, optional LoRA."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import BindspaceError, CheckpointError, ConfigError
from ..quiet import quiet


@dataclass
class LmLoraConfig:
    """LoRA on the language model (PandaGPT: rank 32, alpha 32 on q/k/v/o of Vicuna)."""

    rank: int = 32
    alpha: float = 32.0
    dropout: float = 0.1
    # "all-linear" lets peft pick every Linear but the output head, for any architecture;
    # otherwise module names, e.g. ["q_proj", "k_proj", "v_proj", "o_proj"].
    targets: tuple[str, ...] = ("all-linear",)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data


@dataclass
class LanguageModel:
    """A loaded causal LM with its tokenizer and where it came from."""

    model: Any  # a transformers PreTrainedModel (an nn.Module)
    tokenizer: Any
    path: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        """Width of the input embeddings (what the projector must produce)."""
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def max_positions(self) -> int | None:
        """Positions the LM can attend over (prompt + answer), or None where its config does not say."""
        config = getattr(self.model, "config", None)
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (..., T) -> input embeddings (..., T, H)."""
        return self.model.get_input_embeddings()(ids)


def transformers_module() -> Any:
    """The transformers package, or a one-line install hint."""
    try:
        import transformers
    except ImportError:
        raise BindspaceError("the LLM bridge needs transformers: pip install 'bindspace[llm]'") from None
    return transformers


def load_language_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, expected_sha256: str | None = None) -> LanguageModel:
    """A frozen causal LM in eval mode from a local directory, a .gguf file or a known name (never a download).

    Directories load their safetensors weights only (never pickles). A GGUF file is dequantized
    by transformers; its sha256 goes into `info` and, when `expected_sha256` is given, must equal it.
    """
    from .gguf import check_gguf_file, gguf_sha256, is_gguf, is_known_name, resolve_language_model

    transformers = transformers_module()
    source = resolve_language_model(path)
    extra: dict[str, Any] = {}
    if is_gguf(source):
        check_gguf_file(source)
        digest = gguf_sha256(source)
        if expected_sha256 is not None and digest != expected_sha256:
            raise CheckpointError(f"{source}: sha256 {digest[:12]}... is not the GGUF file the bridge was trained "
                                  f"with ({expected_sha256[:12]}...); give --llm with that file")
        where, files = str(source.parent), {"gguf_file": source.name}
        weights: dict[str, Any] = files
        extra = {"format": "gguf", "sha256": digest, **({"name": str(path)} if is_known_name(path) else {})}
    else:
        if not source.is_dir():
            raise CheckpointError(f"{source}: language model directory not found "
                                  "(give --llm DIR, a .gguf file or smollm2)")
        if not (source / "config.json").is_file():
            raise CheckpointError(f"{source}: not a transformers model directory (no config.json)")
        if expected_sha256 is not None:
            raise CheckpointError(f"{source}: the bridge was trained with a GGUF file (sha256 "
                                  f"{expected_sha256[:12]}...); give --llm with that file")
        where, files = str(source), {}
        weights = {"use_safetensors": True}  # never a pickled pytorch_model.bin (weights_only's spirit)
    # transformers draws its GGUF dequantization bar with plain tqdm on stderr: swallowed, with its notices.
    try:
        with quiet(hf=True, stderr=bool(files)):
            tokenizer = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True, **files)
            # transformers < 4.56 names the argument torch_dtype; later versions deprecate that name for dtype.
            dtype_arg = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
            model = transformers.AutoModelForCausalLM.from_pretrained(where, local_files_only=True,
                                                                      **{dtype_arg: dtype}, **weights)
    except (OSError, ValueError, KeyError) as exc:
        problem = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{source}: cannot load the language model ({problem})") from None
    model.to(device)
    freeze(model)
    return LanguageModel(model, tokenizer, str(source), {**describe(model), **extra})


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def describe(model: Any) -> dict[str, Any]:
    """What the manifest records about an LM so a bridge can refuse another one."""
    config = model.config
    return {"model_type": getattr(config, "model_type", None),
            "architectures": list(getattr(config, "architectures", None) or [type(model).__name__]),
            "hidden_size": int(model.get_input_embeddings().weight.shape[1]),
            "vocab_size": int(model.get_input_embeddings().weight.shape[0])}


def freeze(model: nn.Module) -> None:
    """No gradients and eval mode (no dropout) for every LM weight."""
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise BindspaceError("LoRA on the language model needs peft: pip install 'bindspace[train]'") from None
    return peft


def peft_lora_config(config: LmLoraConfig, model: nn.Module | None = None) -> Any:
    """The peft LoraConfig for a causal LM (`model` tells whether its layers store weights transposed)."""
    if config.rank < 1:
        raise ConfigError(f"llm.lora.rank: must be >= 1, got {config.rank}")
    targets: str | list[str] = "all-linear" if tuple(config.targets) == ("all-linear",) else list(config.targets)
    # GPT-2-style models keep (in, out) weights in Conv1D layers: peft must know to transpose.
    transposed = model is not None and any(type(m).__name__ == "Conv1D" for m in model.modules())
    return _peft().LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                              target_modules=targets, task_type="CAUSAL_LM", fan_in_fan_out=transposed)


def add_lora(model: nn.Module, config: LmLoraConfig) -> nn.Module:
    """Inject adapters in place; only they train."""
    peft = _peft()
    freeze(model)
    model = peft.inject_adapter_in_model(peft_lora_config(config, model), model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors."""
    return {k: v.detach().cpu().contiguous() for k, v in _peft().get_peft_model_state_dict(model).items()}


def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Put saved adapter tensors into an injected model; every tensor must match."""
    result = _peft().set_peft_model_state_dict(model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = set(lora_state(model)) - set(state)
    if unexpected or missing:
        raise CheckpointError(f"{source}: the LoRA adapter does not fit this language model "
                              f"(unexpected {unexpected[:3]}, missing {sorted(missing)[:3]})")

"""ImageBindModel: one tower per modality, all mapping into one shared space."""
from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import BindspaceError
from ..layers import TextHead, Transformer, cls_head, postprocessor
from ..layers.block import Block
from ..layers.heads import LogitScale
from ..layers.packed_linear import pack_linears
from ..modality import Modality, as_modality
from .contract import EmbeddingModel, text_run_length
from .stems import build_tokenizer


class ImageBindModel(EmbeddingModel):
    """The ImageBind architecture with the released checkpoint's module names.

    `forward` keeps the original's contract (a dict in, a dict of scaled embeddings out);
    `encode` is the everyday call and returns unit vectors.
    """

    def __init__(self, config: ModelConfig, modalities: Iterable[str | Modality] | None = None) -> None:
        super().__init__()
        self.config = config
        wanted = [as_modality(m) for m in modalities] if modalities is not None else list(config.towers)
        self.modalities: tuple[Modality, ...] = tuple(m for m in config.towers if m in wanted)
        missing = [str(m) for m in wanted if m not in config.towers]
        if missing:
            raise BindspaceError(f"model {config.name!r} has no tower for {', '.join(missing)}")
        self.modality_preprocessors = nn.ModuleDict()
        self.modality_trunks = nn.ModuleDict()
        self.modality_heads = nn.ModuleDict()
        self.modality_postprocessors = nn.ModuleDict()
        for modality in self.modalities:
            cfg = config.towers[modality]
            self.modality_preprocessors[modality] = build_tokenizer(modality, cfg)
            self.modality_trunks[modality] = Transformer(
                cfg.width, cfg.layers, cfg.heads,
                mlp_ratio=cfg.mlp_ratio, add_bias_kv=cfg.add_bias_kv, pre_norm=cfg.pre_norm, drop_path=cfg.drop_path,
            )
            if modality == Modality.TEXT:
                self.modality_heads[modality] = TextHead(cfg.width, config.embed_dim)
            else:
                self.modality_heads[modality] = cls_head(cfg.width, config.embed_dim, cfg.head_dropout)
            self.modality_postprocessors[modality] = postprocessor(
                cfg.logit_scale, learnable=cfg.learnable_logit_scale, max_scale=cfg.max_logit_scale
            )

    # ----------------------------------------------------------------- public API

    def logit_scale(self, modality: str | Modality) -> torch.Tensor:
        """The multiplier the postprocessor applies (1.0 for vision), as a 0-d tensor."""
        post = cast(nn.Sequential, self.modality_postprocessors[self._check(modality)])
        if len(post) < 2:
            return torch.tensor(1.0)
        return cast(LogitScale, post[1]).scale().detach()

    def float32_keys(self) -> set[str]:
        """State-dict keys kept in float32 at low precision: LayerNorm and the logit scales (as open_clip does).

        exp(bf16(log 20)) is 20.09: a bf16 scale would move every scaled vector's norm by up to 0.6 %.
        """
        keys: set[str] = set()
        for name, module in self.named_modules():
            if isinstance(module, (nn.LayerNorm, LogitScale)):
                keys.update(f"{name}.{leaf}" for leaf, _ in module.named_parameters(recurse=False))
                keys.update(f"{name}.{leaf}" for leaf, _ in module.named_buffers(recurse=False))
        return keys

    def to_precision(self, dtype: torch.dtype) -> ImageBindModel:
        """Cast in place to `dtype`, keeping `float32_keys` in float32 (never rounded through `dtype`)."""
        for module in self.modules():
            target = torch.float32 if isinstance(module, (nn.LayerNorm, LogitScale)) else dtype
            for param in module.parameters(recurse=False):
                if param.is_floating_point():
                    param.data = param.data.to(target)
            for name, buffer in module.named_buffers(recurse=False):
                if buffer.is_floating_point():
                    setattr(module, name, buffer.to(target))
        return self

    def precision(self) -> str:
        """The dtype the towers compute in ("float32", "bfloat16", "float16"): what an index records."""
        return str(self._compute_dtype(self.modalities[0])).removeprefix("torch.") if self.modalities else "float32"

    def _compute_dtype(self, modality: Modality) -> torch.dtype:
        """The stem's weight dtype (LayerNorm and scales may stay float32 while the rest is bf16)."""
        stem = self.modality_preprocessors[modality]
        weight = next((p for p in stem.parameters() if p.ndim >= 2), None)
        return weight.dtype if weight is not None else next(self.modality_trunks[modality].parameters()).dtype

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward to save memory (training only)."""
        for trunk in self._trunks():
            trunk.grad_checkpointing = enable

    def compile_towers(self, **options) -> ImageBindModel:
        """`torch.compile` each trunk in place (options go to torch.compile); text compiles with dynamic length."""
        for modality, trunk in self.modality_trunks.items():
            trunk.compile(**({"dynamic": True} if modality == Modality.TEXT else {}), **options)
        return self

    def pack_weights(self, modalities: Iterable[str | Modality]) -> int:
        """Put these towers' fp32 CPU linears on prepacked GEMM weights (inference only, in place); how many.

        See `layers.packed_linear`: a lone item then runs about as fast per item as a batch. Each
        tower packs for its own sequence length (what its stem makes of one item). Text, whose
        calls run at many lengths, is not packed. The tower's other tensors are copied, so none
        of it still points into the checkpoint file's memory map and its pages can be released.
        """
        count = 0
        for modality in map(self._check, modalities):
            if modality == Modality.TEXT:
                raise ValueError("the text tower runs at many lengths: it cannot be packed for one")
            cfg = self.tower_config(modality)
            stem = self.modality_preprocessors[modality]
            probe = torch.zeros(1, cfg.in_channels, *cfg.input_size, dtype=self._compute_dtype(modality),
                                device=next(stem.parameters()).device)  # one item: (1, C, ...)
            with torch.inference_mode():
                rows = int(stem(probe).shape[1])  # (1, N, D): N token rows per sequence
            packed = pack_linears(self.modality_trunks[modality], rows)
            if packed:  # (a bf16 tower packs nothing and is left as it is)
                with torch.no_grad():
                    for part in (stem, self.modality_trunks[modality], self.modality_heads[modality],
                                 self.modality_postprocessors[modality]):
                        _own_memory(part)
            count += packed
        return count

    def no_weight_decay(self) -> set[str]:
        """Parameter names that should not be weight-decayed: all < 2-D ones and position/cls/bias-kv tables."""
        skip = ("cls_token", "pos_embed", "bias_k", "bias_v", "log_logit_scale")
        return {name for name, p in self.named_parameters() if p.ndim < 2 or name.rsplit(".", 1)[-1] in skip}

    def init_weights(self) -> None:
        """Random initialisation for training from scratch (timm/open_clip conventions)."""
        for name, param in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("cls_token", "pos_embed", "bias_k", "bias_v") or "token_embedding" in name:
                nn.init.trunc_normal_(param, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for trunk in self._trunks():
            for block in trunk.blocks:
                cast(Block, block).attn.reset_parameters()

    # ----------------------------------------------------------------- internals

    def _trunks(self) -> list[Transformer]:
        return [cast(Transformer, trunk) for trunk in self.modality_trunks.values()]

    def _embed_items(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        """One embedding per item of a plain batch (no clip axis), postprocessor applied."""
        self._check_shape(modality, x)
        param = next(self.modality_trunks[modality].parameters())
        x = x.to(param.device, non_blocking=True)
        if x.is_floating_point():
            x = x.to(self._compute_dtype(modality))
        if modality == Modality.TEXT:
            eot = x.argmax(dim=-1)  # (B,) end-of-text holds the largest id
            # Causal attention: positions after the longest text's end cannot change any pooled
            # token, so the batch is cut there, rounded up to a length bucket (exact, and much faster).
            x = x[:, : text_run_length(int(eot.max()) + 1, x.shape[1])]
            tokens = self.modality_preprocessors[modality](x)
            tokens = self.modality_trunks[modality](tokens, causal=True)
            pooled = self.modality_heads[modality](tokens, eot)
        else:
            tokens = self.modality_preprocessors[modality](x)
            tokens = self.modality_trunks[modality](tokens)
            pooled = self.modality_heads[modality](tokens)
        return self.modality_postprocessors[modality](pooled)


def _own_memory(module: nn.Module) -> None:
    """Copy the module's parameters and buffers (views into a checkpoint's memory map keep all of it alive)."""
    for sub in module.modules():
        for param in sub.parameters(recurse=False):
            param.data = param.data.clone()
        for name, buffer in list(sub.named_buffers(recurse=False)):
            if buffer is not None and not buffer.is_mkldnn:
                setattr(sub, name, buffer.clone())

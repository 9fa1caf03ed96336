"""The prompt head every row shares, run through a frozen LM once and reused from its key/value cache.

A chat template puts the same few dozen tokens (system prompt, `<|im_start|>user`) before each
media item; with the LM frozen their keys and values never change, so training steps and batched
answers run only the tokens after them (SmolLM2's template: about 30 of 45 positions saved).
Only the positions that carry a loss go through the output head (`logits_to_keep`).
"""
from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import nn

from .template import IGNORE


def cache_argument(model: nn.Module) -> str:
    """The KV-cache keyword of this transformers version: `cache` (5.x) or `past_key_values` (4.x)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def keeps_some_logits(model: nn.Module) -> bool:
    """True when the model's forward takes `logits_to_keep` (the output head on chosen positions only)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def shared_head(ids: torch.Tensor, labels: torch.Tensor | None, slots: torch.Tensor) -> int:
    """Length of the token prefix all rows of `ids` (B, T) share that holds no media slot and no scored token.

    `slots` (M, 2) = (row, start); a prefix of P tokens leaves every slot and every token predicted
    with a loss (label index i is predicted at position i - 1) in the part still to run.
    """
    if ids.shape[0] == 0:
        return 0
    same = (ids == ids[:1]).all(dim=0)  # (T,)
    length = int(same.long().cumprod(0).sum())
    if slots.shape[0]:
        length = min(length, int(slots[:, 1].min()))
    if labels is not None:
        scored = (labels != IGNORE).any(dim=0).nonzero()
        if scored.numel():
            length = min(length, int(scored[0]) - 1)
    return max(min(length, ids.shape[1] - 1), 0)


class PrefixCache:
    """Key/value caches of a frozen LM's prompt heads, by their token ids (the last few kept)."""

    def __init__(self, model: nn.Module, capacity: int = 4) -> None:
        self.model = model
        self.capacity = capacity
        self.argument = cache_argument(model)
        self._caches: dict[tuple[int, ...], Any] = {}

    def expanded(self, head: torch.Tensor, rows: int) -> Any:
        """A fresh cache of the head ids (P,) repeated for `rows` rows (the model appends to what it is given)."""
        key = tuple(int(i) for i in head.tolist())
        cache = self._caches.pop(key, None)
        if cache is None:
            with torch.no_grad():
                out = self.model(input_ids=head.view(1, -1), use_cache=True)
            cache = getattr(out, self.argument)
        self._caches[key] = cache  # most recent last
        while len(self._caches) > self.capacity:
            self._caches.pop(next(iter(self._caches)))
        fresh = copy.deepcopy(cache)
        if rows > 1:
            fresh.batch_repeat_interleave(rows)
        return fresh

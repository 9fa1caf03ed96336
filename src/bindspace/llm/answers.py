"""Greedy answers to one question about many media items at once: evaluations and the demo's report.

Every row is the same prompt with one media item, so the prompt's head runs once (its keys and
values are shared) and the rows decode together, one position per step, until each has stopped.
"""
from __future__ import annotations

from typing import Any

import torch

from .bridge import Bridge, stop_ids
from .prefix import PrefixCache


def answer_each(bridge: Bridge, prompt: str, embeddings: torch.Tensor, *, max_new_tokens: int = 16,
                batch_size: int = 50) -> list[str]:
    """Greedy answer to `prompt` about each of the unit embeddings (N, D): what `bridge.generate` says for each."""
    model, tokenizer = bridge.lm_model, bridge.tokenizer
    turn = bridge.check_prompt(prompt, 1, max_new_tokens)  # its markers match, and it fits with the answer
    ids = torch.tensor(turn.ids, device=bridge.device)
    head = turn.slots[0]  # the tokens before the media item: the same in every row
    prefix = PrefixCache(model, capacity=1)
    argument = prefix.argument
    stop_set = stop_ids(tokenizer, model)
    stop = torch.tensor(sorted(stop_set), dtype=torch.long, device=bridge.device)
    answers: list[str] = []
    with torch.inference_mode():
        for chunk in embeddings.split(batch_size):
            rows = chunk.shape[0]
            options: dict[str, Any] = {argument: prefix.expanded(ids[:head], rows)} if head else {}
            slots = torch.stack([torch.arange(rows), torch.zeros(rows, dtype=torch.long)], dim=1)  # (rows, 2)
            embeds = bridge.inputs_embeds(ids[head:].expand(rows, -1), chunk, slots)
            out = model(inputs_embeds=embeds, use_cache=True, **options)
            picked: list[torch.Tensor] = []
            stopped = torch.zeros(rows, dtype=torch.bool, device=bridge.device)
            for step in range(max_new_tokens):
                token = out.logits[:, -1].argmax(-1)  # (rows,)
                picked.append(token)
                stopped |= torch.isin(token, stop)
                if bool(stopped.all()) or step == max_new_tokens - 1:
                    break
                out = model(input_ids=token[:, None], use_cache=True, **{argument: getattr(out, argument)})
            table = torch.stack(picked, dim=1).tolist() if picked else [[] for _ in range(rows)]  # (rows, steps)
            answers += [_text(tokenizer, row, stop_set) for row in table]
    return answers


def _text(tokenizer: Any, tokens: list[int], stop: set[int]) -> str:
    """The answer up to its first stop token, decoded as `Bridge.generate` decodes it."""
    end = next((i for i, t in enumerate(tokens) if t in stop), len(tokens))
    return str(tokenizer.decode(tokens[:end], skip_special_tokens=True)).strip()

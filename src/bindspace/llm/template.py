"""Prompt templates with a media placeholder, tokenisation around it, and the splice into inputs_embeds.

A prompt may name where each media item goes with `<media>`; without markers the items go
first, in order, before the question (PandaGPT puts its one image before the instruction).
Each item becomes `k` positions; their token embeddings are replaced by the projector's
soft tokens, so the language model reads [text, media tokens, text, ...] as one sequence.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import ConfigError, InputError

MEDIA_TOKEN = "<media>"
IGNORE = -100  # label of positions that carry no loss (prompt, media, padding)


@dataclass
class PromptTemplate:
    """How a turn is laid out: `{prompt}` is the user's text with its media markers."""

    text: str = "### Human: {prompt}\n### Assistant:"
    response_prefix: str = " "  # between the template and the response when training
    add_bos: bool = True  # start with the tokenizer's BOS token when it has one
    add_eos: bool = True  # end training responses with EOS, so generation learns to stop

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptTemplate:
        """Inverse of `to_dict`."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


CHAT = "chat"  # as a recipe's template: the language model's own chat template


def chat_template(tokenizer: Any, source: str = "llm.template") -> PromptTemplate:
    """The LM's own chat template around one user turn, ending where the assistant's answer starts."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{source} = {CHAT!r}: the language model's tokenizer has no chat template; "
                          "write the template out, e.g. \"### Human: {prompt}\\n### Assistant:\"")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "{prompt}"}], add_generation_prompt=True,
                                         tokenize=False)
    # The rendered template already holds whatever start token the model wants; the answer follows directly.
    return PromptTemplate(text=str(text), response_prefix="", add_bos=False)


@dataclass
class EncodedTurn:
    """Token ids with media slots: each slot is the first of its item's `k` placeholder positions."""

    ids: list[int]
    slots: list[int]
    labels: list[int] = field(default_factory=list)  # empty when there is no response


def with_markers(prompt: str, count: int, where: str = "prompt") -> str:
    """The prompt with exactly `count` media markers (prepended when it has none)."""
    have = prompt.count(MEDIA_TOKEN)
    if have == 0:
        return "".join(f"{MEDIA_TOKEN} " for _ in range(count)) + prompt
    if have != count:
        raise InputError(where, f"the prompt has {have} {MEDIA_TOKEN} markers but {count} media items were given")
    return prompt


def encode_turn(tokenizer: Any, template: PromptTemplate, prompt: str, media_count: int, tokens_per_item: int,
                response: str | None = None, where: str = "prompt") -> EncodedTurn:
    """Token ids of template(prompt) with `tokens_per_item` placeholder positions per media item (+ response)."""
    full = template.text.replace("{prompt}", with_markers(prompt, media_count, where))
    pieces = full.split(MEDIA_TOKEN)
    ids: list[int] = []
    bos = getattr(tokenizer, "bos_token_id", None)
    if template.add_bos and bos is not None:
        ids.append(int(bos))
    slots: list[int] = []
    for i, piece in enumerate(pieces):
        if piece:
            ids += _ids(tokenizer, piece)
        if i < len(pieces) - 1:
            slots.append(len(ids))
            ids += [filler_id(tokenizer)] * tokens_per_item
    labels: list[int] = []
    if response is not None:
        answer = _ids(tokenizer, template.response_prefix + response)
        eos = getattr(tokenizer, "eos_token_id", None)
        if template.add_eos and eos is not None:
            answer.append(int(eos))
        labels = [IGNORE] * len(ids) + answer
        ids = ids + answer
    return EncodedTurn(ids, slots, labels)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def filler_id(tokenizer: Any) -> int:
    """Any valid id for the placeholder positions (their embeddings are replaced)."""
    for name in ("pad_token_id", "unk_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def splice(token_embeds: torch.Tensor, media_tokens: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Replace positions of `token_embeds` (B, T, H) with `media_tokens` (M, k, H) at `slots` (M, 2) = (row, start)."""
    if media_tokens.shape[0] == 0:
        return token_embeds
    k = media_tokens.shape[1]
    rows = slots[:, 0:1].expand(-1, k)  # (M, k)
    cols = slots[:, 1:2] + torch.arange(k, device=slots.device)  # (M, k)
    return token_embeds.index_put((rows, cols), media_tokens.to(token_embeds.dtype))

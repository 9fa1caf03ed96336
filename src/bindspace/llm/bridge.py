"""`Bridge`: a frozen bindspace encoder -> projector -> a causal LM; prompts with media in, text out."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BindspaceError, ContextLengthError
from .lm import LanguageModel
from .media import Media, embed_media, media
from .prefix import cache_argument
from .projector import Projector
from .space import SpaceInfo
from .template import EncodedTurn, PromptTemplate, encode_turn, splice

MediaArg = Media | tuple[str, Any]
DEFAULT_NEW_TOKENS = 64


def as_media(items: Iterable[MediaArg] | Mapping[str, Any] | None) -> list[Media]:
    """Media from Media objects, (kind, source) pairs, or a {kind: source or [sources]} mapping."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        pairs: list[tuple[str, Any]] = []
        for kind, value in items.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            pairs += [(kind, v) for v in values]
        items = pairs
    out = []
    for item in items:
        if isinstance(item, Media):
            out.append(item)
        else:
            kind, source = item
            out.append(media(kind, source))
    return out


class Bridge(nn.Module):
    """Embeds media with the frozen encoder, projects each to `k` soft tokens, and lets the LM answer.

    Only the projector (and LoRA adapters on the LM, when present) are trained; the encoder
    and the LM weights stay frozen.
    """

    def __init__(self, encoder: nn.Module | None, projector: Projector, lm: LanguageModel,
                 template: PromptTemplate | None = None, space: SpaceInfo | None = None,
                 lora: Any = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.lm_model = lm.model
        self.lm = lm
        self.template = template or PromptTemplate()
        self.space = space
        self.lora = lora
        if projector.config.out_dim != lm.hidden_size:
            raise BindspaceError(f"the projector outputs {projector.config.out_dim}-d tokens but the language "
                                 f"model's inputs are {lm.hidden_size}-d")

    @property
    def tokenizer(self) -> Any:
        """The LM's tokenizer."""
        return self.lm.tokenizer

    @property
    def device(self) -> torch.device:
        """Where the projector (and LM) run."""
        return next(self.projector.parameters()).device

    # ------------------------------------------------------------------ inputs

    def embed(self, items: Sequence[Media]) -> torch.Tensor:
        """Unit embeddings (M, D) of media items through the frozen encoder."""
        if not items:  # a plain question: no encoder needed
            return torch.zeros(0, self.projector.config.in_dim, device=self.device)
        if self.encoder is None:
            raise BindspaceError("this bridge was built without an encoder: pass embeddings instead of media")
        return embed_media(self.encoder, items)

    def encode(self, prompt: str, media_count: int, response: str | None = None) -> EncodedTurn:
        """Token ids of one turn with the media slots (and response labels when training)."""
        return encode_turn(self.tokenizer, self.template, prompt, media_count, self.projector.config.tokens,
                           response)

    def check_prompt(self, prompt: str, media_count: int, max_new_tokens: int, where: str = "prompt") -> EncodedTurn:
        """The encoded turn, once its markers match the media and it fits the LM with `max_new_tokens` more.

        Cheap (tokenising only): callers run it before decoding media or loading anything heavy.
        InputError for a marker mismatch, ContextLengthError for a prompt too long.
        """
        turn = encode_turn(self.tokenizer, self.template, prompt, media_count, self.projector.config.tokens,
                           where=where)
        limit = self.lm.max_positions
        if limit is not None and len(turn.ids) + max_new_tokens > limit:
            raise ContextLengthError(where, len(turn.ids), max_new_tokens, limit)
        return turn

    def answer_limit(self, prompt: str, media_count: int, max_new_tokens: int | None,
                     default: int = DEFAULT_NEW_TOKENS, where: str = "prompt") -> int:
        """The answer's token limit after `check_prompt`: `max_new_tokens`, else `default` or what the prompt leaves."""
        turn = self.check_prompt(prompt, media_count, max_new_tokens or 1, where)
        if max_new_tokens is not None:
            return max_new_tokens
        positions = self.lm.max_positions
        return default if positions is None else min(default, positions - len(turn.ids))

    def inputs_embeds(self, ids: torch.Tensor, embeddings: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Token embeddings of `ids` (B, T) with the projected `embeddings` (M, D) spliced at `slots` (M, 2)."""
        tokens = self.lm.embed_tokens(ids)  # (B, T, H)
        if embeddings.shape[0] == 0:
            return tokens
        soft = self.projector(embeddings.to(self.device, next(self.projector.parameters()).dtype))  # (M, k, H)
        return splice(tokens, soft, slots.to(tokens.device))

    def prompt_embeds(self, prompt: str, embeddings: torch.Tensor) -> torch.Tensor:
        """(1, T, H) inputs_embeds of a prompt whose media have the given embeddings (M, D)."""
        turn = self.encode(prompt, embeddings.shape[0])
        ids = torch.tensor([turn.ids], device=self.device)
        slots = torch.tensor([[0, s] for s in turn.slots], dtype=torch.long).view(-1, 2)
        return self.inputs_embeds(ids, embeddings, slots)

    # ------------------------------------------------------------------ generation

    def stream(self, prompt: str, media: Iterable[MediaArg] | Mapping[str, Any] | None = None, *,
               embeddings: torch.Tensor | None = None, max_new_tokens: int | None = None, temperature: float = 0.0,
               top_p: float = 1.0, seed: int | None = None, info: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the answer's text piece by piece (greedy when temperature is 0).

        `max_new_tokens` (default: 64, or what the prompt leaves of the LM's positions) must fit
        after the prompt: ContextLengthError otherwise, before any media is embedded.

        `info`, when given, receives prompt_tokens, completion_tokens and finish_reason ("stop": the
        model ended its answer; "length": max_new_tokens was reached).
        """
        items = as_media(media)
        # Before the media are embedded; an over-long position index would also break a CUDA device.
        max_new_tokens = self.answer_limit(prompt, len(items) if embeddings is None else int(embeddings.shape[0]),
                                           max_new_tokens)
        if embeddings is None:
            embeddings = self.embed(items)
        with torch.no_grad():
            embeds = self.prompt_embeds(prompt, embeddings)
        record = info if info is not None else {}
        record.update(prompt_tokens=int(embeds.shape[1]), completion_tokens=0, finish_reason="length")
        tokens = self._token_ids(embeds, max_new_tokens, temperature, top_p, seed, record)
        yield from self._decode_text(tokens)

    def generate(self, prompt: str, media: Iterable[MediaArg] | Mapping[str, Any] | None = None,
                 **options: Any) -> str:
        """The whole answer as one string (same options as `stream`)."""
        return "".join(self.stream(prompt, media, **options)).strip()

    def _token_ids(self, embeds: torch.Tensor, max_new_tokens: int, temperature: float, top_p: float,
                   seed: int | None, record: dict[str, Any]) -> Iterator[int]:
        """Token by token with the KV cache: one full pass over the prompt, then one position per step."""
        model = self.lm_model
        stop = stop_ids(self.tokenizer, model)
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(seed)
        cache_arg = cache_argument(model)
        with torch.no_grad():
            out = model(inputs_embeds=embeds, use_cache=True)
            for _ in range(max_new_tokens):
                logits = out.logits[0, -1].float()  # (V,)
                token = _pick(logits, temperature, top_p, gen)
                if token in stop:
                    record["finish_reason"] = "stop"
                    return
                record["completion_tokens"] += 1
                yield token
                ids = torch.tensor([[token]], device=embeds.device)
                cache = getattr(out, cache_arg, None)
                out = model(input_ids=ids, use_cache=True, **{cache_arg: cache})

    def _decode_text(self, tokens: Iterator[int]) -> Iterator[str]:
        """Text deltas: decode the whole answer so far and yield what is new (multi-token characters wait)."""
        ids: list[int] = []
        sent = ""
        for token in tokens:
            ids.append(token)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue  # an incomplete UTF-8 sequence: wait for its next byte token
            if len(text) > len(sent) and text.startswith(sent):
                yield text[len(sent):]
                sent = text
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if len(text) > len(sent) and text.startswith(sent):
            yield text[len(sent):]


def stop_ids(tokenizer: Any, model: nn.Module) -> set[int]:
    """Token ids that end an answer: the tokenizer's EOS and the model's generation EOS ids."""
    stop: set[int] = set()
    for value in (getattr(tokenizer, "eos_token_id", None),
                  getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            stop.add(value)
        elif isinstance(value, (list, tuple)):
            stop.update(int(v) for v in value)
    return stop


def _pick(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
    """Greedy for temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < top_p  # always keeps the most likely token
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs.cpu(), 1, generator=gen))

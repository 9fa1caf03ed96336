"""Content parts on /v1/embeddings: the request shapes of vLLM, OpenAI-style parts, Cohere Embed v4 and Voyage.

A request becomes a list of *units*, one output vector each; a unit is one or more *parts*
(a text, or one media item). A unit of several parts is embedded part by part and combined
as /v1/search combines query parts: the sum of the parts' unit vectors, renormalised.

- vLLM: `messages: [{"role": "user", "content": [parts]}]` -> one unit: the parts of every
  user message (system and assistant messages are ignored).
- OpenAI-style: `input: [item, ...]`, each item a string, one part, or a list of parts -> one
  unit per item.
- Cohere Embed v4 / Voyage multimodal: `inputs: [{"content": [parts]}, ...]` -> one unit each.

Parts: `{"type": "text", "text"}`, `{"type": "image_url", "image_url": URL | {"url": URL}}`
(also `video_url`, `audio_url`), `{"type": "image_base64", "image_base64": DATA_URL}`,
`{"type": "input_audio", "input_audio": {"data", "format"}}` and bindspace's
`{"type": "input_media", "input_media": {"modality", "data"}}`. Without a request `modality`,
a data: URL's media type decides the kind (image/*, video/*, audio/*), else the part's type
does (image_url: image or video by the bytes). A plain string in `input` is a text unless it
is a data: URL of such a media type. http(s) URLs are fetched only from allowed hosts (fetch.py).
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..tasks.arithmetic import combine_vectors
from .data_url import DATA_URL_FORM, has_data_scheme
from .errors import ApiError, TooLarge
from .fetch import FetchPolicy, fetch, is_remote
from .media import data_url_type, parse_kind
from .state import ServeState

# A part type -> the kind of its media when nothing more specific says ("vision": image or video by the bytes).
_URL_PARTS = {"image_url": "vision", "image_base64": "vision", "video_url": "video", "audio_url": "audio"}
_PART_TYPES = ("text", *_URL_PARTS, "input_audio", "input_media")


@dataclass(frozen=True)
class Part:
    """One text or media item of a unit; media as base64/data: URL text, fetched bytes, or a URL to fetch."""

    kind: str  # text, or a media kind (vision: decided by the bytes)
    value: str | bytes
    name: str  # where it is in the request, for messages: input[1].content[0]
    url: str | None = None  # an allowed remote URL, fetched before embedding
    kind_given: bool = False  # the kind came from the request's modality (a fetched Content-Type must not change it)


Unit = list[Part]


def kind_of_media_type(media_type: str | None) -> str | None:
    """image, video or audio for a media type of that family ("image/png" -> image), else None."""
    family = (media_type or "").split("/")[0]
    return family if family in ("image", "video", "audio") else None


def _fail(message: str) -> ApiError:
    return ApiError(message, status=400, kind="validation")


def _media_part(value: Any, default: str, modality: str | None, name: str, policy: FetchPolicy | None,
                fetching_route: bool = True) -> Part:
    """A media part from base64 text, a data: URL or a remote URL; the kind from modality, media type or default."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{name}: expected a data: URL, base64 text or a URL")
    if is_remote(value):
        if policy is None or not policy.allows(value.strip()):
            hint = " (the server's operator can allow hosts with --fetch-allow)" if fetching_route else ""
            raise _fail(f"{name}: remote URLs are not fetched{hint}; send base64 data or data: URLs")
        return Part(modality or default, b"", name, url=value.strip(), kind_given=modality is not None)
    media_type = data_url_type(value)
    if media_type is None and has_data_scheme(value):
        raise _fail(f"{name}: a data: URL must read {DATA_URL_FORM}")
    kind = modality or kind_of_media_type(media_type) or default
    return Part(kind, value, name, kind_given=modality is not None)


def parse_part(part: Any, name: str, modality: str | None, policy: FetchPolicy | None, *,
               fetching_route: bool = True) -> Part:
    """One content part -> Part; ApiError 400 naming the part when it is malformed.

    `fetching_route=False` for a route that never fetches (chat): its refusal of a URL then does
    not point to --fetch-allow.
    """
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str) or not part["text"].strip():
            raise _fail(f"{name}: a text part needs a non-empty 'text'")
        return Part("text", part["text"], name)
    if kind in _URL_PARTS:
        value = part.get(kind)
        if isinstance(value, dict):  # vLLM / OpenAI: {"url": ...}; Cohere and Voyage: the string itself
            value = value.get("url")
        return _media_part(value, _URL_PARTS[kind], modality, name, policy, fetching_route)
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise _fail(f"{name}: input_audio needs base64 'data'")
        return _media_part(audio["data"], "audio", modality, name, None)
    if kind == "input_media":
        item = part.get("input_media")
        if not isinstance(item, dict) or "modality" not in item:
            raise _fail(f"{name}: input_media needs 'modality' and base64 'data'")
        own = parse_kind(str(item["modality"]))
        if own == "text":
            raise _fail(f"{name}: text goes in a text part")
        return _media_part(item.get("data"), own, own, name, policy, fetching_route)
    raise _fail(f"{name}: unsupported part type {kind!r} (choose from {', '.join(_PART_TYPES)})")


def _parts(content: Any, name: str, modality: str | None, policy: FetchPolicy | None) -> Unit:
    if not isinstance(content, list) or not content:
        raise _fail(f"{name}: expected a non-empty list of content parts")
    return [parse_part(part, f"{name}[{i}]", modality, policy) for i, part in enumerate(content)]


def _string_unit(text: str, name: str, modality: str | None, policy: FetchPolicy | None) -> Unit:
    """A plain string item: text, or media when `modality` says so or it is a data: URL of a media type."""
    if modality == "text":
        return [Part("text", text, name)]
    if modality is not None:
        return [_media_part(text, modality, modality, name, policy)]
    kind = kind_of_media_type(data_url_type(text))
    return [Part(kind, text, name)] if kind else [Part("text", text, name)]


def input_units(value: Any, modality: str | None, policy: FetchPolicy | None) -> list[Unit]:
    """OpenAI's `input` (strings, content parts, or lists of parts) -> one unit per item."""
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail("input: must be a non-empty string or list")
    media_kind = None if modality == "text" else modality
    units: list[Unit] = []
    for i, item in enumerate(value):
        name = f"input[{i}]"
        if isinstance(item, str):
            units.append(_string_unit(item, name, modality, policy))
        elif isinstance(item, dict):
            units.append([parse_part(item, name, media_kind, policy)])
        elif isinstance(item, list) and item and all(isinstance(p, dict) for p in item):
            units.append(_parts(item, name, media_kind, policy))
        elif isinstance(item, (int, list)):
            raise _fail("input: token arrays are not supported; send strings")
        else:
            raise _fail(f"{name}: expected a string, a content part or a list of parts")
    return units


def messages_unit(messages: Any, modality: str | None, policy: FetchPolicy | None) -> list[Unit]:
    """vLLM's `messages` -> one unit: the parts of every user message, in order."""
    if not isinstance(messages, list) or not messages:
        raise _fail("messages: expected a non-empty list of messages")
    media_kind = None if modality == "text" else modality
    unit: Unit = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail(f"messages[{i}]: expected an object with 'role' and 'content'")
        if message.get("role") != "user":
            continue
        content = message.get("content")
        name = f"messages[{i}].content"
        if isinstance(content, str):
            if content.strip():
                unit.append(Part("text", content, name))
        else:
            unit.extend(_parts(content, name, media_kind, policy))
    if not unit:
        raise _fail("messages: no user message with content")
    return [unit]


def inputs_units(inputs: Any, modality: str | None, policy: FetchPolicy | None) -> list[Unit]:
    """Cohere Embed v4 / Voyage `inputs: [{"content": [parts]}]` -> one unit each."""
    if not isinstance(inputs, list) or not inputs:
        raise _fail("inputs: expected a non-empty list of {\"content\": [parts]}")
    media_kind = None if modality == "text" else modality
    units = []
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise _fail(f"inputs[{i}]: expected an object with 'content'")
        units.append(_parts(item.get("content"), f"inputs[{i}].content", media_kind, policy))
    return units


async def _fetched(state: ServeState, part: Part, policy: FetchPolicy) -> Part:
    """A URL part with its body fetched on a decode thread; the Content-Type decides the kind unless given."""
    assert part.url is not None
    loop = asyncio.get_running_loop()
    body, media_type = await loop.run_in_executor(state.pipeline.decode_pool, fetch, part.url, policy, part.name)
    kind = part.kind if part.kind_given else (kind_of_media_type(media_type) or part.kind)
    return replace(part, kind=kind, value=body, url=None)


async def embed_units(state: ServeState, units: Sequence[Unit], policy: FetchPolicy | None) -> np.ndarray:
    """(len(units), D) unit vectors: parts embedded grouped by kind, each unit's parts combined."""
    limits = state.limits
    state.pipeline.check_count(sum(len(unit) for unit in units))
    for index, unit in enumerate(units):
        if len(unit) > limits.max_query_parts:
            raise TooLarge(f"{unit[0].name.split('[')[0]}[{index}]: {len(unit)} parts, more than the limit of "
                           f"{limits.max_query_parts} combined into one vector")
    parts = [part for unit in units for part in unit]
    if any(part.url for part in parts):
        assert policy is not None  # parsing refuses URLs without a policy
        parts = list(await asyncio.gather(*(_fetched(state, p, policy) if p.url else _same(p) for p in parts)))
    groups: dict[tuple[str, bool], list[int]] = {}
    for position, part in enumerate(parts):
        groups.setdefault((part.kind, isinstance(part.value, bytes)), []).append(position)

    async def run(kind: str, raw: bool, positions: list[int]) -> np.ndarray:
        names = [parts[p].name for p in positions]
        if raw:
            return await state.pipeline.embed_bytes(kind, [_raw(parts[p].value) for p in positions], names)
        texts = [str(parts[p].value) for p in positions]  # text, or base64 / data: URL text
        if kind == "text":
            return await state.pipeline.embed_texts(texts, names)
        return await state.pipeline.embed_base64(kind, texts, names)

    results = await asyncio.gather(*(run(kind, raw, positions) for (kind, raw), positions in groups.items()))
    rows: list[np.ndarray] = [np.empty(0)] * len(parts)
    for positions, vectors in zip(groups.values(), results):
        for position, row in zip(positions, vectors):
            rows[position] = row
    out, start = [], 0
    for unit in units:
        own = np.stack(rows[start:start + len(unit)])  # (parts, D)
        start += len(unit)
        out.append(own[0] if len(unit) == 1 else combine_vectors(own, np.ones(len(unit), dtype=np.float32)))
    return np.stack(out).astype(np.float32)  # (units, D)


def _raw(value: str | bytes) -> bytes:
    assert isinstance(value, bytes)  # grouped by isinstance(value, bytes)
    return value


async def _same(part: Part) -> Part:
    return part


def unit_texts(units: Sequence[Unit]) -> list[str]:
    """The text parts of all units (what the token usage counts)."""
    return [str(part.value) for unit in units for part in unit if part.kind == "text"]

"""A query of weighted parts (text or base64 media): its checks and the one embed-and-combine (search, generate)."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ApiError, TooLarge
from .media import parse_kind
from .state import ServeState


def query_weights(state: ServeState, parts: Sequence[Any], weights: Sequence[float] | None) -> list[float]:
    """The weight of each part (given, or each part's own), after the part-count limit and length checks."""
    limit = state.limits.max_query_parts
    if len(parts) > limit:
        raise TooLarge(f"{len(parts)} query parts, more than the limit of {limit}")
    chosen = list(weights) if weights is not None else [p.weight for p in parts]
    if len(chosen) != len(parts):
        raise ApiError(f"got {len(chosen)} weights for {len(parts)} query parts", status=422, kind="validation")
    return chosen


async def embed_part(state: ServeState, index: int, part: Any) -> np.ndarray:
    """One query part -> (1, D)."""
    kind = parse_kind(part.modality)
    name = part.name or f"parts[{index}]"
    if kind == "text":
        if part.text is None or not part.text.strip():
            raise ApiError(f"{name}: a text part needs a non-empty 'text'", status=422, kind="validation")
        return await state.pipeline.embed_texts([part.text], [name])
    if not part.data:
        raise ApiError(f"{name}: a {kind} part needs base64 'data'", status=422, kind="validation")
    return await state.pipeline.embed_base64(kind, [part.data], [name])


async def embed_query(state: ServeState, parts: Sequence[Any], weights: Sequence[float]) -> np.ndarray:
    """The parts embedded concurrently and combined by weight: one unit vector (D,) (embedding arithmetic)."""
    from ..tasks.arithmetic import combine_vectors

    vectors = await asyncio.gather(*(embed_part(state, i, part) for i, part in enumerate(parts)))
    return combine_vectors(np.concatenate(vectors), np.asarray(weights, dtype=np.float32))

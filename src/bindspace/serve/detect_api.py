"""POST /v1/detect: boxes in request images for classes given as query parts (as in /v1/search), read-only."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from .auth import require_read
from .errors import TooLarge, Unavailable
from .media import decode_base64
from .query import embed_query
from .routes import with_timeout
from .schemas import QueryPart
from .state import serve_state

router = APIRouter()
DETECTOR = "detector"
MAX_IMAGES = 16


class DetectClass(BaseModel):
    """One class: a name and query parts combined into its embedding (texts, audio, images ...)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="label in the answer (default: the text, or class i)")
    parts: list[QueryPart] = Field(min_length=1, description="query parts, combined by weight as in /v1/search")


class DetectRequest(BaseModel):
    """Images (base64) and the classes to find in them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "images": ["<base64 PNG>"], "classes": [{"name": "dog", "parts": [{"modality": "text", "text": "a dog"}]}]}]})

    images: list[str] = Field(min_length=1, max_length=MAX_IMAGES, description="base64 images")
    classes: list[DetectClass] = Field(min_length=1, description="what to look for")
    threshold: float = Field(0.3, ge=0.0, le=1.0)
    iou: float = Field(0.5, ge=0.0, le=1.0)
    max_detections: int = Field(100, ge=1, le=1000)


def detector_extras(path: str, model: Any) -> dict[str, Any]:
    """The loaded detector for `create_app(extras=...)`; refused at start-up when its space is not the model's."""
    from ..detect import load_detector
    from ..errors import BindspaceError

    detector = load_detector(path)
    if int(model.embed_dim) != detector.space.embed_dim:
        raise BindspaceError(f"--detector {path}: trained in a {detector.space.embed_dim}-d space; the served model "
                             f"embeds in {int(model.embed_dim)} dimensions")
    return {DETECTOR: detector}


@router.post("/v1/detect", tags=["detect"], dependencies=[Depends(require_read)],
             summary="Find and name objects in images; classes are any mix of texts and media.")
async def detect(body: DetectRequest, request: Request) -> dict:
    """Each class's parts are embedded and combined; the detector's regions are scored against them."""
    state = serve_state(request)
    detector = state.extras.get(DETECTOR)
    if detector is None:
        raise Unavailable("this server has no detector: start it with `bindspace serve --detector DIR`")
    parts = sum(len(c.parts) for c in body.classes)
    if parts > state.limits.max_query_parts:
        raise TooLarge(f"{parts} query parts, more than the limit of {state.limits.max_query_parts}")
    names = [c.name or _default_name(c, i) for i, c in enumerate(body.classes)]
    pictures = [decode_base64(data, f"images[{i}]", state.limits.max_item_bytes) for i, data in enumerate(body.images)]
    started = time.perf_counter()

    async def run() -> list:
        rows = []
        for i, cls in enumerate(body.classes):
            named = [p.model_copy(update={"name": p.name or f"classes[{i}].parts[{j}]"})
                     for j, p in enumerate(cls.parts)]
            rows.append(await embed_query(state, named, [p.weight for p in cls.parts]))
        return await asyncio.to_thread(detector.detect, pictures, np.stack(rows), names, threshold=body.threshold,
                                       iou=body.iou, max_detections=body.max_detections,
                                       names=[f"images[{i}]" for i in range(len(pictures))])

    found = await with_timeout(request, run())
    return {"took_ms": round((time.perf_counter() - started) * 1000, 3),
            "images": [{"index": i, "detections": [d.to_dict() for d in dets]} for i, dets in enumerate(found)]}


def _default_name(cls: DetectClass, index: int) -> str:
    first = cls.parts[0]
    if first.modality == "text" and first.text:
        return first.text
    return first.name or f"class {index}"

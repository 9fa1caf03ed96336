"""OpenAI-compatible chat completions through an LLM bridge: POST /v1/chat/completions.

`bindspace serve --bridge DIR` includes this router. The last user message is the question;
its content parts carry media as base64 (never URLs to fetch), read by the part reader of
/v1/embeddings (`content_parts.parse_part`: one data: URL grammar, whose media type decides
the kind):

- `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`: image or video
- `{"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}}`: audio
- `{"type": "input_media", "input_media": {"modality": "depth", "data": "..."}}`: any modality
- `{"type": "text", "text": "..."}`: the question (`<media>` marks where each item goes)

The prompt is checked first (its markers, and its tokens plus `max_tokens` against the language
model's positions: 400 `context_length_exceeded`); then the media are embedded by the served
model (whose fingerprint must be the bridge's space) through the shared batcher, and the
language model answers on its own thread, one answer at a time (requests queue on the event
loop). An answer stops at its next token when the request's timeout passes or, streaming, when
the client goes away. `stream: true` answers with server-sent events as OpenAI does.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ContextLengthError, InputError
from .auth import require_read
from .body import read_json
from .content_parts import parse_part
from .errors import ApiError, TooLarge
from .exclusive import ExclusiveWorker
from .openai_api import OpenAIRoute
from .routes import with_timeout
from .state import ServeState, serve_state

router = APIRouter(route_class=OpenAIRoute, tags=["openai"], dependencies=[Depends(require_read)])
BRIDGE = "bridge"  # ServeState.extras key of the loaded Bridge
WORKER = "bridge_worker"  # ServeState.extras key of the ExclusiveWorker that runs the language model
MAX_NEW_TOKENS = 1024


class ChatRequest(BaseModel):
    """OpenAI's chat completion request (the fields a bridge can honour; others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field("bridge", description="any name: the server answers with the bridge it serves")
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = Field(1, ge=1, description="choices to return: only 1 is supported (more is refused, never ignored)")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"only n=1 is supported (one answer per request), got {value}")
        return value


def parse_messages(messages: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str, str]]]:
    """The last user message as (question text, [(kind, base64 data, name)]); ApiError 400 when malformed."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise ApiError("messages: no user message", status=400, kind="validation")
    index = len(messages) - 1 - messages[::-1].index(users[-1])
    content = users[-1].get("content")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise ApiError(f"messages[{index}].content: expected a string or a list of parts", status=400,
                       kind="validation")
    texts: list[str] = []
    media: list[tuple[str, str, str]] = []
    for i, part in enumerate(content):
        where = f"messages[{index}].content[{i}]"
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])  # an empty text part is no error here: the question is all of them joined
            continue
        # The grammar of /v1/embeddings' parts, without fetching: chat embeds only what the request carries.
        parsed = parse_part(part, where, None, None, fetching_route=False)
        assert isinstance(parsed.value, str)  # without a policy, media parts are base64 or data: URL text
        media.append((parsed.kind, parsed.value, where))
    return "\n".join(texts), media


async def _embed(state: ServeState, media: list[tuple[str, str, str]]) -> torch.Tensor:
    """(M, D) unit embeddings through the served model, in order."""
    state.pipeline.check_count(len(media))
    # Concurrently: the items decode in parallel and the batcher can put same-tower items in one call.
    rows = await asyncio.gather(*(state.pipeline.embed_base64(kind, [data], [name]) for kind, data, name in media))
    if not rows:
        return torch.zeros(0, int(state.model.embed_dim))
    return torch.from_numpy(np.concatenate(rows).astype(np.float32))


@router.post("/v1/chat/completions", summary="OpenAI-compatible chat: questions about media of any modality.",
             response_model=None)
async def chat_completions(request: Request) -> Any:
    """A `chat.completion` object, or `chat.completion.chunk` server-sent events with `stream: true`."""
    state = serve_state(request)
    bridge = state.extras.get(BRIDGE)
    if bridge is None:
        raise ApiError("this server has no bridge: start it with --bridge DIR", status=404, kind="no_bridge")
    started = time.monotonic()
    body = ChatRequest.model_validate(await read_json(request, empty_status=400))
    question, media = parse_messages(body.messages)
    if not question.strip() and not media:
        raise ApiError("the user message has neither text nor media", status=400, kind="validation")
    max_chars = state.limits.max_text_chars
    if len(question) > max_chars:
        raise TooLarge(f"messages: the question has {len(question)} characters, more than the limit of {max_chars}")
    requested = body.max_completion_tokens or body.max_tokens
    if requested is not None and requested > MAX_NEW_TOKENS:
        raise ApiError(f"max_tokens: at most {MAX_NEW_TOKENS} new tokens per answer, got {requested}", status=400,
                       kind="validation")
    limit = await _check_prompt(state, bridge, question, len(media), requested)  # before any media is decoded
    embeddings = await with_timeout(request, _embed(state, media))
    options = {"embeddings": embeddings, "max_new_tokens": limit, "temperature": body.temperature,
               "top_p": body.top_p, "seed": body.seed}
    worker: ExclusiveWorker = state.extras.setdefault(WORKER, ExclusiveWorker("chat"))
    name = state.extras.get("bridge_name", "bridge")
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        deadline = started + state.limits.request_timeout_s
        return StreamingResponse(_events(worker, bridge, question, options, ident, created, name, deadline),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    info: dict[str, Any] = {}

    def answer(stop: threading.Event) -> str:
        pieces = []
        for piece in bridge.stream(question, info=info, **options):
            pieces.append(piece)
            if stop.is_set():  # the request timed out: free the model at this token
                break
        return "".join(pieces).strip()

    text = await with_timeout(request, worker.run(answer))
    return {
        "id": ident, "object": "chat.completion", "created": created, "model": name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": info.get("finish_reason", "stop"), "logprobs": None}],
        "usage": _usage(info),
    }


def _usage(info: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(info.get("prompt_tokens", 0)), int(info.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _check_prompt(state: ServeState, bridge: Any, question: str, media_count: int, requested: int | None) -> int:
    """The answer's token limit, once the markers match and the prompt fits (tokenised on a decode thread).

    With max_tokens given, prompt + max_tokens must fit the language model's positions (400
    `context_length_exceeded` otherwise); without it the answer may use what the prompt leaves.
    """
    loop = asyncio.get_running_loop()
    try:
        limit: int = await loop.run_in_executor(state.pipeline.decode_pool, bridge.answer_limit, question,
                                                media_count, requested, MAX_NEW_TOKENS, "messages")
    except ContextLengthError as err:
        raise ApiError(str(err), status=400, kind="context_length_exceeded") from None
    except InputError as err:
        raise ApiError(str(err), status=400, kind="validation") from None
    return limit


_END = object()  # the answer thread's last queue entry


async def _events(worker: ExclusiveWorker, bridge: Any, question: str, options: dict[str, Any], ident: str,
                  created: int, name: str, deadline: float) -> AsyncIterator[str]:
    """SSE lines: a role chunk, content chunks, a finish chunk with usage, then [DONE].

    The answer is made on the worker's thread and handed over piece by piece; when the client goes
    away (this generator is cancelled or closed) or the deadline passes, the thread stops at its next
    token and the model is free for the next request.
    """
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(data)}\n\n"

    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[Any] = asyncio.Queue()
    info: dict[str, Any] = {}

    def hand_over(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(pieces.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is reading any more
            pass

    def answer(stop: threading.Event) -> None:
        try:
            for piece in bridge.stream(question, info=info, **options):
                hand_over(piece)
                if stop.is_set():
                    return
        finally:
            hand_over(_END)

    job = asyncio.ensure_future(worker.run(answer))
    try:
        yield chunk({"role": "assistant", "content": ""})
        started = False
        while True:
            try:
                piece = await asyncio.wait_for(pieces.get(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                error = {"message": "the answer took longer than the server's timeout", "type": "timeout",
                         "param": None, "code": "timeout"}
                yield f"data: {json.dumps({'error': error})}\n\n"
                return
            if piece is _END:
                break
            if not started:  # the answer's first token usually carries the separating space
                piece = piece.lstrip()
                started = bool(piece)
                if not piece:
                    continue
            yield chunk({"content": piece})
        await job  # the answer thread's exception, if it failed
        yield chunk({}, info.get("finish_reason", "stop"), usage=_usage(info))
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()  # sets the job's stop event (or drops it from the queue): the model moves on


def bridge_encoder(bridge_dir: str) -> str | None:
    """The encoder checkpoint a bridge names (what `serve --bridge` loads when no --checkpoint is given)."""
    from ..llm.bridge_dir import named_encoder

    return named_encoder(bridge_dir)


def bridge_extras(bridge_dir: str, model: Any, fingerprint: str | None, *, llm: str | None = None,
                  device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The `create_app(extras=...)` entries that serve a bridge, the served model as its encoder.

    The served model's weights fingerprint must be the bridge's space (CheckpointError otherwise).
    """
    from pathlib import Path

    from ..llm.bridge_dir import load_bridge
    from ..quiet import quiet_hf

    quiet_hf()
    if fingerprint is None:
        from ..index.fingerprint import model_fingerprint

        fingerprint = model_fingerprint(model)
    bridge = load_bridge(bridge_dir, llm=llm, encoder=model, encoder_fingerprint=fingerprint, device=device,
                         dtype=dtype)
    return {BRIDGE: bridge, "bridge_name": Path(bridge.lm.path).name or "bridge"}

"""Request items to vectors: decode in a thread pool at the model's own input sizes, then embed through the batcher.

The batcher returns the model's forward outputs (the original contract: text times its
logit scale, audio x20, ...); `scaled=False` callers get them L2-normalised, which is
exactly `model.encode`.

`fixed_size_calls` keeps an item's vector bit-identical whatever it is batched with: matrix
kernels pick different code paths by batch size (on CPU a batch of 1 or 2 differs from 3+ in
the last bits; on GPUs the kernel choice follows every shape), so every model call for one
(tower, item shape) runs the same number of items (`call_size`). On a CPU the towers whose one
item is already hundreds of token rows (all but text) run item by item: their throughput hardly
grows with the batch there, so a lone request pays for no padding. Elsewhere, and for text,
calls are padded with copies of the first item. Texts are cut to their length bucket
(`model.contract.text_run_length`) before batching, so the batcher only stacks texts of one
bucket and a long batchmate cannot change a short text's length, hence its bits.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..kinds import tower_of
from ..modality import Modality
from ..model.contract import clips_per_item, has_clip_axis, text_run_length
from .batcher import MicroBatcher
from .errors import ApiError, TooLarge
from .limits import Limits
from .media import decode_base64, load_media, tokenize_text

# Up to this many characters per request, texts are tokenized on the event loop (cheaper than a thread hop).
INLINE_TEXT_CHARS = 2000

# One decoding job: (function, *args) -> (tower, resolved kind, model input without batch axis).
DecodeJob = tuple[Any, ...]
# A batch forward: (tower, stacked inputs (B, ...)) -> (B, D).
Forward = Callable[[Modality, torch.Tensor], torch.Tensor]


def call_size(modality: Modality, item_shape: Sequence[int], max_batch: int, device_type: str) -> int:
    """Items per model call for one tower, item shape and device kind (a pure function, tested for each branch).

    CPU, every tower but text: 1. An image is 257 token rows of ViT-H by itself, an audio item 3
    clips, a video 15: the matrix products are already large, so batching gains little and
    padding a lone request to `max_batch` items would multiply its cost. Text (up to 77 rows)
    and every tower on a GPU: `max_batch` rows, counting clips (an audio item of 3 clips takes
    3), videos one by one (15 clips are a batch by themselves).
    """
    if device_type == "cpu" and Modality(modality) != Modality.TEXT:
        return 1
    if Modality(modality) == Modality.VISION and has_clip_axis(modality, len(item_shape)):
        return 1
    return max(1, max_batch // clips_per_item(modality, item_shape))


def packs_weights(modality: Modality, device_type: str, packing_available: bool) -> bool:
    """Whether a served tower runs on prepacked GEMM weights (a pure function, tested for each branch).

    CPU towers that run item by item (`call_size` 1), when torch has MKL's packed GEMM: a plain
    linear repacks its weight on every call, a fifth of a lone ViT-H image's time, which batching
    used to hide; packed once, a lone item runs about as fast per item as a batch, in the same bits
    whatever its company. Not text (its calls vary in length and are batched anyway), nor GPUs.
    """
    return packing_available and device_type == "cpu" and Modality(modality) != Modality.TEXT


def pack_served_towers(model: Any, packing_available: bool) -> list[Modality]:
    """Pack the towers `packs_weights` picks, in place; those packed (a model without `pack_weights`: none)."""
    if not callable(getattr(model, "pack_weights", None)):
        return []
    device_type = device_type_of(model)
    towers = [Modality(m) for m in model.modalities if packs_weights(Modality(m), device_type, packing_available)]
    return [tower for tower in towers if model.pack_weights([tower]) > 0]  # bf16 or fp16 towers pack nothing


def fixed_size_calls(forward: Forward, max_batch: int, device_type: str) -> Forward:
    """`forward` run in calls of exactly `call_size` items (the last one padded): results independent of batching."""

    def run(modality: Modality, batch: torch.Tensor) -> torch.Tensor:
        size = call_size(modality, tuple(batch.shape[1:]), max_batch, device_type)
        outputs = []
        for start in range(0, batch.shape[0], size):
            chunk = batch[start:start + size]  # (n, ...)
            count = chunk.shape[0]
            if count < size:  # copies of a real item: padding never feeds the model inputs it was not made for
                chunk = torch.cat([chunk, chunk[:1].expand(size - count, *chunk.shape[1:])])  # (size, ...)
            outputs.append(forward(modality, chunk)[:count])
        return torch.cat(outputs)  # (B, D)

    return run


def device_type_of(model: Any) -> str:
    """"cpu", "cuda", ...: where the model's parameters live (a model without parameters counts as a CPU one)."""
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device.type if isinstance(first, torch.Tensor) else "cpu"


def bucketed_ids(ids: torch.Tensor) -> torch.Tensor:
    """One text's ids (L,) cut to its length bucket (L_bucket,): the length it runs at, whatever its company."""
    end = int(ids.argmax())  # end-of-text holds the largest id
    return ids[: text_run_length(end + 1, ids.shape[0])]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (floored at 1e-12, as torch's normalize): forward outputs -> encode's."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class Pipeline:
    """Shared by the v1 API, the OpenAI embeddings endpoint and the Weaviate drop-in."""

    def __init__(self, model: Any, batcher: MicroBatcher, limits: Limits) -> None:
        self.model = model
        self.batcher = batcher
        self.limits = limits
        self._decode_pool: ThreadPoolExecutor | None = None
        self.options_for: Callable[[str], dict[str, Any]] = lru_cache(maxsize=None)(self._options_for)

    @property
    def decode_pool(self) -> ThreadPoolExecutor:
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(max_workers=self.limits.decode_threads,
                                                   thread_name_prefix="bindspace-decode")
        return self._decode_pool

    def close(self) -> None:
        """Stop the decoding threads."""
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
            self._decode_pool = None

    def _options_for(self, kind: str) -> dict[str, Any]:
        """Loader keyword arguments that fit this model's stem for a concrete kind (image size, IMU length...)."""
        from ..embedding.loading import geometry

        return geometry(kind, self.model.tower_config(tower_of(kind)))

    def check_tower(self, kind: str) -> Modality:
        """The tower a request kind needs; 422 when the model was loaded without it."""
        tower = tower_of(kind)
        if tower not in set(self.model.modalities):
            have = ", ".join(str(m) for m in self.model.modalities)
            raise ApiError(f"this server's model has no {tower} tower (it has: {have})", status=422,
                           kind="unsupported_modality")
        return tower

    def check_count(self, count: int) -> None:
        """413 for requests with more items than allowed."""
        if count > self.limits.max_items:
            raise TooLarge(f"{count} items in one request, more than the limit of {self.limits.max_items}")

    def tokenize(self, texts: Sequence[str], names: Sequence[str]) -> list[torch.Tensor]:
        """Token ids per text, cut to its length bucket (L_bucket,), with the text limits applied."""
        length = int(self.options_for("text")["context_length"])
        return [bucketed_ids(tokenize_text(t, n, self.limits.max_text_chars, length)) for t, n in zip(texts, names)]

    async def embed_texts(self, texts: Sequence[str], names: Sequence[str] | None = None, *,
                          scaled: bool = False) -> np.ndarray:
        """Texts -> (n, D): unit vectors, or the model's forward outputs with `scaled`."""
        self.check_tower("text")
        labels = _names(names, len(texts), "text")
        if sum(len(t) for t in texts if isinstance(t, str)) <= INLINE_TEXT_CHARS:
            tokens = self.tokenize(texts, labels)
        else:  # long texts take a while to tokenize: keep the event loop free for other requests
            tokens = await asyncio.get_running_loop().run_in_executor(self.decode_pool, self.tokenize, texts, labels)
        return _finish(await self.batcher.embed(Modality.TEXT, tokens), scaled)

    async def embed_base64(self, kind: str, items: Sequence[str], names: Sequence[str] | None = None, *,
                           scaled: bool = False) -> np.ndarray:
        """Base64 media of one kind -> (n, D); base64 decoding runs on the decode threads too."""
        self.check_tower(kind)
        labels = _names(names, len(items), kind)
        max_bytes = self.limits.max_item_bytes

        def decode(item: str, name: str) -> tuple[Modality, str, torch.Tensor]:
            return load_media(kind, decode_base64(item, name, max_bytes), name, self.options_for)

        return await self.embed_decoded([(decode, item, name) for item, name in zip(items, labels)], scaled=scaled)

    async def embed_bytes(self, kind: str, blobs: Sequence[bytes], names: Sequence[str], *,
                          scaled: bool = False) -> np.ndarray:
        """Raw media of one kind -> (n, D); the first bad item fails the request with its one-line message."""
        self.check_tower(kind)
        jobs = [(load_media, kind, blob, name, self.options_for) for blob, name in zip(blobs, names)]
        return await self.embed_decoded(jobs, scaled=scaled)

    async def embed_decoded(self, jobs: Sequence[DecodeJob], *, scaled: bool = False) -> np.ndarray:
        """Run decoding jobs (function, *args) on the decode threads, then embed the results together."""
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(*(loop.run_in_executor(self.decode_pool, *job) for job in jobs))
        tower = decoded[0][0]
        tensors: list[torch.Tensor] = [tensor for _, _, tensor in decoded]
        return _finish(await self.batcher.embed(tower, tensors), scaled)


def _finish(vectors: np.ndarray, scaled: bool) -> np.ndarray:
    return vectors if scaled else unit_rows(vectors)


def _names(names: Sequence[str] | None, count: int, kind: str) -> list[str]:
    """Display names for error messages: the caller's, else `texts[3]` / `items[3]` style."""
    if names is not None and len(names) != count:
        raise ApiError(f"got {len(names)} names for {count} items", status=422, kind="bad_request")
    if names is not None:
        return [str(n)[:200] for n in names]
    label = "texts" if kind == "text" else kind
    return [f"{label}[{i}]" for i in range(count)]

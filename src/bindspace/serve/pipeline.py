"""Request items to vectors: decode in a thread pool, then embed through the micro-batcher."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..modality import Modality
from .batcher import MicroBatcher
from .errors import ApiError, TooLarge
from .limits import Limits
from .media import MEDIA_KINDS, decode_base64, load_media, tokenize_text

# Up to this many characters per request, texts are tokenized on the event loop (cheaper than a thread hop).
INLINE_TEXT_CHARS = 2000


class Pipeline:
    """Shared by the v1 API and the Weaviate drop-in."""

    def __init__(self, model, batcher: MicroBatcher, limits: Limits) -> None:
        self.model = model
        self.batcher = batcher
        self.limits = limits
        self._decode_pool: ThreadPoolExecutor | None = None

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

    def check_tower(self, kind: str) -> Modality:
        """The tower a request kind needs; 422 when the model was loaded without it."""
        tower = Modality.TEXT if kind == "text" else MEDIA_KINDS[kind]
        if tower not in set(self.model.modalities):
            have = ", ".join(str(m) for m in self.model.modalities)
            raise ApiError(f"this server's model has no {tower} tower (it has: {have})", status=422,
                           kind="unsupported_modality")
        return tower

    def check_count(self, count: int) -> None:
        """413 for requests with more items than allowed."""
        if count > self.limits.max_items:
            raise TooLarge(f"{count} items in one request, more than the limit of {self.limits.max_items}")

    async def embed_texts(self, texts: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        """Texts -> (n, D)."""
        self.check_tower("text")
        names = _names(names, len(texts), "text")

        def tokenize_all() -> list[torch.Tensor]:
            return [tokenize_text(t, n, self.limits.max_text_chars) for t, n in zip(texts, names)]  # each (77,)

        if sum(len(t) for t in texts if isinstance(t, str)) <= INLINE_TEXT_CHARS:
            tokens = tokenize_all()
        else:  # long texts take a while to tokenize: keep the event loop free for other requests
            tokens = await asyncio.get_running_loop().run_in_executor(self.decode_pool, tokenize_all)
        return await self.batcher.embed(Modality.TEXT, tokens)

    async def embed_base64(self, kind: str, items: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        """Base64 media of one kind -> (n, D); base64 decoding runs on the decode threads too."""
        self.check_tower(kind)
        names = _names(names, len(items), kind)
        max_bytes = self.limits.max_item_bytes

        def decode(item: str, name: str) -> tuple[Modality, str, torch.Tensor]:
            return load_media(kind, decode_base64(item, name, max_bytes), name)

        return await self._embed_decoded([(decode, item, name) for item, name in zip(items, names)])

    async def embed_bytes(self, kind: str, blobs: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        """Raw media of one kind -> (n, D); the first bad item fails the request with its one-line message."""
        self.check_tower(kind)
        return await self._embed_decoded([(load_media, kind, blob, name) for blob, name in zip(blobs, names)])

    async def _embed_decoded(self, jobs: list[tuple]) -> np.ndarray:
        """Run decoding jobs (function, *args) on the decode threads, then embed the results together."""
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(*(loop.run_in_executor(self.decode_pool, *job) for job in jobs))
        tower = decoded[0][0]
        tensors: list[torch.Tensor] = [tensor for _, _, tensor in decoded]
        return await self.batcher.embed(tower, tensors)

def _names(names: Sequence[str] | None, count: int, kind: str) -> list[str]:
    """Display names for error messages: the caller's, else `texts[3]` / `items[3]` style."""
    if names is not None and len(names) != count:
        raise ApiError(f"got {len(names)} names for {count} items", status=422, kind="bad_request")
    if names is not None:
        return [str(n)[:200] for n in names]
    label = "texts" if kind == "text" else kind
    return [f"{label}[{i}]" for i in range(count)]

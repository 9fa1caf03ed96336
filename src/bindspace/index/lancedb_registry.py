"""A LanceDB embedding function named "bindspace": rows and queries of any modality embedded automatically.

    import bindspace.index.lancedb_registry  # registers "bindspace" with LanceDB
    from lancedb.embeddings import get_registry
    from lancedb.pydantic import LanceModel, Vector

    func = get_registry().get("bindspace").create(model="imagebind_huge", device="cpu")

    class Media(LanceModel):
        path: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()

    table = lancedb.connect("db").create_table("media", schema=Media)
    table.add([{"path": "dog.jpg"}, {"path": "bark.wav"}])       # embedded on insert
    table.search("a dog").limit(5).to_pydantic(Media)            # a text query
    table.search("other_bark.wav").limit(5).to_pydantic(Media)   # a query by a file

A value that names an existing file is embedded as the kind the indexer detects for it
(image, video, audio, depth, thermal, imu); any other string is a text. `kind` forces the
source column's kind (e.g. "text" for a caption column; "vision" for image or video bytes);
queries are always detected, so a caption table can be searched with an image file.
`model` is a preset name (real weights are downloaded, as `bindspace embed` does), a model
directory (`bindspace convert`/`train`/`demo` output) or, with `checkpoint`, a preset with
those weights. Vectors are unit-norm, so LanceDB's default L2 ranking is the cosine ranking.
The registration is made on import: import this module before opening a table that uses it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from lancedb.embeddings import EmbeddingFunction, register

from ..errors import InputError


@lru_cache(maxsize=4)
def _load(model: str, checkpoint: str | None, device: str) -> Any:
    """The model for (name or directory, checkpoint, device), loaded once per process."""
    from ..model import create_model

    if checkpoint is None and os.path.isdir(model):
        return create_model(checkpoint=model, device=device)
    if checkpoint is not None:
        return create_model(model, checkpoint=checkpoint, device=device)
    return create_model(model, pretrained=True, device=device)


def value_kind(value: Any) -> str:
    """The kind of one value: a file's detected modality, "vision" for bytes, else "text"."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "vision"
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(repr(value)[:80], f"expected a file path or a text, not {type(value).__name__}")
    if os.path.isfile(value):
        from .detect import detect_modality

        kind = detect_modality(value)
        if kind is None:
            raise InputError(str(value), "not a media file bindspace can embed")
        return kind
    if os.path.isdir(value):
        raise InputError(str(value), "is a directory, not a file")
    return "text"


@register("bindspace")
class BindspaceEmbeddings(EmbeddingFunction):
    """bindspace's model as a LanceDB embedding function: text, image, video, audio, depth, thermal, imu."""

    model: str = "imagebind_huge"
    checkpoint: str | None = None
    device: str = "cpu"
    kind: str | None = None  # the source column's kind; None: decided per value
    batch_size: int = 32
    max_retries: int = 0  # a local model has nothing to retry

    def ndims(self) -> int:
        """The model's embedding width."""
        return int(self._model().embed_dim)

    def _model(self) -> Any:
        return _load(self.model, self.checkpoint, self.device)

    def _values(self, given: Any) -> list[Any]:
        """A list of values from one value (a text, a path, bytes) or a column (list, Arrow array)."""
        if isinstance(given, (str, bytes, bytearray, os.PathLike)):
            return [given]
        return list(self.sanitize_input(given))

    def _embed(self, values: Sequence[Any], kinds: Sequence[str]) -> list[Any]:
        """Unit vectors in input order; values are grouped by kind so each kind is embedded in batches."""
        from ..embedding import Embedder

        embedder = Embedder(self._model(), batch_size=self.batch_size, progress=False)
        out: list[np.ndarray] = [np.empty(0)] * len(values)
        for kind in dict.fromkeys(kinds):
            positions = [i for i, k in enumerate(kinds) if k == kind]
            items = [os.fspath(values[i]) if isinstance(values[i], os.PathLike) else values[i] for i in positions]
            result = embedder.embed(kind, items)  # on_error="raise": the first bad value's one-line InputError
            for position, row in zip(positions, result.vectors):
                out[position] = row
        return out

    def compute_source_embeddings(self, source: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """The vectors of a source column's values."""
        values = self._values(source)
        kinds = [self.kind] * len(values) if self.kind else [value_kind(value) for value in values]
        return self._embed(values, kinds)

    def compute_query_embeddings(self, query: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """The vector of a query: a file is embedded as its kind, anything else as a text."""
        values = self._values(query)
        return self._embed(values, [value_kind(value) for value in values])

    # LanceDB retries every exception with exponential backoff (meant for remote APIs); a bad file would
    # wait minutes and come back wrapped. A local model fails at once with its own message.
    def compute_source_embeddings_with_retry(self, *args: Any, **kwargs: Any) -> list[Any]:
        return self.compute_source_embeddings(*args, **kwargs)

    def compute_query_embeddings_with_retry(self, *args: Any, **kwargs: Any) -> list[Any]:
        return self.compute_query_embeddings(*args, **kwargs)

"""`generate()`: a weighted query of texts and media -> images from an embedding-conditioned generator."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .pipelines import GenerateOptions, ImagePipeline, check_width, open_pipeline
from .query import Part, embed_query, query_towers


@dataclass
class Generation:
    """The images, the unit query vector they were drawn from, and what the pipeline did with it."""

    images: list[Any]
    query: np.ndarray
    pipeline: dict[str, Any] = field(default_factory=dict)


def load_embedder(pipeline: ImagePipeline, parts: Sequence[Part], *, checkpoint: str | None = None,
                  model: str | None = None, device: str = "cpu", dtype: str = "float32") -> Any:
    """An Embedder for the query's towers: `checkpoint`, else the one the generator records, else the default."""
    import torch

    from ..embedding import Embedder
    from ..model import create_model
    from ..model.checkpoint import is_model_dir

    if dtype == "int8":
        from ..export import int8_cache  # noqa: F401 - registers the int8 builder create_model uses
    source = checkpoint or pipeline.checkpoint
    towers = query_towers(parts)
    if source:
        name = model or (None if is_model_dir(source) else "imagebind_huge")
        loaded = create_model(name, checkpoint=source, modalities=towers, device=device,
                              dtype=dtype if dtype == "int8" else getattr(torch, dtype))
    else:
        loaded = create_model(model or "imagebind_huge", pretrained=True, modalities=towers, device=device,
                              dtype=dtype if dtype == "int8" else getattr(torch, dtype))
    return Embedder(loaded, batch_size=1, progress=False)


def generate(pipeline: str | Path | ImagePipeline, parts: Sequence[Part], weights: Sequence[float] | None = None,
             *, embedder: Any = None, options: GenerateOptions | None = None, **settings: Any) -> Generation:
    """Embed the query (search's arithmetic), check its width, and draw images from the pipeline.

    `parts` are (kind, value) pairs such as ("audio", "rain.wav") or ("text", "at night");
    `embedder` is an Embedder or ImageBindModel (default: the model the generator records, else
    imagebind_huge). `settings` are GenerateOptions fields (seed, steps, guidance, noise_level,
    prompt, negative_prompt, num_images, height, width, progress).
    """
    from ..tasks.arithmetic import as_embedder, embedder_model

    pipe = pipeline if not isinstance(pipeline, (str, Path)) else open_pipeline(pipeline)
    opts = options or GenerateOptions(**settings)
    if embedder is None:
        embedder = load_embedder(pipe, parts)
    embedder = as_embedder(embedder, batch_size=1)
    model = embedder_model(embedder)
    check_width(pipe, int(model.embed_dim), getattr(model.config, "name", "the embedding model"))
    query = embed_query(embedder, parts, weights)
    images = pipe.generate(query, opts)
    return Generation(images, query, pipe.describe())

"""What people do with the shared space: zero-shot classification, retrieval, embedding arithmetic.

- `ZeroShotClassifier(model, labels, templates=None, modality=None)`: label any modality by text.
- `search(queries, gallery, k)`: exact top-k by dot product, chunked so memory stays bounded.
- `metrics`: recall@k, mean average precision, top-k accuracy, median rank.
- `combine({modality: items or vectors}, weights, embedder=...)`: one query from several modalities.
- `embed_video(model, videos, audio=True)`: video embeddings from frames plus the audio track.
- `bindspace.tasks.eval`: the paper's zero-shot benchmarks (`bindspace eval`).
"""
from __future__ import annotations

from . import metrics
from .arithmetic import combine, combine_vectors
from .multimodal_video import VideoEmbeddings, embed_video
from .retrieval import SearchResult, search
from .templates import default_templates
from .zeroshot import Classification, Prediction, ZeroShotClassifier

__all__ = [
    "ZeroShotClassifier", "Prediction", "Classification", "default_templates",
    "search", "SearchResult", "metrics",
    "combine", "combine_vectors",
    "embed_video", "VideoEmbeddings",
]

"""Zero-shot classification: label any modality by comparing it with text prompts.

Each label becomes a *prototype*: the unit text embeddings of the label in every prompt
template, averaged and renormalised (CLIP's prompt ensembling). An item's probabilities
are softmax(text logit scale x cosine similarity) over the prototypes, the same
temperature the model was trained with for text pairs.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BindspaceError
from .arithmetic import as_embedder, embedder_model
from .retrieval import as_matrix
from .templates import check_templates, default_templates, prompts


@dataclass(frozen=True)
class Prediction:
    """The top labels of one item, best first, with their probabilities over all labels."""

    name: str
    index: int  # position of the item in the input list
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    label_indices: tuple[int, ...]

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.labels[0]

    @property
    def probability(self) -> float:
        """The probability of the most probable label."""
        return self.probabilities[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: name and the top labels with probabilities."""
        return {
            "name": self.name,
            "predictions": [
                {"label": label, "probability": prob} for label, prob in zip(self.labels, self.probabilities)
            ],
        }


@dataclass
class Classification:
    """Predictions for the items that could be read, and an error for each one that could not."""

    predictions: list[Prediction]
    errors: list[Any] = field(default_factory=list)  # embed.ItemError(index, name, message)


def check_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """Labels as a tuple of distinct, non-empty strings (surrounding spaces removed)."""
    if isinstance(labels, str):
        raise BindspaceError("labels must be a list of strings, not one string (split it first)")
    out = tuple(str(label).strip() for label in labels)
    if len(out) < 1:
        raise BindspaceError("no labels given (need at least one)")
    if any(not label for label in out):
        raise BindspaceError("labels must not be empty strings")
    seen: set[str] = set()
    for label in out:
        if label in seen:
            raise BindspaceError(f"duplicate label {label!r}")
        seen.add(label)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed in float64 for stability."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class ZeroShotClassifier:
    """Classify items of any modality by text labels the model never trained on.

    `model` is an ImageBindModel (with the text tower and the towers to classify) or an
    Embedder. `templates` (each with one `{}`) replaces the default prompts; without it the
    defaults for `modality` are used (templates.py), and when `modality` is None too, each
    call uses the defaults of the modality it classifies. Prototypes are computed once
    per template set and cached.
    """

    def __init__(
        self,
        model: Any,
        labels: Sequence[str],
        templates: Sequence[str] | None = None,
        modality: str | None = None,
        *,
        batch_size: int = 32,
        logit_scale: float | None = None,
    ) -> None:
        self.labels: tuple[str, ...] = check_labels(labels)
        self.modality = modality
        if modality is not None:
            default_templates(modality)  # validates the name early
        self._templates = check_templates(templates) if templates is not None else None
        self.embedder = as_embedder(model, batch_size=batch_size)
        self._logit_scale = logit_scale
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    # ---------------------------------------------------------------- prototypes

    def templates_for(self, modality: str | None = None) -> tuple[str, ...]:
        """The prompt templates used when classifying `modality`."""
        if self._templates is not None:
            return self._templates
        return default_templates(self.modality if self.modality is not None else modality)

    @property
    def templates(self) -> tuple[str, ...]:
        """The templates for this classifier's modality (generic ones when it has none)."""
        return self.templates_for(None)

    def prototypes_for(self, modality: str | None = None) -> np.ndarray:
        """Unit prototype per label (L, D) float32, for the templates `modality` uses."""
        templates = self.templates_for(modality)
        if templates not in self._cache:
            texts = prompts(self.labels, templates)
            result = self.embedder.embed("text", texts, on_error="raise")
            vectors = np.asarray(result.vectors, dtype=np.float64)
            per_label = vectors.reshape(len(self.labels), len(templates), -1)  # (L*T, D) -> (L, T, D)
            mean = per_label.mean(axis=1)  # (L, D)
            norms = np.linalg.norm(mean, axis=1, keepdims=True)
            if (norms < 1e-6).any():
                bad = self.labels[int(np.argmin(norms))]
                raise BindspaceError(f"the prompts for label {bad!r} average to a zero vector")
            self._cache[templates] = (mean / norms).astype(np.float32)
        return self._cache[templates]

    @property
    def prototypes(self) -> np.ndarray:
        """Unit prototype per label (L, D) for this classifier's templates."""
        return self.prototypes_for(None)

    @property
    def logit_scale(self) -> float:
        """Inverse softmax temperature: the text tower's learned logit scale unless overridden."""
        if self._logit_scale is None:
            model = embedder_model(self.embedder)
            try:
                self._logit_scale = float(model.logit_scale("text"))
            except (AttributeError, BindspaceError):
                raise BindspaceError("zero-shot classification needs a model with the text tower") from None
        return self._logit_scale

    # ---------------------------------------------------------------- scoring

    def similarities(self, vectors: object, *, modality: str | None = None) -> np.ndarray:
        """Cosine similarity of each (unit) vector with each prototype: (N, L)."""
        matrix = as_matrix(vectors, "vectors")
        protos = self.prototypes_for(modality)
        if matrix.shape[1] != protos.shape[1]:
            raise BindspaceError(f"vectors have {matrix.shape[1]} dimensions, the text prototypes {protos.shape[1]}")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.maximum(norms, 1e-12)) @ protos.T  # (N, D) @ (D, L)

    def probabilities(self, vectors: object, *, modality: str | None = None) -> np.ndarray:
        """softmax(logit scale x cosine) over the labels: (N, L) float64, rows sum to 1."""
        return softmax(self.logit_scale * self.similarities(vectors, modality=modality))

    def predict_vectors(
        self,
        vectors: object,
        k: int = 5,
        *,
        modality: str | None = None,
        names: Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
    ) -> list[Prediction]:
        """Top-k labels for precomputed embeddings (N, D) (or one vector (D,))."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise BindspaceError(f"k must be a positive integer, got {k!r}")
        probs = self.probabilities(vectors, modality=modality)
        n = probs.shape[0]
        names = list(names) if names is not None else [f"#{i}" for i in range(n)]
        indices = list(indices) if indices is not None else list(range(n))
        if len(names) != n or len(indices) != n:
            raise BindspaceError(f"got {len(names)} names / {len(indices)} indices for {n} vectors")
        k = min(int(k), len(self.labels))
        # stable sort on -p: equal probabilities keep label order, so results are reproducible
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            Prediction(
                name=names[row],
                index=int(indices[row]),
                labels=tuple(self.labels[j] for j in order[row]),
                probabilities=tuple(float(probs[row, j]) for j in order[row]),
                label_indices=tuple(int(j) for j in order[row]),
            )
            for row in range(n)
        ]

    def classify(
        self, modality: str, items: Sequence[Any], k: int = 5, *, names: Sequence[str] | None = None
    ) -> Classification:
        """Top-k labels for every readable item; unreadable ones are reported in `errors`, not raised."""
        return self._run(modality, items, k, names, on_error="skip")

    def predict(
        self, modality: str, items: Sequence[Any], k: int = 5, *, names: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Top-k labels for every item (paths, bytes, file objects, ...); a bad item raises InputError."""
        return self._run(modality, items, k, names, on_error="raise").predictions

    def _run(
        self, modality: str, items: Sequence[Any], k: int, names: Sequence[str] | None, on_error: str
    ) -> Classification:
        if isinstance(items, (str, bytes)):
            items = [items]
        items = list(items)
        self.prototypes_for(modality)  # before the items: a bad label set fails fast
        if not items:
            return Classification([], [])
        result = self.embedder.embed(modality, items, on_error=on_error, names=names)
        if len(result.vectors) == 0:
            return Classification([], list(result.errors))
        predictions = self.predict_vectors(
            result.vectors, k, modality=modality, names=list(result.names), indices=list(result.indices)
        )
        return Classification(predictions, list(result.errors))

"""Shared pieces of the benchmark harness: dataset descriptions, options, the report, layout checks.

A benchmark module reads its dataset's published on-disk layout into either a
`ClassificationSet` (items with a class each: zero-shot accuracy) or a `RetrievalSet`
(gallery items and text queries that each point at one of them: text->X recall). The
runners in `runner.py` embed, score and fill an `EvalReport`.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import BindspaceError


class LayoutError(BindspaceError):
    """The dataset root is missing a file or folder its benchmark needs (one-line message)."""


@dataclass(frozen=True)
class EvalOptions:
    """User options shared by all benchmarks (each module documents what it reads)."""

    limit: int | None = None  # evaluate only this many source files, evenly spaced over the dataset
    split: str | None = None  # benchmark-specific: a split folder name or a split list file
    class_names: str | None = None  # a file mapping class folders/ids to prompt names (imagenet)
    seed: int = 0  # for protocols with random choices (llvip background crops)


@dataclass
class Sample:
    """One item to embed. `source` is what the Embedder reads (path, array, image), or a
    zero-argument callable that returns it (lazy crops, decoded arrays); it may raise InputError."""

    name: str
    source: Any
    target: int = -1  # class index (classification) or -1
    group: str | None = None  # e.g. "fold 3" for per-fold numbers

    def load(self) -> Any:
        """The item for the Embedder."""
        return self.source() if callable(self.source) else self.source


@dataclass(frozen=True)
class Skipped:
    """An item left out of the evaluation and why."""

    name: str
    reason: str


@dataclass
class ClassificationSet:
    """Items with one class each; `prompt_names[c]` is what class c is called in the prompts."""

    samples: list[Sample]
    classes: list[str]  # class ids as the dataset names them (folder, category, scene)
    prompt_names: list[str]
    skipped: list[Skipped] = field(default_factory=list)  # found but unusable before embedding
    total: int = 0  # items the dataset lists (before --limit)
    notes: dict[str, Any] = field(default_factory=dict)  # protocol details for the report


@dataclass
class RetrievalSet:
    """Gallery items and text queries; `query_targets[q]` is the gallery position query q describes."""

    gallery: list[Sample]
    queries: list[str]
    query_targets: list[int]
    skipped: list[Skipped] = field(default_factory=list)
    total: int = 0  # gallery items the dataset lists (before --limit)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: how to read it, which tower it needs, and what the paper reports."""

    name: str
    title: str
    task: str  # "classification" or "retrieval"
    kind: str  # Embedder kind of the items: "audio", "depth", "thermal", "image"
    primary: str  # the metric the paper reports, a key of EvalReport.metrics
    paper: dict[str, float]  # ImageBind paper numbers (percent), same keys as metrics
    load: Callable[[Path, EvalOptions], ClassificationSet | RetrievalSet]
    layout: str  # one-paragraph description of the expected files, for --help and errors
    unit: str = "items"  # what --limit counts


@dataclass
class EvalReport:
    """The result of one benchmark run; `to_dict` is the JSON report."""

    benchmark: str
    title: str
    task: str
    modality: str
    root: str
    metrics: dict[str, float]  # percent (ranks: positions)
    primary: str
    paper: dict[str, float]
    counts: dict[str, int]
    templates: list[str] | None = None
    groups: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. per fold
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    unit: str = "items"  # what counts["listed"] counts (e.g. LLVIP lists images but evaluates crops)

    @property
    def ours(self) -> float | None:
        """Our value of the paper's metric."""
        return self.metrics.get(self.primary)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        from ... import __version__

        return {
            "benchmark": self.benchmark,
            "title": self.title,
            "task": self.task,
            "modality": self.modality,
            "root": self.root,
            "primary_metric": self.primary,
            "ours": self.ours,
            "paper_value": self.paper.get(self.primary),
            "metrics": self.metrics,
            "paper": self.paper,
            "counts": self.counts,
            "listed_unit": self.unit,
            "groups": self.groups,
            "per_class": self.per_class,
            "templates": self.templates,
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
            "notes": self.notes,
            "options": self.options,
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "bindspace_version": __version__,
        }


# ------------------------------------------------------------------ helpers for loaders


def evenly_spaced(n: int, limit: int | None) -> list[int]:
    """Positions of `limit` items spread evenly over n (all of them without a limit)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise BindspaceError(f"--limit must be a positive number, got {limit}")
    # floor(i * n / limit): strictly increasing, first is 0, spans folds/classes stored in order
    return [i * n // limit for i in range(limit)]


def require_file(path: Path, what: str, benchmark: str) -> Path:
    """The path, or a LayoutError naming what is missing."""
    if not path.is_file():
        raise LayoutError(f"{benchmark}: missing {what} ({path})")
    return path


def require_dir(path: Path, what: str, benchmark: str) -> Path:
    """The folder, or a LayoutError naming what is missing."""
    if not path.is_dir():
        raise LayoutError(f"{benchmark}: missing {what} ({path})")
    return path


def first_existing(root: Path, candidates: Sequence[str], *, want_dir: bool) -> Path | None:
    """The first of root/candidate that exists as a folder (want_dir) or file."""
    for candidate in candidates:
        path = root / candidate
        if (path.is_dir() if want_dir else path.is_file()):
            return path
    return None


def read_csv(path: Path, columns: Iterable[str], benchmark: str) -> list[dict[str, str]]:
    """Rows of a CSV file with a header that must include `columns`."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: tolerate a BOM
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise LayoutError(
                    f"{benchmark}: {path.name} lacks column(s) {', '.join(missing)} "
                    f"(has: {', '.join(header) or 'no header'})"
                )
            reader.fieldnames = header
            return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{benchmark}: {path} is not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise LayoutError(f"{benchmark}: {path} is not a valid CSV file ({exc})") from None
    except OSError as exc:
        raise LayoutError(f"{benchmark}: cannot read {path} ({exc.strerror or exc})") from None


def prompt_name(class_id: str) -> str:
    """A class id as it reads in a sentence: underscores become spaces."""
    return " ".join(class_id.replace("_", " ").split())


def file_sample(path: Path, name: str, target: int = -1, group: str | None = None) -> Sample | Skipped:
    """A sample for an existing non-empty file, or why it cannot be one."""
    if not path.is_file():
        return Skipped(name, "file not found")
    if os.path.getsize(path) == 0:
        return Skipped(name, "empty file")
    return Sample(name, str(path), target, group)

"""Run a benchmark: embed its items in bounded chunks, score them, and fill an EvalReport."""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BindspaceError, InputError
from .. import metrics
from ..zeroshot import ZeroShotClassifier
from .base import Benchmark, ClassificationSet, EvalOptions, EvalReport, RetrievalSet, Sample, Skipped

# Samples decoded and embedded per Embedder call: bounds the memory held by lazily
# produced items (crops, decoded arrays) whatever the dataset size. Plain files are read
# by the Embedder itself, so they go in larger calls (fewer worker start-ups).
CHUNK = 256
FILE_CHUNK = 1024
# Text queries scored against the gallery at once: bounds the (queries x gallery) matrix.
QUERY_CHUNK = 1024
RECALL_KS = (1, 5, 10)


def _bar(total: int, desc: str, progress: bool | None):
    from tqdm.auto import tqdm

    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, desc=desc, unit="item", disable=not enabled or total == 0, file=sys.stderr,
                dynamic_ncols=True, delay=2.0 if progress is None else 0.0)


def embed_samples(
    embedder: Any, kind: str, samples: Sequence[Sample], *, progress: bool | None = None
) -> tuple[np.ndarray, list[int], list[Skipped]]:
    """Unit vectors of the samples that could be read, their positions in `samples`, and the rest."""
    chunks: list[np.ndarray] = []
    rows: list[int] = []
    skipped: list[Skipped] = []
    chunk = CHUNK if any(callable(s.source) for s in samples) else FILE_CHUNK
    with _bar(len(samples), f"embed {kind}", progress) as bar:
        for start in range(0, len(samples), chunk):
            items, names, positions = [], [], []
            for pos in range(start, min(start + chunk, len(samples))):
                sample = samples[pos]
                try:
                    items.append(sample.load())
                except InputError as exc:
                    skipped.append(Skipped(sample.name, exc.problem))
                    continue
                except (OSError, ValueError) as exc:  # a loader that did not wrap its error
                    skipped.append(Skipped(sample.name, str(exc) or type(exc).__name__))
                    continue
                names.append(sample.name)
                positions.append(pos)
            if items:
                result = embedder.embed(kind, items, on_error="skip", names=names)
                chunks.append(np.asarray(result.vectors, dtype=np.float32))
                rows.extend(positions[i] for i in result.indices)
                skipped.extend(Skipped(err.name, err.message) for err in result.errors)
            bar.update(min(chunk, len(samples) - start))
    dim = chunks[0].shape[1] if chunks else 0
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return vectors, rows, skipped


def run(
    bench: Benchmark,
    root: str | Path,
    embedder: Any,
    *,
    options: EvalOptions = EvalOptions(),
    templates: Sequence[str] | None = None,
    progress: bool | None = None,
    data: ClassificationSet | RetrievalSet | None = None,
) -> EvalReport:
    """Read the dataset at `root` (unless `data` is given), evaluate, and return the report."""
    started = time.perf_counter()
    if data is None:
        data = bench.load(Path(root), options)
    if isinstance(data, ClassificationSet):
        report = run_classification(bench, data, embedder, templates, progress=progress)
    else:
        report = run_retrieval(bench, data, embedder, progress=progress)
    report.root = str(root)
    report.unit = bench.unit
    report.options = {"limit": options.limit, "split": options.split, "class_names": options.class_names,
                      "seed": options.seed}
    report.seconds = time.perf_counter() - started
    return report


def _percent(value: float) -> float:
    return round(100.0 * float(value), 4)


def run_classification(
    bench: Benchmark, data: ClassificationSet, embedder: Any, templates: Sequence[str] | None, *,
    progress: bool | None = None,
) -> EvalReport:
    """Zero-shot accuracy: each item's class is the prototype it is most similar to."""
    n_classes = len(data.classes)
    if n_classes < 2:
        raise BindspaceError(f"{bench.name}: need at least 2 classes, found {n_classes}")
    # Several classes may share a prompt name (ImageNet has two "crane"s): they share one
    # prototype, tie, and both count as wrong on ties (see metrics), which is the honest result.
    unique = list(dict.fromkeys(data.prompt_names))
    proto_of_class = np.asarray([unique.index(name) for name in data.prompt_names])
    classifier = ZeroShotClassifier(embedder, unique, templates, modality=bench.kind)
    classifier.prototypes_for(bench.kind)  # text first: a problem with the prompts shows before the long part
    vectors, rows, skipped = embed_samples(embedder, bench.kind, data.samples, progress=progress)
    skipped = data.skipped + skipped
    counts = {
        "listed": data.total,
        "selected": len(data.samples) + len(data.skipped),
        "evaluated": len(rows),
        "skipped": len(skipped),
        "classes": n_classes,
    }
    report = EvalReport(
        benchmark=bench.name, title=bench.title, task=bench.task, modality=bench.kind, root="",
        metrics={}, primary=bench.primary, paper=dict(bench.paper), counts=counts,
        templates=list(classifier.templates_for(bench.kind)), skipped=skipped, notes=dict(data.notes),
    )
    duplicates = sorted({n for n in data.prompt_names if data.prompt_names.count(n) > 1})
    if duplicates:
        report.notes["shared_prompt_names"] = duplicates
    if not rows:
        return report
    scores = classifier.similarities(vectors)[:, proto_of_class]  # (N, L) -> (N, C)
    targets = np.asarray([data.samples[r].target for r in rows])
    report.metrics = _accuracies(scores, targets, n_classes)
    correct = metrics.ranks(scores, targets) == 1
    per_class_top1 = []
    for c, class_id in enumerate(data.classes):
        mine = targets == c
        if mine.any():
            report.per_class[class_id] = {"top1": _percent(correct[mine].mean()), "n": int(mine.sum())}
            per_class_top1.append(correct[mine].mean())
    report.metrics["mean_per_class_top1"] = _percent(np.mean(per_class_top1))
    groups = [data.samples[r].group for r in rows]
    for group in sorted({g for g in groups if g is not None}, key=_natural):
        mine = np.asarray([g == group for g in groups])
        report.groups[group] = {**_accuracies(scores[mine], targets[mine], n_classes), "n": int(mine.sum())}
    return report


def _accuracies(scores: np.ndarray, targets: np.ndarray, n_classes: int) -> dict[str, float]:
    out = {"top1": _percent(metrics.top_k_accuracy(scores, targets, 1))}
    if n_classes > 5:  # with 5 or fewer classes every item is trivially in the top 5
        out["top5"] = _percent(metrics.top_k_accuracy(scores, targets, 5))
    return out


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key that puts "fold 10" after "fold 9"."""
    return tuple(int(part) if part.isdigit() else part for part in text.split())


def run_retrieval(
    bench: Benchmark, data: RetrievalSet, embedder: Any, *, progress: bool | None = None
) -> EvalReport:
    """Text->gallery recall: each caption should rank its own item first among all gallery items."""
    vectors, rows, skipped = embed_samples(embedder, bench.kind, data.gallery, progress=progress)
    skipped = data.skipped + skipped
    row_of = {pos: row for row, pos in enumerate(rows)}
    keep = [q for q, target in enumerate(data.query_targets) if target in row_of]
    counts = {
        "listed": data.total,
        "selected": len(data.gallery) + len(data.skipped),
        "evaluated": len(rows),
        "skipped": len(skipped),
        "queries": len(data.queries),
        "queries_evaluated": len(keep),
    }
    report = EvalReport(
        benchmark=bench.name, title=bench.title, task=bench.task, modality=bench.kind, root="",
        metrics={}, primary=bench.primary, paper=dict(bench.paper), counts=counts,
        skipped=skipped, notes=dict(data.notes),
    )
    if not keep:
        return report
    texts = embedder.embed("text", [data.queries[q] for q in keep], on_error="raise").vectors
    targets = np.asarray([row_of[data.query_targets[q]] for q in keep])
    ranks = np.concatenate([
        metrics.ranks(texts[s : s + QUERY_CHUNK] @ vectors.T, targets[s : s + QUERY_CHUNK])  # (q, G) per chunk
        for s in range(0, len(keep), QUERY_CHUNK)
    ])
    for k in RECALL_KS:
        report.metrics[f"R@{k}"] = _percent((ranks <= k).mean())
    # one relevant item per query: its AP@10 is 1/rank inside the top 10, else 0
    report.metrics["mAP@10"] = _percent(np.where(ranks <= 10, 1.0 / ranks, 0.0).mean())
    report.metrics["median_rank"] = float(np.median(ranks))
    report.metrics["mean_rank"] = round(float(ranks.mean()), 4)
    return report

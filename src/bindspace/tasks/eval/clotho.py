"""Clotho v2: zero-shot text->audio retrieval on the evaluation split (1,045 clips x 5 captions).

Layout (the Zenodo release, unpacked):

    ROOT/clotho_captions_evaluation.csv   columns file_name,caption_1,...,caption_5
    ROOT/evaluation/<file_name>           from clotho_audio_evaluation.7z

Every caption is a query; its clip is the one relevant item among all evaluation clips.
Reported: R@1, R@5, R@10 (the paper's number is R@10), mAP@10, median rank. A clip that
is missing or unreadable is skipped with its captions.
"""
from __future__ import annotations

from pathlib import Path

from .base import (
    EvalOptions,
    LayoutError,
    RetrievalSet,
    Sample,
    Skipped,
    evenly_spaced,
    file_sample,
    first_existing,
    read_csv,
    require_dir,
    require_file,
)

NAME = "clotho"
CSV_NAME = "clotho_captions_evaluation.csv"
AUDIO_DIRS = ("evaluation", "clotho_audio_evaluation/evaluation", "audio/evaluation")


def load(root: Path, options: EvalOptions) -> RetrievalSet:
    """Read the evaluation captions and list the clips they describe."""
    require_dir(root, "dataset root", NAME)
    rows = read_csv(require_file(root / CSV_NAME, CSV_NAME, NAME), ("file_name", "caption_1"), NAME)
    audio = first_existing(root, AUDIO_DIRS, want_dir=True)
    if audio is None:
        raise LayoutError(f"{NAME}: missing evaluation/ audio folder under {root} (from clotho_audio_evaluation.7z)")
    if not rows:
        raise LayoutError(f"{NAME}: {CSV_NAME} lists no clips")
    caption_columns = sorted((c for c in rows[0] if c.startswith("caption_")), key=lambda c: int(c.split("_")[1])
                             if c.split("_")[1].isdigit() else 0)
    gallery: list[Sample] = []
    skipped: list[Skipped] = []
    queries: list[str] = []
    targets: list[int] = []
    for i in evenly_spaced(len(rows), options.limit):
        row = rows[i]
        sample = file_sample(audio / row["file_name"], row["file_name"])
        if isinstance(sample, Skipped):
            skipped.append(sample)
            continue
        captions = [row[c] for c in caption_columns if row.get(c)]
        if not captions:
            skipped.append(Skipped(row["file_name"], "no captions in the CSV"))
            continue
        gallery.append(sample)
        queries.extend(captions)
        targets.extend([len(gallery) - 1] * len(captions))
    return RetrievalSet(
        gallery=gallery, queries=queries, query_targets=targets, skipped=skipped, total=len(rows),
        notes={"direction": "text->audio", "captions_per_clip": len(caption_columns)},
    )

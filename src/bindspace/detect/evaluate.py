"""Box recall and precision of detections against ground truth (IoU match of the right class, greedy)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from .boxes import box_iou
from .detector import Detection


class Truth(Protocol):
    """One image's ground truth: boxes (K, 4) in the image's pixels (x0, y0, x1, y1) and class indices (K,)."""

    @property
    def boxes(self) -> np.ndarray:
        """(K, 4) boxes."""

    @property
    def labels(self) -> np.ndarray:
        """(K,) class indices."""


def recall_precision(truths: Sequence[Truth], found: Sequence[Sequence[Detection]],
                     iou: float = 0.5) -> tuple[float, float]:
    """Share of objects found (right class, IoU >= `iou`) and of detections that found one (greedy, best first)."""
    hits = total = detections = 0
    for truth_of, dets in zip(truths, found):
        taken = np.zeros(len(truth_of.labels), dtype=bool)
        truth = torch.from_numpy(np.asarray(truth_of.boxes, dtype=np.float32))
        for det in dets:  # best score first
            overlap = box_iou(torch.tensor([det.box]), truth)[0] if len(truth) else torch.zeros(0)
            match = [k for k in range(len(taken)) if not taken[k] and truth_of.labels[k] == det.class_index
                     and overlap[k] >= iou]
            if match:
                taken[max(match, key=lambda k: float(overlap[k]))] = True
        hits += int(taken.sum())
        total += len(taken)
        detections += len(dets)
    return hits / max(total, 1), hits / max(detections, 1)

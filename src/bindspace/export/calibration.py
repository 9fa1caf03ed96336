"""Calibration inputs from the user's media: `KIND:PATH` specs -> one model-input batch per tower."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import BindspaceError, InputError
from ..kinds import has_extension, parse_kind, resolve_kind, tower_of
from ..modality import Modality
from ..model.contract import flatten_clips

MAX_ITEMS = 64  # per tower: ranges settle within a few dozen items, and each costs a forward pass


def parse_spec(spec: str) -> tuple[str, Path]:
    """"audio:clips/" -> ("audio", Path("clips/")); a one-line error otherwise."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise BindspaceError(f"--calibrate {spec!r}: expected KIND:PATH, e.g. audio:clips/ or text:prompts.txt")
    try:
        kind = parse_kind(kind)
    except ValueError as exc:
        raise BindspaceError(f"--calibrate {spec!r}: {exc}") from None
    if not Path(path).exists():
        raise BindspaceError(f"{path}: no such file or directory (--calibrate {kind})")
    return kind, Path(path)


def load_calibration(specs: list[str], model: Any, max_items: int = MAX_ITEMS) -> dict[Modality, torch.Tensor]:
    """Decode the media named by `specs` into model inputs, grouped by tower (at most `max_items` rows each).

    Text: a .txt file, one text per line. Vision rows are 2-frame clips (an image is repeated);
    audio and video contribute one row per clip.
    """
    from ..embedding.loading import DECODE_ERRORS, Unit, as_failure, geometry, make_loader
    from ..preprocess.tokenizer import tokenize

    rows: dict[Modality, list[torch.Tensor]] = {}
    for spec in specs:
        kind, path = parse_spec(spec)
        tower = tower_of(kind)
        if tower not in model.modalities:
            raise BindspaceError(f"--calibrate {spec}: the model has no {tower} tower")
        cfg = model.tower_config(tower)
        if kind == "text":
            lines = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
            rows.setdefault(tower, []).append(tokenize(lines[:max_items], context_length=cfg.input_size[0]))
            continue
        files = [path]
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and has_extension(p, kind))
        if not files:
            raise BindspaceError(f"{path}: no {kind} files in it (--calibrate {kind})")
        for i, file in enumerate(files[:max_items]):
            concrete = resolve_kind(kind, file)
            load = make_loader(concrete, geometry(concrete, cfg), None)
            try:
                batch, _ = load(str(file), Unit(i, str(file)))
            except DECODE_ERRORS as exc:  # the file's problem; a bug in a loader keeps its traceback
                failure = as_failure(exc, str(file))
                raise InputError(failure.source, failure.problem) from None
            rows.setdefault(tower, []).append(plain_rows(tower, batch, cfg.patch_size[0]))
    return {tower: torch.cat(parts)[:max_items] for tower, parts in rows.items()}


def plain_rows(tower: Modality, batch: torch.Tensor, frames: int) -> torch.Tensor:
    """(N, ...) or (N, S, ...) model input -> (R, ...) plain rows, clips as items (vision as (R, C, T, H, W) clips)."""
    x = flatten_clips(tower, batch)
    if tower == Modality.VISION and x.ndim == 4:  # images (R, C, H, W) -> clips
        x = x.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()
    return x

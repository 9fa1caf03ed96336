"""File integrity: a file's streamed sha256, and a check of it remembered in a `.verified` stamp."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .fsio import atomic_write


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 24) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified(file: Path, expected: str) -> bool:
    """Check a file's sha256, hashing only once per (size, mtime): the result is remembered in a stamp file."""
    stat = file.stat()
    stamp = file.with_name(file.name + ".verified")
    key = f"{stat.st_size} {stat.st_mtime_ns} {expected}"
    try:
        if stamp.read_text() == key:
            return True
    except OSError:
        pass
    if sha256_file(file) != expected:
        return False
    try:
        atomic_write(stamp, key)
    except OSError:  # a read-only model directory: verify again next time
        pass
    return True

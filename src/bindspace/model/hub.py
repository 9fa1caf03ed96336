"""Finding the released weights: environment variable, cache directory, then download."""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from ..fsio import commit_file


@dataclass(frozen=True)
class Release:
    """Where a preset's released weights live, and what the file must be (None: not known to us)."""

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None


RELEASED: dict[str, Release] = {
    "imagebind_huge": Release("https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth", "imagebind_huge.pth"),
}
ENV_CHECKPOINT = "BINDSPACE_CHECKPOINT"
ENV_CACHE = "BINDSPACE_CACHE"


def cache_dir() -> Path:
    """`$BINDSPACE_CACHE`, else `$XDG_CACHE_HOME/bindspace`, else `~/.cache/bindspace`."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bindspace"


def resolve_pretrained(name: str, *, download: bool = True) -> Path:
    """Path of the released weights for `name`: $BINDSPACE_CHECKPOINT, the cache, or a download."""
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        if not Path(env).exists():
            raise CheckpointError(f"{ENV_CHECKPOINT}={env}: no such file or directory")
        return Path(env)
    if name not in RELEASED:
        raise CheckpointError(
            f"no released weights for {name!r} (released: {', '.join(RELEASED)}); "
            "give the weights with --checkpoint PATH (Python: checkpoint=PATH)"
        )
    release = RELEASED[name]
    url, filename = release.url, release.filename
    cache = cache_dir()
    for candidate in (cache / name, cache / filename):  # a converted model directory wins over the .pth
        if candidate.exists():
            return candidate
    if not download:
        raise CheckpointError(_how_to_get(name, url, cache / filename))
    try:
        return download_file(url, cache / filename, size=release.size, sha256=release.sha256)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CheckpointError(f"download failed ({exc}).\n" + _how_to_get(name, url, cache / filename)) from None


def _how_to_get(name: str, url: str, target: Path) -> str:
    return (
        f"The {name} weights are not available offline. Download {url} on a connected machine and either "
        f"put it at {target}, set {ENV_CHECKPOINT}=/path/to/{target.name}, or pass --checkpoint PATH "
        f"(`bindspace convert` turns it into per-modality files that load faster)."
    )


def download_file(url: str, target: Path, *, size: int | None = None, sha256: str | None = None,
                  chunk: int = 1 << 20) -> Path:
    """Download with a progress bar, resuming a partial `.part` file; verify it, then rename it into place.

    The `.part` must have the length the server announced and, when given, `size` bytes and the
    `sha256` digest; a file that fails a check is deleted (a CheckpointError says why), so a
    truncated or corrupt download never becomes `target`.
    """
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if done and response.status != 206:  # server ignored the range: start over
            done = 0
        announced = response.headers.get("Content-Length")
        total = int(announced) + done if announced is not None else None
        with open(part, "ab" if done else "wb") as out, tqdm(
            total=total, initial=done, unit="B", unit_scale=True, desc=target.name,
            disable=not sys.stderr.isatty(),
        ) as bar:
            while block := response.read(chunk):
                out.write(block)
                bar.update(len(block))
    _verify_download(part, url, total, size, sha256)
    commit_file(part, target)
    return target


def _verify_download(part: Path, url: str, announced: int | None, size: int | None, sha256: str | None) -> None:
    """Delete `part` and raise a CheckpointError unless it has the expected length and digest."""
    from ..integrity import sha256_file

    got = part.stat().st_size
    problem = None
    if announced is not None and got != announced:
        problem = f"got {got} bytes, the server announced {announced} (connection cut?)"
    elif size is not None and got != size:
        problem = f"got {got} bytes, expected {size}"
    elif sha256 is not None and (digest := sha256_file(part)) != sha256.lower():
        problem = f"sha256 {digest} does not match the published {sha256}"
    if problem is not None:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"download of {url} failed its check: {problem}; run again to retry")

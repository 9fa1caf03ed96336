"""Finding the released weights: environment variable, cache directory, then download."""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import CheckpointError

RELEASED = {
    "imagebind_huge": ("https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth", "imagebind_huge.pth"),
}
ENV_CHECKPOINT = "BINDSPACE_CHECKPOINT"
ENV_CACHE = "BINDSPACE_CACHE"


def cache_dir() -> Path:
    """`$BINDSPACE_CACHE`, else `~/.cache/bindspace`."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "bindspace")


def resolve_pretrained(name: str, *, download: bool = True) -> Path:
    """Path of the released weights for `name`: $BINDSPACE_CHECKPOINT, the cache, or a download."""
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        if not Path(env).exists():
            raise CheckpointError(f"{ENV_CHECKPOINT}={env}: no such file or directory")
        return Path(env)
    if name not in RELEASED:
        raise CheckpointError(
            f"no released weights for {name!r} (released: {', '.join(RELEASED)}); pass checkpoint=PATH instead"
        )
    url, filename = RELEASED[name]
    cache = cache_dir()
    for candidate in (cache / name, cache / filename):  # a converted model directory wins over the .pth
        if candidate.exists():
            return candidate
    if not download:
        raise CheckpointError(_how_to_get(name, url, cache / filename))
    try:
        return download_file(url, cache / filename)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CheckpointError(f"download failed ({exc}).\n" + _how_to_get(name, url, cache / filename)) from None


def _how_to_get(name: str, url: str, target: Path) -> str:
    return (
        f"The {name} weights are not available offline. Download {url} on a connected machine and either "
        f"put it at {target}, set {ENV_CHECKPOINT}=/path/to/{target.name}, or pass --checkpoint PATH "
        f"(`bindspace convert` turns it into per-modality files that load faster)."
    )


def download_file(url: str, target: Path, *, chunk: int = 1 << 20) -> Path:
    """Download with a progress bar, resuming a partial `.part` file, then rename into place."""
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if done and response.status != 206:  # server ignored the range: start over
            done = 0
        total = int(response.headers.get("Content-Length", 0)) + done
        with open(part, "ab" if done else "wb") as out, tqdm(
            total=total or None, initial=done, unit="B", unit_scale=True, desc=target.name,
            disable=not sys.stderr.isatty(),
        ) as bar:
            while block := response.read(chunk):
                out.write(block)
                bar.update(len(block))
    os.replace(part, target)
    return target

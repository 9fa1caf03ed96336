"""Listing the files under the paths given to `bindspace index`."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import BindspaceError
from ..fsio import real_path_inside


@dataclass
class Listing:
    """Files found (absolute paths, sorted), the roots they came from, and folders that could not be read."""

    files: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def covers(self, uri: str) -> bool:
        """True when `uri` lies under one of the roots (so its absence means it vanished)."""
        return any(uri == root or uri.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots)


def absolute(path: str | os.PathLike[str]) -> str:
    """The absolute, normalised path (symlinks kept as named: the URI is what the user sees)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def walk_paths(paths: Iterable[str | os.PathLike[str]], skip: Iterable[str | os.PathLike[str]] = ()) -> Listing:
    """Every non-hidden file under `paths` (files given directly are kept even if hidden), none under `skip`.

    A path that does not exist is an error: treating it as empty would drop everything indexed
    under it (an unmounted drive must not empty the index). `skip` lists folders left out
    (the index's own folder, when it lies under a path being indexed).
    """
    listing = Listing()
    seen: set[str] = set()
    skipped = {absolute(folder) for folder in skip}
    for raw in paths:
        root = absolute(raw)
        if not os.path.exists(root):
            raise BindspaceError(f"{raw}: no such file or directory")
        listing.roots.append(root)
        if os.path.isfile(root):
            if root not in seen:
                seen.add(root)
                listing.files.append(root)
            continue
        for file in _walk_dir(root, listing, skipped):
            if file not in seen:
                seen.add(file)
                listing.files.append(file)
    listing.files.sort()
    return listing


def _walk_dir(root: str, listing: Listing, skipped: set[str]) -> Iterable[str]:
    def on_error(err: OSError) -> None:
        listing.unreadable.append((err.filename or root, err.strerror or str(err)))

    # followlinks=False: a symlinked folder could loop or escape the tree.
    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.join(folder, d) not in skipped)
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            if not os.path.isfile(path):  # skips sockets, fifos and dangling links
                continue
            # A file link is followed only within the tree: one to a file elsewhere would index, and
            # serve, a file nobody asked for (a link to a secret dropped into a shared folder).
            if os.path.islink(path) and real_path_inside(path, [root]) is None:
                continue
            yield path

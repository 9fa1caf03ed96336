"""Crash-safe file writes: every file bindspace writes goes through `atomic_write`."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def umask() -> int:
    """The process umask; read from /proc where possible, as setting it to probe it races with threads."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> contextlib.AbstractContextManager[IO[Any]]:
    """Open a temp file beside `path` for writing; on a clean exit fsync it and rename it over `path`."""
    return _atomic_open(Path(path), mode)


@contextlib.contextmanager
def _atomic_open(path: Path, mode: str) -> Iterator[IO[Any]]:
    with atomic_path(path) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp path beside `path` for a writer that wants a file name; renamed over `path` on a clean exit.

    The file gets the permissions a plain `open()` would give (0666 less the umask), is fsynced
    before the rename and its directory after, and is removed if the block raises.
    """
    target = Path(path)
    # The temp name ends in the target's suffix: writers such as np.save add one when it is missing.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        commit_file(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def commit_file(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Make a finished temp file `target`: fsync it, give it umask permissions, rename, fsync the directory."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, target)
    fsync_dir(Path(target).parent)


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Callable[[Path], object]) -> Path:
    """Write bytes, text, or whatever `data(tmp_path)` writes, to `path` atomically; returns `path`."""
    target = Path(path)
    with atomic_path(target) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        elif isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            data(tmp)
    return target


@contextlib.contextmanager
def work_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh `.NAME.partial-PID` folder beside `target` to build it in; removed on exit unless published."""
    out = Path(target)
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)  # left by a killed run of this pid
    work.mkdir(parents=True)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def publish_dir(work: str | os.PathLike[str], target: str | os.PathLike[str], *, replace: bool = False) -> Path:
    """Rename a finished folder `work` onto `target`, then flush the parent.

    `target` may be absent or an empty folder; with `replace`, an older `target` is moved aside
    first and removed after, so readers see the old or the new folder, never a mix.
    """
    out = Path(target)
    old = None
    if out.exists() and replace:
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    elif out.exists():
        out.rmdir()  # only an empty placeholder may be replaced: never a folder with someone's files
    os.replace(work, out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def real_path_inside(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]]) -> str | None:
    """`path` with links and `..` resolved when that lies inside one of `roots` (resolved too), else None.

    The one containment check for files read on a request's behalf: a link inside a root that
    points outside it is outside. ValueError/OSError for a path that cannot be resolved (NUL bytes).
    """
    real = os.path.realpath(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return real
    return None

"""Uniform access to inputs given as paths, bytes or binary file objects."""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Union

from ..errors import InputError

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]


def source_name(item: object, index: int | None = None) -> str:
    """A short human name for an input, used in error messages and output files."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    label = getattr(item, "name", None)
    if isinstance(label, str):
        return label
    kind = type(item).__name__
    return f"<{kind} #{index}>" if index is not None else f"<{kind}>"


def is_path(item: object) -> bool:
    """True for str and path-like inputs."""
    return isinstance(item, (str, os.PathLike))


def check_path(path: str | os.PathLike[str]) -> str:
    """Return the path as str, or raise an InputError if it is not a readable, non-empty file."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError(name, "no such file")
    if os.path.isdir(name):
        raise InputError(name, "is a directory, not a file")
    if os.path.getsize(name) == 0:
        raise InputError(name, "empty file")
    if not os.access(name, os.R_OK):
        raise InputError(name, "permission denied")
    return name


@contextmanager
def open_binary(item: Source, name: str | None = None) -> Iterator[IO[bytes]]:
    """Open any byte source for reading; raises InputError for missing or empty inputs."""
    name = name or source_name(item)
    if is_path(item):
        with open(check_path(item), "rb") as handle:  # type: ignore[arg-type]
            yield handle
    elif isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise InputError(name, "empty input (0 bytes)")
        yield io.BytesIO(bytes(item))
    elif hasattr(item, "read"):
        yield item  # type: ignore[misc]
    else:
        raise InputError(name, f"unsupported input type {type(item).__name__}")


def read_bytes(item: Source, name: str | None = None) -> bytes:
    """Read a whole byte source into memory."""
    with open_binary(item, name) as handle:
        data = handle.read()
    if not data:
        raise InputError(name or source_name(item), "empty input (0 bytes)")
    return data

"""Start-up and exit of a command: the cyclic garbage collector kept off what lives until the process ends.

Importing torch, pylance (with pyarrow) and the model code makes some 210,000 objects (classes, op
registries, their closures) that live until the process ends. Python's collector walks all of them in
every full collection while they are being made (about 0.3 s of CPU in a `search`), and again at exit,
where it frees them one by one just before the OS frees the whole process (about 0.5 s). Neither
finds garbage. So a command pauses the collector during its heavy imports and then freezes what they
made (`gc.freeze`: later collections skip it), and the `bindspace` process freezes what is left before
it exits. Objects freed by reference counting still are, atexit handlers and the flush of stdout and
stderr still run, and garbage is collected once before exit so an unreachable open file is flushed.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_froze = False  # whether `settled_imports` froze objects in this process (see `finish`)


@contextmanager
def settled_imports() -> Iterator[None]:
    """Run a command's heavy imports (and the opening of what lives until exit) with the collector paused;
    what they made is frozen afterwards."""
    global _froze
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        _froze = True
        if was_enabled:
            gc.enable()


def finish(exiting: bool) -> None:
    """End a command: with `exiting` (the process ends next) freeze everything left so exit skips it;
    otherwise (a test or script calling the command) give back to the collector what `settled_imports` froze."""
    global _froze
    if exiting:
        gc.collect()  # garbage first: its finalizers run as they would at exit
        gc.freeze()
    elif _froze:
        gc.unfreeze()
    _froze = False

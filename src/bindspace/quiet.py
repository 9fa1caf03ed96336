"""Third-party chatter off: Python loggers, Hugging Face progress bars and notices, warnings, stdout.

The one place bindspace silences libraries (the ONNX exporter, diffusers/transformers loading,
a language model's notices); errors still raise.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any


def _hf_loggings() -> list[tuple[Any, int]]:
    """(logging module, level to set) of the installed Hugging Face libraries."""
    found = []
    try:
        from transformers.utils import logging as transformers_logging

        found.append((transformers_logging, transformers_logging.ERROR))
    except ImportError:
        pass
    try:
        from diffusers.utils import logging as diffusers_logging

        # CRITICAL: diffusers logs its load errors before raising them; they become our one line.
        found.append((diffusers_logging, diffusers_logging.CRITICAL))
    except ImportError:
        pass
    return found


def quiet_hf() -> None:
    """No Hugging Face progress bars or advisory notices for the rest of the process (a chat or training run)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for hf_logging, level in _hf_loggings():
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity(level)


@contextlib.contextmanager
def quiet(loggers: Iterable[str] = (), *, hf: bool = False, stdout: bool = False, stderr: bool = False,
          ignore: type[Warning] = Warning) -> Iterator[None]:
    """Within the block: `loggers` at ERROR, Hugging Face bars/notices off (`hf`), `ignore` warnings dropped,
    stdout and/or stderr swallowed; everything restored afterwards.

    `stderr` is for bars a library draws with plain tqdm, which its logging switches do not reach
    (transformers' GGUF dequantization); errors still raise as exceptions.
    """
    saved_loggers = [(lg, lg.level) for lg in map(logging.getLogger, loggers)]
    saved_hf = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m, _ in _hf_loggings()] if hf else []
    for lg, _ in saved_loggers:
        lg.setLevel(logging.ERROR)
    for hf_logging, level in _hf_loggings() if hf else []:
        hf_logging.set_verbosity(level)
        hf_logging.disable_progress_bar()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", ignore)
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            if stderr:
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            yield
    finally:
        for lg, level in saved_loggers:
            lg.setLevel(level)
        for hf_logging, verbosity, bar in saved_hf:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()

"""errors.first_line: the one way an exception becomes the one-line reason in our messages."""
from __future__ import annotations

from bindspace.errors import first_line


def test_first_line_keeps_only_the_first_line_of_the_message() -> None:
    assert first_line(RuntimeError("\n  bad header in file\nTraceback detail\nmore")) == "bad header in file"


def test_an_empty_message_reads_as_the_exception_type() -> None:
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError("   ")) == "OSError"

"""Exceptions that bindspace raises on purpose: each carries a one-line message for users."""
from __future__ import annotations


class BindspaceError(Exception):
    """Base class: a problem the user can act on, printed without a traceback by the CLI."""


class InputError(BindspaceError):
    """An input (file, bytes, array) that cannot be turned into a model input."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class CheckpointError(BindspaceError):
    """A checkpoint that is missing, corrupt, or belongs to another model."""


class ConfigError(BindspaceError, ValueError):
    """An unknown preset or an invalid configuration (a ValueError, as callers validating values expect)."""

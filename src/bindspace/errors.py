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


class ContextLengthError(InputError):
    """A prompt whose tokens plus the answer's limit do not fit the language model's positions."""

    def __init__(self, where: str, prompt_tokens: int, max_new_tokens: int, limit: int) -> None:
        super().__init__(where, f"the prompt is {prompt_tokens} tokens and up to {max_new_tokens} more may be "
                         f"generated, over the language model's {limit} positions: shorten the prompt or ask "
                         "for fewer new tokens")
        self.prompt_tokens, self.max_new_tokens, self.limit = prompt_tokens, max_new_tokens, limit


class CheckpointError(BindspaceError):
    """A checkpoint that is missing, corrupt, or belongs to another model."""


class ConfigError(BindspaceError, ValueError):
    """An unknown preset or an invalid configuration (a ValueError, as callers validating values expect)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

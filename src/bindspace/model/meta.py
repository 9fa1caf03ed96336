"""Models built on the meta device: shapes only, no values, for a checkpoint to fill (or to list keys).

`torch.device("meta")` alone still runs every module's initialiser, and some of them (`normal_`,
`triu_`) have only Python meta kernels in torch, whose first use imports torch._dynamo and sympy:
a second or two of start-up for a command that compiles nothing. Initialisers have no values to
write on meta tensors, so inside `meta_device()` they return their tensor untouched.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# In-place initialisers (torch.nn.init's and the Tensor methods they call): each returns its tensor
# with the same shape, so skipping one on a meta tensor changes nothing but the time it takes.
INITIALISERS = frozenset({
    "normal_", "uniform_", "trunc_normal_", "xavier_normal_", "xavier_uniform_", "kaiming_normal_",
    "kaiming_uniform_", "constant_", "zeros_", "ones_", "fill_", "zero_", "triu_", "tril_",
})


class _SkipMetaInit(TorchFunctionMode):
    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        first = args[0] if args else (kwargs or {}).get("tensor")  # torch.nn.init passes it by keyword
        if getattr(func, "__name__", "") in INITIALISERS and isinstance(first, torch.Tensor) and first.is_meta:
            return first
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """Tensors made inside are meta tensors and initialisers skip them (see the module docstring)."""
    with torch.device("meta"), _SkipMetaInit():
        yield

"""The weights fingerprint lives in `bindspace.model.fingerprint` (the int8 cache, below the index, keys on it)."""
from ..model.fingerprint import SCHEME, model_fingerprint

__all__ = ["SCHEME", "model_fingerprint"]

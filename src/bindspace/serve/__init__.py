"""`bindspace serve`: the HTTP API, the Weaviate drop-in and the search page (needs the [serve] extra)."""
from __future__ import annotations

from .app import create_app
from .limits import Limits

__all__ = ["create_app", "Limits"]

"""A route class that answers every error (auth, validation, bad input, limits, timeouts, bugs) in one protocol's shape.

The OpenAI routes answer `{"error": {"message", "type", "param", "code"}}`, clip-retrieval's
routes `{"message"}`: each subclass sets `error_body(status, message, code, param)`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..errors import BindspaceError, InputError, first_line
from .errors import ApiError

log = logging.getLogger("bindspace.serve")


def _validation_message(errors: list[Any]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    return (f"{'.'.join(loc)}: {first.get('msg', 'invalid')}" if loc else str(first.get("msg", "invalid request")),
            loc[0] if loc else None)


class ShapedErrorRoute(APIRoute):
    """An APIRoute whose errors all go through `error_body`; invalid fields are 400, as most APIs answer them."""

    @staticmethod
    def error_body(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
        """The protocol's error body."""
        return {"error": message, "type": code}

    def _answer(self, status: int, message: str, code: str | None, param: str | None = None,
                headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.error_body(status, message, code, param), status_code=status, headers=headers)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as err:
                status = 400 if err.status == 422 else err.status
                return self._answer(status, str(err), err.kind, getattr(err, "param", None), err.headers)
            except InputError as err:
                return self._answer(400, str(err), "bad_input", "input")
            except (RequestValidationError, ValidationError) as err:
                message, param = _validation_message(list(err.errors()))
                return self._answer(400, message, "validation", param)
            except BindspaceError as err:
                return self._answer(400, first_line(err), "bad_request")
            except HTTPException as err:
                return self._answer(err.status_code, str(err.detail), "http")
            except asyncio.TimeoutError:
                return self._answer(504, "request timed out", "timeout")
            except Exception as err:  # a bug: logged with its traceback, answered in the client's shape
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return self._answer(500, f"internal error ({type(err).__name__})", "internal")

        return handle

"""Reading a request's JSON body: the one parser behind the native and the OpenAI-shaped routes."""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from .errors import ApiError


async def read_json(request: Request, *, empty_status: int = 422) -> Any:
    """The parsed JSON body; an ApiError (400 bad_json, or `empty_status` for no body) otherwise."""
    body = await request.body()
    if not body:
        raise ApiError("empty request body: send a JSON object", status=empty_status, kind="validation")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(f"request body is not valid JSON ({err})", status=400, kind="bad_json") from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting the JSON body of a route that reads it with read_json."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}

"""JSON responses encoded with msgspec, and the one shape of every error."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

_encoder = msgspec.json.Encoder()


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(content), status_code=status_code, media_type="application/json", headers=headers)


def error_response(status_code: int, code: str, message: str, **extra: Any) -> Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, status_code)


class BodyTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body exceeds {limit} bytes")
        self.limit = limit


# An oversize body is read to its end (and thrown away) up to this size, so that the client, still sending,
# receives our 413 instead of a broken connection; beyond it the connection is simply refused.
DRAIN_LIMIT = 16_000_000


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused once it passes `limit` bytes (never buffered beyond it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        await _drain(request, int(declared))
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise BodyTooLargeError(limit)
    return b"".join(chunks)


async def _drain(request: Request, declared: int) -> None:
    if declared > DRAIN_LIMIT:
        return
    async for _ in request.stream():
        pass


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()

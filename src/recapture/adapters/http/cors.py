"""CORS for the collector: the shop's own origins and Shopify's sandboxed pixel frame (`Origin: null`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

PREFLIGHT_MAX_AGE = "86400"


def cors_headers(origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    if origin is None or origin not in allowed:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def origin_refused(request: Request, allowed: frozenset[str]) -> bool:
    """A browser request from an origin that is not ours; requests without Origin (servers, curl) pass."""
    origin = request.headers.get("origin")
    return origin is not None and origin not in allowed


def preflight(request: Request, allowed: frozenset[str]) -> Response:
    headers = cors_headers(request.headers.get("origin"), allowed)
    if headers:
        headers |= {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "content-type",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        }
    return Response(status_code=204, headers=headers)

"""The ready-to-paste Shopify custom pixel."""

from __future__ import annotations

import json
from importlib.resources import files

COLLECT_PATH = "/collect/shopify"


def render_pixel(public_url: str, shop: str | None) -> str:
    """The custom pixel with this installation's collector address (and shop, when there is one) filled in."""
    template = files("recapture.adapters.pixel").joinpath("shopify.js").read_text(encoding="utf-8")
    endpoint = public_url.rstrip("/") + COLLECT_PATH
    return template.replace('"__RECAPTURE_ENDPOINT__"', json.dumps(endpoint)).replace(
        '"__RECAPTURE_SHOP__"', json.dumps(shop)
    )

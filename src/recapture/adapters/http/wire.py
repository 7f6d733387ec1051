"""The public wire format of POST /collect/shopify, validated with msgspec.

    {"shop": "<name>.myshopify.com", "event": {...Web Pixels event...}, "customer": {...}|null,
     "consent": {...}|null, "cookies": {"__kla_id": "..."}}
or {"batch": [envelope, ...]}.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from recapture.application.collector import Rejection
from recapture.domain.shopify_pixel import PixelEnvelope

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class PixelEventWire(msgspec.Struct):
    id: NonEmpty
    name: NonEmpty
    clientId: NonEmpty
    timestamp: str | int | float
    context: dict[str, Any] = {}
    data: dict[str, Any] = {}
    seq: int | None = None
    type: str | None = None


class EnvelopeWire(msgspec.Struct):
    shop: NonEmpty
    event: PixelEventWire
    customer: dict[str, Any] | None = None
    consent: dict[str, Any] | None = None
    cookies: dict[str, str] = {}


_envelope_decoder = msgspec.json.Decoder(EnvelopeWire)
_top_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_items_decoder = msgspec.json.Decoder(list[msgspec.Raw])


class BodyError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def split_body(body: bytes) -> tuple[list[bytes], bool]:
    """The envelopes of a request as raw bytes each, and whether the request was a batch."""
    try:
        top = _top_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise BodyError("malformed_json", f"the body is not a JSON object: {error}") from error
    if "batch" not in top:
        return [body], False
    try:
        # Only the batch's own bytes are read again, not the whole body.
        batch = _items_decoder.decode(top["batch"])
    except msgspec.DecodeError as error:
        raise BodyError("invalid_batch", f"`batch` must be a list of envelopes: {error}") from error
    return [bytes(item) for item in batch], True


def _rejection_code(error: msgspec.ValidationError) -> str:
    return "missing_field" if "missing required field" in str(error) else "invalid_field"


def read_envelope(raw: bytes, max_bytes: int) -> PixelEnvelope | Rejection:
    if len(raw) > max_bytes:
        return Rejection(code="envelope_too_large", message=f"an envelope may hold at most {max_bytes} bytes")
    try:
        wire = _envelope_decoder.decode(raw)
    except msgspec.ValidationError as error:
        return Rejection(code=_rejection_code(error), message=str(error), id=_event_id_of(raw))
    except msgspec.DecodeError as error:
        return Rejection(code="malformed_json", message=str(error))
    event = wire.event
    return PixelEnvelope(
        shop=wire.shop.strip().lower(),
        event_id=event.id,
        name=event.name,
        timestamp=event.timestamp,
        client_id=event.clientId,
        context=event.context,
        data=event.data,
        customer=wire.customer,
        consent=wire.consent,
        cookies=wire.cookies,
        raw=raw,
    )


class _IdOnly(msgspec.Struct):
    id: str | None = None


class _EnvelopeIdOnly(msgspec.Struct):
    event: _IdOnly | None = None


def _event_id_of(raw: bytes) -> str | None:
    """The event id of an envelope that failed validation, so the pixel can tell which one."""
    try:
        envelope = msgspec.json.decode(raw, type=_EnvelopeIdOnly)
    except msgspec.MsgspecError:
        return None
    return envelope.event.id if envelope.event else None

"""Contact values as people may see them in tools: recognisable, not usable."""

from __future__ import annotations

from recapture.domain.events import CONTACT_TYPES, IdentifierType


def mask_email(email: str) -> str:
    """b***@h***.com: enough to recognise in a support conversation, not enough to contact."""
    local, _, domain = email.partition("@")
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{host[:1]}***.{tld}" if host else f"{local[:1]}***@***"


def mask_phone(phone: str) -> str:
    return f"{phone[:3]}*****{phone[-2:]}" if len(phone) > 6 else "*****"


def masked(kind: IdentifierType, value: str) -> str:
    if kind not in CONTACT_TYPES:
        return value
    return mask_phone(value) if kind is IdentifierType.PHONE else mask_email(value)

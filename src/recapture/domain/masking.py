"""Contact values as people may see them in tools: recognisable, not usable."""

from __future__ import annotations

import re

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

# Anything around an "@" (or its URL encoding) up to a separator. A platform quotes back the emails it refuses, and
# those are the malformed ones ("ann@example", "ann@exämple.com"): a pattern for valid addresses would let them
# through. Over-masking a token that only looks like an email is harmless.
_EMAIL = re.compile(r"[^\s\"'<>()\[\]{},;:]*(?:@|%40)[^\s\"'<>()\[\]{},;]*", re.IGNORECASE)
# Only international numbers (what recapture sends): bare digit runs are ids and dates far more often than phones.
_PHONE = re.compile(r"\+\d[\d ().\-]{5,}\d")


def scrub_contacts(text: str) -> str:
    """The text with every email and international phone number masked like the identity tools mask them."""
    text = _EMAIL.sub(lambda match: mask_email(re.sub("%40", "@", match.group(0), flags=re.IGNORECASE).lower()), text)
    return _PHONE.sub(lambda match: mask_phone(re.sub(r"[^\d+]", "", match.group(0))), text)

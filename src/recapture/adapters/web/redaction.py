"""Contact data inside free text (a platform's error message may quote the email it refused), masked for display."""

from __future__ import annotations

import re

from recapture.domain.masking import mask_email, mask_phone

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

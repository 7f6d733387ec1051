"""Contact data inside free text (a platform's error message may quote the email it refused), masked for display."""

from __future__ import annotations

import re

from recapture.domain.masking import mask_email, mask_phone

# Every character RFC 5322 allows in a local part: over-masking a token that only looks like an email is harmless.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z0-9\-]{2,}")
# Only international numbers (what recapture sends): bare digit runs are ids and dates far more often than phones.
_PHONE = re.compile(r"\+\d[\d ().\-]{5,}\d")


def scrub_contacts(text: str) -> str:
    """The text with every email and international phone number masked like the identity tools mask them."""
    text = _EMAIL.sub(lambda match: mask_email(match.group(0).lower()), text)
    return _PHONE.sub(lambda match: mask_phone(re.sub(r"[^\d+]", "", match.group(0))), text)

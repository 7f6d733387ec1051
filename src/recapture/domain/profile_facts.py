"""What a shopper told the store about themselves (names, town, marketing consent): personal data, sealed at rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

Json = Mapping[str, Any]
MAX_LENGTH = 120


class ProfileFacts(msgspec.Struct, frozen=True, kw_only=True):
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    # Ticked "email me with news and offers" at checkout: the only basis for a list subscription.
    accepts_email_marketing: bool | None = None

    @property
    def is_empty(self) -> bool:
        return self == ProfileFacts()


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text[:MAX_LENGTH] if text else None


def _first(sources: Sequence[Json], *keys: str) -> str | None:
    for source in sources:
        for key in keys:
            if (found := _text(source.get(key))) is not None:
                return found
    return None


def profile_facts(sources: Sequence[Json], accepts_email_marketing: bool | None) -> ProfileFacts | None:
    """The first name, last name and place found in the given records (most trusted first), or None."""
    sources = [source for source in sources if source]
    if not sources and accepts_email_marketing is None:
        return None  # most events carry no customer and no address
    facts = ProfileFacts(
        first_name=_first(sources, "firstName", "first_name"),
        last_name=_first(sources, "lastName", "last_name"),
        city=_first(sources, "city"),
        region=_first(sources, "province", "provinceCode", "province_code"),
        country=_first(sources, "countryCode", "country_code", "country"),
        accepts_email_marketing=accepts_email_marketing,
    )
    return None if facts.is_empty else facts

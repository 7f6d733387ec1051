"""Campaign parameters and click ids from a landing URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus, urlsplit

from recapture.domain.events import Attribution, Identifier, IdentifierType
from recapture.domain.identifiers import clean_token

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_id")
# Click ids name the ad network that sent the visit; `_kx` is Klaviyo's exchange id on email links.
CLICK_ID_KEYS = ("fbclid", "gclid", "gbraid", "wbraid", "ttclid", "msclkid", "_kx")
MAX_PARAMETER_LENGTH = 512


def query_parameters(url: str | None) -> dict[str, str]:
    if not url or "?" not in url:  # most page URLs carry no query: skip the parser (a third of normalizing)
        return {}
    query = _query(url)
    if not query:
        return {}
    return {key: value for key, value in parse_qsl(query) if value and len(value) <= MAX_PARAMETER_LENGTH}


_CAMPAIGN_KEYS = frozenset(UTM_KEYS + CLICK_ID_KEYS)


def _query(url: str) -> str | None:
    """`urlsplit(url).query`, or None where urlsplit raises; the plain case without the parser."""
    if url[0] > " " and url[-1] > " " and "[" not in url and "\n" not in url and "\t" not in url and "\r" not in url:
        # Nothing for urlsplit to strip and no IPv6 host to check: the query is what follows the first "?"
        # before the first "#" (property-tested against urlsplit).
        return url.partition("#")[0].partition("?")[2]
    try:
        return urlsplit(url).query
    except ValueError:
        return None


def campaign_parameters(url: str | None) -> dict[str, str]:
    """The UTM and click-id parameters of a URL, as `query_parameters` gives them, decoding no other parameter."""
    if not url or "?" not in url:
        return {}
    query = _query(url)
    if not query:
        return {}
    found: dict[str, str] = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if key in _CAMPAIGN_KEYS and value:
            value = unquote_plus(value) if "%" in value or "+" in value else value
            if len(value) <= MAX_PARAMETER_LENGTH:
                found[key] = value
    return found


def attribution_identifiers(attribution: Attribution) -> list[Identifier]:
    """Klaviyo's `_kx` names a Klaviyo profile; ad click ids link visits only briefly (see the identity policy)."""
    found: list[Identifier] = []
    for key, value in attribution.click_ids.items():
        token = clean_token(value)
        if token is None:
            continue
        if key == "_kx":
            found.append(Identifier(type=IdentifierType.KLAVIYO_EXCHANGE_ID, value=token))
        else:
            found.append(Identifier(type=IdentifierType.CLICK_ID, value=f"{key}:{token}"))
    return found


_UTM = frozenset(UTM_KEYS)


def attribution_from_url(url: str | None) -> Attribution:
    params = campaign_parameters(url)
    if not params:
        return Attribution()
    utm: dict[str, str] = {}
    click_ids: dict[str, str] = {}
    for key, value in params.items():
        (utm if key in _UTM else click_ids)[key] = value
    return Attribution(utm=utm, click_ids=click_ids)

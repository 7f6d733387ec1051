"""Klaviyo as a destination: JSON:API payloads per the official spec, paced per account, errors classified once.

Payloads follow Klaviyo's OpenAPI spec, revision 2026-07-15 (`EventCreateQueryV2`, `EventsBulkCreateJob`,
`ProfileUpsertQuery`, `SubscriptionCreateJobCreateQuery`); the tests validate every one of them against it.

- A profile is named by its identifiers only in events (email, phone_number, `_kx` — the spec's name for the
  exchange id of Klaviyo's `__kla_id` cookie — and external_id). Names, location and custom properties go
  through `import_profile`, so an event retried days later cannot overwrite newer profile data. Absent fields
  are left out, never sent as null: for Klaviyo a null clears the field.
- Every event carries its deterministic `unique_id`, so a retry after a timeout is recorded once. A bulk request
  that repeats a unique_id fails whole at Klaviyo, so `bulk_payload` refuses it before anything is sent.
- Errors are classified here and nowhere else (`recapture.application.delivery_errors`): 429 (with
  `Retry-After`), 408, 5xx, timeouts, connection errors and a Cloudflare HTML 403 challenge are transient;
  a JSON 4xx is terminal and keeps Klaviyo's `errors[].detail`.
- Pacing: token buckets per operation with the documented limits (events 350/s and 3,500/min, bulk events
  10/s and 150/min, profile import and subscriptions 75/s and 700/min), pacing at `headroom` (97 %) of each;
  the rest is margin for other apps on the same account and for network jitter (bench/delivery.py: at 90 % a
  sustained backlog ran at 90 % of the ceiling, at 97 % it reaches 96.7-97 % without a 429). A wait under
  `max_sleep` (1 s) is slept (bounded); a longer one raises `TransientDeliveryError(retry_after=...)` so the
  worker stores a `not_before`.
  The limits are per Klaviyo account: share one `KlaviyoDestination` between the threads of a shop.
- Scope check: Klaviyo has no endpoint that lists a key's scopes, but it checks the scopes of an operation
  (`x-klaviyo-scopes` in the spec) before it reads the body. `check_scopes` therefore sends, for each scope, an
  operation that needs exactly that scope with a body that can never be valid (its `type` is no resource type
  of the spec): a JSON 403 means the scope is missing; a 400/404 means the key passed the permission check and
  the body was refused, so nothing is ever created or changed.
- The private key lives in a holder whose repr is redacted; it is sent in the Authorization header and
  scrubbed from every error detail.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from enum import Enum
from types import TracebackType
from typing import Any, Final

import httpx
import structlog

from recapture.application.delivery_errors import (
    DeliveryError,
    DuplicateUniqueIdError,
    TerminalDeliveryError,
    TransientDeliveryError,
)
from recapture.domain.delivery import DeliveryEvent, DeliveryProfile
from recapture.domain.rate_limit import RateLimit

log = structlog.get_logger("recapture.klaviyo")

DEFAULT_BASE_URL: Final = "https://a.klaviyo.com"
API_REVISION: Final = "2026-07-15"
JSON_API: Final = "application/vnd.api+json"

CREATE_EVENT: Final = "create_event"
BULK_CREATE_EVENTS: Final = "bulk_create_events"
IMPORT_PROFILE: Final = "create_or_update_profile"
BULK_SUBSCRIBE: Final = "bulk_subscribe_profiles"

# Klaviyo operationId -> (method, path, documented limits). The spec's x-klaviyo-ratelimit says 750/m for the
# profile operations; we keep the L tier's 700/m published in Klaviyo's rate-limit guide, the stricter of the two.
OPERATIONS: Final[Mapping[str, tuple[str, str, tuple[str, ...]]]] = {
    CREATE_EVENT: ("POST", "/api/events", ("350/s", "3500/m")),
    BULK_CREATE_EVENTS: ("POST", "/api/event-bulk-create-jobs", ("10/s", "150/m")),
    IMPORT_PROFILE: ("POST", "/api/profile-import", ("75/s", "700/m")),
    BULK_SUBSCRIBE: ("POST", "/api/profile-subscription-bulk-create-jobs", ("75/s", "700/m")),
}
DEFAULT_HEADROOM: Final = 0.97  # see docs/benchmarks.md, "Delivery"

REQUIRED_SCOPES: Final = ("events:write", "profiles:write", "lists:write", "subscriptions:write")
# scope -> an operation that needs exactly that scope and nothing else (see the module docstring).
SCOPE_PROBES: Final[Mapping[str, tuple[str, str]]] = {
    "events:write": ("POST", "/api/events"),                                   # create_event
    "profiles:write": ("POST", "/api/profile-import"),                         # create_or_update_profile
    "lists:write": ("PATCH", "/api/lists/recapture-scope-probe"),              # update_list
    "subscriptions:write": ("POST", "/api/profile-suppression-bulk-delete-jobs"),  # bulk_unsuppress_profiles
}
# Invalid for every operation above: "recapture-scope-probe" is not a resource type, and attributes are missing.
SCOPE_PROBE_BODY: Final[Mapping[str, Any]] = {"data": {"type": "recapture-scope-probe"}}

MAX_BULK_EVENTS: Final = 1000        # "Accepts up to 1,000 events per request."
MAX_SUBSCRIPTION_PROFILES: Final = 1000
MAX_METRIC_NAME: Final = 127         # "Must be less than 128 characters."
MAX_EVENT_PROPERTIES: Final = 400
MAX_RETRY_AFTER: Final = 86_400.0
_MAX_DETAIL: Final = 500


# ---------------------------------------------------------------------------------------------- payloads


def event_payload(event: DeliveryEvent) -> dict[str, Any]:
    """The JSON:API body of create_event (`EventCreateQueryV2`) for one event."""
    attributes = _event_attributes(event)
    attributes["profile"] = {"data": {"type": "profile", "attributes": _identifiers(event.profile)}}
    return {"data": {"type": "event", "attributes": attributes}}


def bulk_payload(events: Sequence[DeliveryEvent]) -> dict[str, Any]:
    """The body of bulk_create_events (`EventsBulkCreateJob`): events grouped per profile, in their order.

    Raises DuplicateUniqueIdError when a unique_id repeats (Klaviyo would fail the whole request).
    """
    if not events:
        raise ValueError("a bulk request needs at least one event")
    if len(events) > MAX_BULK_EVENTS:
        raise ValueError(f"Klaviyo accepts at most {MAX_BULK_EVENTS} events per bulk request, got {len(events)}")
    seen: set[str] = set()
    repeated: list[str] = []
    for event in events:
        if event.unique_id in seen and event.unique_id not in repeated:
            repeated.append(event.unique_id)
        seen.add(event.unique_id)
    if repeated:
        raise DuplicateUniqueIdError(tuple(repeated))
    groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for event in events:
        identifiers = _identifiers(event.profile)
        groups.setdefault(tuple(identifiers.items()), []).append(
            {"type": "event", "attributes": _event_attributes(event)}
        )
    entries = [
        {
            "type": "event-bulk-create",
            "attributes": {
                "profile": {"data": {"type": "profile", "attributes": dict(key)}},
                "events": {"data": entry_events},
            },
        }
        for key, entry_events in groups.items()
    ]
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": entries}},
        }
    }


def profile_import_payload(profile: DeliveryProfile) -> dict[str, Any]:
    """The body of create_or_update_profile (`ProfileUpsertQuery`); absent fields are left out, never nulled."""
    attributes: dict[str, Any] = _identifiers(profile)
    if profile.first_name:
        attributes["first_name"] = profile.first_name
    if profile.last_name:
        attributes["last_name"] = profile.last_name
    location = {key: value for key, value in (("city", profile.city), ("region", profile.region)) if value}
    if location:
        attributes["location"] = location
    if profile.properties:
        attributes["properties"] = _jsonable(profile.properties)
    return {"data": {"type": "profile", "attributes": attributes}}


def subscription_payload(
    profiles: Sequence[DeliveryProfile], list_id: str, custom_source: str | None = None
) -> dict[str, Any]:
    """The body of bulk_subscribe_profiles: email marketing consent only, for profiles that have an email."""
    if not list_id.strip():
        raise ValueError("a list id is required")
    if not profiles:
        raise ValueError("a subscription request needs at least one profile")
    emails: dict[str, str] = {}
    for profile in profiles:
        if not profile.email:
            raise TerminalDeliveryError(None, "a profile without an email cannot get email marketing consent")
        emails.setdefault(profile.email.strip().lower(), profile.email.strip())
    if len(emails) > MAX_SUBSCRIPTION_PROFILES:
        raise ValueError(f"Klaviyo subscribes at most {MAX_SUBSCRIPTION_PROFILES} profiles per request")
    attributes: dict[str, Any] = {
        "profiles": {
            "data": [
                {
                    "type": "profile",
                    "attributes": {"email": email, "subscriptions": _email_marketing_consent()},
                }
                for email in emails.values()
            ]
        }
    }
    if custom_source:
        attributes["custom_source"] = custom_source
    return {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": attributes,
            "relationships": {"list": {"data": {"type": "list", "id": list_id.strip()}}},
        }
    }


def _email_marketing_consent() -> dict[str, Any]:
    return {"email": {"marketing": {"consent": "SUBSCRIBED"}}}


def _event_attributes(event: DeliveryEvent) -> dict[str, Any]:
    metric = event.metric.strip()
    if not metric or len(metric) > MAX_METRIC_NAME:
        raise TerminalDeliveryError(None, f"a metric name has 1 to {MAX_METRIC_NAME} characters, got {len(metric)}")
    if not event.unique_id:
        raise TerminalDeliveryError(None, "an event needs its unique_id: without it Klaviyo drops same-second events")
    if len(event.properties) > MAX_EVENT_PROPERTIES:
        raise TerminalDeliveryError(None, f"Klaviyo keeps at most {MAX_EVENT_PROPERTIES} event properties")
    attributes: dict[str, Any] = {
        "properties": _jsonable(event.properties),
        "time": _iso(event.time),
        "unique_id": event.unique_id,
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
    }
    if event.value is not None:
        attributes["value"] = _number(event.value)
    if event.value_currency:
        attributes["value_currency"] = event.value_currency.upper()
    return attributes


def _identifiers(profile: DeliveryProfile) -> dict[str, str]:
    identifiers = {
        key: value
        for key, value in (
            ("email", profile.email),
            ("phone_number", profile.phone_number),
            ("_kx", profile.exchange_id),
            ("external_id", profile.external_id),
        )
        if value
    }
    if not identifiers:
        raise TerminalDeliveryError(None, "the profile has no email, phone number, exchange id or external id")
    return identifiers


def _iso(moment: datetime) -> str:
    """ISO-8601 in UTC, to the second (Klaviyo truncates to the second anyway). A naive time is taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0).isoformat()


def _number(value: Decimal | float | int) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise TerminalDeliveryError(None, "an event value must be a finite number")
    return number


def _jsonable(value: Any) -> Any:
    """Plain JSON values: Decimal -> number, datetime/date -> ISO text, tuples and sets -> lists."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, Decimal | float):
        return _number(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# ---------------------------------------------------------------------------------------------- errors


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (delay-seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify_response(response: httpx.Response) -> DeliveryError | None:
    """None for a 2xx; otherwise the one error class the worker acts on (see the module docstring)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    content_type = response.headers.get("content-type", "").lower()
    challenge = response.headers.get("cf-mitigated", "").lower() == "challenge"
    if status == 403 and ("text/html" in content_type or challenge):
        return TransientDeliveryError(retry_after, status, "Cloudflare challenge (HTML 403) in front of Klaviyo")
    detail = _error_detail(response) or f"HTTP {status} ({content_type or 'no content type'})"
    if status == 429 or status == 408 or status >= 500:
        return TransientDeliveryError(retry_after, status, detail)
    return TerminalDeliveryError(status, detail)


def _error_detail(response: httpx.Response) -> str:
    """Klaviyo's `errors[].detail` (or title/code), joined; empty when the body is no JSON:API error."""
    try:
        body = response.json()
    except ValueError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    parts: list[str] = []
    for error in errors[:3]:
        if not isinstance(error, dict):
            continue
        text = error.get("detail") or error.get("title") or error.get("code")
        if isinstance(text, str) and text:
            pointer = (error.get("source") or {}).get("pointer") if isinstance(error.get("source"), dict) else None
            parts.append(f"{text} (at {pointer})" if isinstance(pointer, str) and pointer else text)
    return "; ".join(parts)[:_MAX_DETAIL]


def missing_scopes_message(missing: Iterable[str]) -> str:
    """What to tell the merchant when `check_scopes` found scopes missing ('' when none are)."""
    scopes = sorted(missing)
    if not scopes:
        return ""
    areas = ", ".join(sorted({scope.split(":", 1)[0].replace("-", " ").title() for scope in scopes}))
    return (
        f"The Klaviyo private API key lacks {', '.join(scopes)}. In Klaviyo, open Settings → API keys, edit the key "
        f"(or create a new one) and give Full Access to: {areas}; then update the key in recapture."
    )


# ---------------------------------------------------------------------------------------------- client


class _Secret:
    """Holds the private key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


class KlaviyoDestination:
    """Sends events, profiles and subscriptions to one Klaviyo account. Thread-safe; sync (for a worker thread)."""

    name = "klaviyo"

    def __init__(
        self,
        base_url: str,
        private_key: str,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_sleep: float = 1.0,
        headroom: float = DEFAULT_HEADROOM,
        pace: bool = True,
        timeout: float = 10.0,
        revision: str = API_REVISION,
    ) -> None:
        key = private_key.strip()
        if not key or any(ch.isspace() or ord(ch) < 32 for ch in key):
            raise ValueError("the Klaviyo private key is empty or contains whitespace")
        self._key = _Secret(key)
        self.base_url = base_url.rstrip("/")
        self.revision = revision
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))
        self._clock = clock
        self._sleep = sleep
        self._max_sleep = max_sleep
        self._pace_enabled = pace
        self._limits = {
            op: RateLimit.within_fixed_windows(*rates, headroom=headroom) for op, (_, _, rates) in OPERATIONS.items()
        }
        self._locks = {op: threading.Lock() for op in OPERATIONS}

    def __repr__(self) -> str:
        return f"KlaviyoDestination(base_url={self.base_url!r}, private_key=<redacted>)"

    # -- operations

    def send_event(self, event: DeliveryEvent) -> None:
        """create_event; a repeat of the same unique_id is recorded once by Klaviyo."""
        self._call(CREATE_EVENT, event_payload(event))

    def send_events(self, events: Sequence[DeliveryEvent]) -> None:
        """bulk_create_events for up to 1,000 events; nothing is sent if a unique_id repeats."""
        if events:
            self._call(BULK_CREATE_EVENTS, bulk_payload(events))

    def import_profile(self, profile: DeliveryProfile) -> str | None:
        """create_or_update_profile; returns Klaviyo's profile id when the response carries it."""
        response = self._call(IMPORT_PROFILE, profile_import_payload(profile))
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            return None
        profile_id = data.get("id") if isinstance(data, dict) else None
        return profile_id if isinstance(profile_id, str) else None

    def subscribe(self, profiles: Sequence[DeliveryProfile], list_id: str) -> None:
        """bulk_subscribe_profiles: email marketing consent for these profiles, added to `list_id`."""
        self._call(BULK_SUBSCRIBE, subscription_payload(profiles, list_id))

    def check_scopes(self) -> list[str]:
        """The scopes among REQUIRED_SCOPES that the key lacks (probes that cannot create data; see module doc).

        Raises TerminalDeliveryError when Klaviyo rejects the key itself (401), TransientDeliveryError when it
        could not answer (throttled, server error, challenge, network).
        """
        missing: list[str] = []
        for scope in REQUIRED_SCOPES:
            method, path = SCOPE_PROBES[scope]
            error = classify_response(self._send(method, path, SCOPE_PROBE_BODY))
            if isinstance(error, TransientDeliveryError) or (error is not None and error.status == 401):
                raise self._scrub(error)  # no verdict: throttled, down, challenged, or the key itself is refused
            if error is not None and error.status == 403:
                missing.append(scope)  # a JSON 403: the permission check failed before the body was read
            # Anything else (400 for the invalid body, 404, 405...): the key passed the permission check.
        if missing:
            log.warning("klaviyo_key_missing_scopes", missing=missing, message=missing_scopes_message(missing))
        return missing

    # -- plumbing

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> KlaviyoDestination:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, operation: str, payload: Mapping[str, Any]) -> httpx.Response:
        method, path, _ = OPERATIONS[operation]
        self._pace(operation)
        response = self._send(method, path, payload)
        error = classify_response(response)
        if error is not None:
            raise self._scrub(error)
        return response

    def _pace(self, operation: str) -> None:
        """Take a token for `operation`: sleep for a short wait, raise a transient error for a long one."""
        if not self._pace_enabled:
            return
        limit = self._limits[operation]
        wait = 0.0
        with self._locks[operation]:
            for _ in range(3):  # one sleep normally suffices; the bound covers a clock that does not move
                wait = limit.try_acquire(self._clock())
                if wait == 0.0:
                    return
                if wait > self._max_sleep:
                    break
                self._sleep(wait)
        raise TransientDeliveryError(
            wait, None, f"paced locally: {operation} is at Klaviyo's rate limit for this account"
        )

    def _send(self, method: str, path: str, payload: Mapping[str, Any]) -> httpx.Response:
        headers = {
            "Authorization": f"Klaviyo-API-Key {self._key.reveal()}",
            "revision": self.revision,
            "accept": JSON_API,
            "content-type": JSON_API,
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        try:
            return self._client.request(method, self.base_url + path, content=body, headers=headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise self._scrub(TerminalDeliveryError(None, f"bad Klaviyo URL: {error}")) from None
        except httpx.TimeoutException as error:
            # Klaviyo may have recorded the request: the unique_id makes the retry harmless.
            raise TransientDeliveryError(None, None, f"timed out talking to Klaviyo ({type(error).__name__})") from None
        except httpx.RequestError as error:
            raise self._scrub(
                TransientDeliveryError(None, None, f"could not reach Klaviyo: {type(error).__name__}: {error}")
            ) from None

    def _scrub(self, error: DeliveryError) -> DeliveryError:
        """The same error with the private key removed from its detail (Klaviyo or a proxy might echo it)."""
        key = self._key.reveal()
        if key not in error.detail:
            return error
        detail = error.detail.replace(key, "<redacted>")
        if isinstance(error, TransientDeliveryError):
            return TransientDeliveryError(error.retry_after, error.status, detail)
        return TerminalDeliveryError(error.status, detail)

"""A fake Klaviyo for tests, the demo and benchmarks, held to Klaviyo's official OpenAPI spec (rev. 2026-07-15).

What it checks, in Klaviyo's order: the route (404/405), `Authorization: Klaviyo-API-Key ...` (401), the
`revision` header (400), the key's scopes against the operation's `x-klaviyo-scopes` (403), the operation's
`x-klaviyo-ratelimit` per key with the domain's TokenBucket on an injectable clock (429 + `Retry-After`),
the content type (415), then the body against the operation's requestBody schema (400 in Klaviyo's error
shape, with `source.pointer`). Limits and scopes are read from the spec, not restated here. Without the full
spec (an installed package has no shared/ folder) it uses the subset shipped in the package, which holds the
operations recapture and the fake use with their components unchanged (klaviyo_spec_subset.py).

Then it behaves like Klaviyo where recapture depends on it: a repeated unique_id for the same
profile+metric is recorded once (still 202); without a unique_id the time to the second is the key, so at
most one event per profile+metric per second is kept; a bulk request that repeats a unique_id for a
profile+metric is rejected whole (400); a profile needs an identifier, emails and E.164 phones must be
well-formed, event times lie after 1990 and at most a year ahead. It can inject faults (500s, 429s, HTML 403
Cloudflare challenges, slow answers) and records what it accepted: `fake.accepted_events`, `fake.profiles`,
`fake.subscriptions`, also served at `GET /_fake/events|profiles|subscriptions|stats` for out-of-process tests
(`POST /_fake/faults` queues faults, `POST /_fake/reset` forgets everything).

Validation: `jsonschema` + `referencing`, not openapi-core. Only request bodies need checking, the spec is a
3 MB document of which openapi-core would build and validate every path on load, and openapi-core brings a
dozen further dependencies; jsonschema resolves the spec's `#/components/schemas/...` references through a
`referencing.Registry` holding the components once. OpenAPI 3.0's schema dialect differs from JSON Schema in
three ways that matter here, and `_to_json_schema` translates them: `nullable: true` (a type, `$ref`, enum or
oneOf that also admits null), `$ref` siblings (ignored in 3.0: Draft 4 semantics), and formats (date-time and
date are checked as RFC 3339). Beyond the spec, like Klaviyo ("'x' is not a valid field for the resource
'profile'"), an attribute a resource does not declare is refused: every object schema that lists properties
gets `additionalProperties: false` unless it is composed with allOf; free-form objects (`properties`) stay free.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import uvicorn
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError, relevance
from referencing import Registry
from referencing.jsonschema import DRAFT4
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from recapture.domain.rate_limit import RateLimit

SPEC_ENV: Final = "RECAPTURE_KLAVIYO_SPEC"
SPEC_RELATIVE: Final = Path("contracts") / "klaviyo" / "openapi-stable.json"
JSON_API: Final = "application/vnd.api+json"
_URI: Final = "urn:recapture:klaviyo-openapi"
_MAX_VIOLATIONS: Final = 5
_MAX_FAULT_DELAY: Final = 30.0
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.pre)?$")
IDENTIFIER_FIELDS: Final = ("email", "phone_number", "external_id", "_kx", "anonymous_id")
# The part of the spec recapture needs, for installs without shared/ (see klaviyo_spec_subset.py), and its licence.
PACKAGED_SPEC: Final = Path(__file__).with_name("klaviyo_openapi_subset.json")
PACKAGED_LICENSE: Final = Path(__file__).with_name("klaviyo_openapi_subset.LICENSE")
SUBSET_KEY: Final = "x-recapture-subset"
COMPOSED_ELSEWHERE: Final = "allof_members_outside"
# The operations the fake answers (others in the spec are validated, then answered 501).
IMPLEMENTED_OPERATIONS: Final = (
    "create_event", "bulk_create_events", "create_or_update_profile", "bulk_subscribe_profiles", "get_events",
)


# ---------------------------------------------------------------------------------------------- the spec


def find_full_spec(explicit: str | Path | None = None) -> Path | None:
    """Klaviyo's full spec: the argument, $RECAPTURE_KLAVIYO_SPEC, $RECAPTURE_SHARED_DIR/contracts/..., or a
    shared/ folder beside the working directory or beside the project that holds this file; None when absent.

    A path given explicitly (argument or $RECAPTURE_KLAVIYO_SPEC) must exist: a typo never falls back silently.
    """
    named = explicit or os.environ.get(SPEC_ENV)
    if named:
        if not Path(named).is_file():
            raise FileNotFoundError(f"Klaviyo's OpenAPI spec is not at {named}")
        return Path(named)
    return next((candidate for candidate in shared_candidates() if candidate.is_file()), None)


def shared_candidates() -> list[Path]:
    """Where a checkout of the repository keeps the full spec (shared/ beside the project)."""
    candidates: list[Path] = []
    if os.environ.get("RECAPTURE_SHARED_DIR"):
        candidates.append(Path(os.environ["RECAPTURE_SHARED_DIR"]) / SPEC_RELATIVE)
    for base in (Path.cwd(), *Path.cwd().parents[:3], *Path(__file__).resolve().parents[3:7]):
        candidates.extend((base / "shared" / SPEC_RELATIVE, base.parent / "shared" / SPEC_RELATIVE))
    return candidates


def find_spec(explicit: str | Path | None = None) -> Path:
    """The full spec when there is one (see `find_full_spec`), else the subset packaged with recapture."""
    return find_full_spec(explicit) or PACKAGED_SPEC


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    scopes: tuple[str, ...]
    rate_limits: tuple[str, ...]
    body_schema: Mapping[str, Any] | None  # JSON Schema of the requestBody (application/vnd.api+json)


@dataclass(frozen=True, slots=True)
class Violation:
    pointer: str
    detail: str


class KlaviyoSpec:
    """Operations of the spec (route, scopes, rate limits) and validators for their request bodies."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.revision: str = document["info"]["version"]
        # A subset of the spec names the components that operations left out of it compose (see klaviyo_spec_subset).
        composed = allof_members(document["components"]["schemas"]) | set(
            document.get(SUBSET_KEY, {}).get(COMPOSED_ELSEWHERE, ()))
        schemas = {
            name: _to_json_schema(schema, strict=name not in composed)
            for name, schema in document["components"]["schemas"].items()
        }
        self.schemas: Mapping[str, Any] = schemas  # as JSON Schema: what validation of each component uses
        resource = DRAFT4.create_resource({"components": {"schemas": schemas}})
        self._registry: Registry[Any] = Registry().with_resource(_URI, resource)
        self.operations: dict[str, Operation] = {}
        self._exact: dict[tuple[str, str], Operation] = {}
        self._templated: list[Operation] = []
        for path, item in document["paths"].items():
            for method, spec in item.items():
                if method not in {"get", "post", "put", "patch", "delete"} or not isinstance(spec, dict):
                    continue
                operation = Operation(
                    operation_id=spec["operationId"],
                    method=method.upper(),
                    path=path,
                    pattern=re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"),
                    scopes=tuple(spec.get("x-klaviyo-scopes", ())),
                    rate_limits=tuple(spec.get("x-klaviyo-ratelimit", {}).values()),  # burst, steady, daily
                    body_schema=_body_schema(spec),
                )
                self.operations[operation.operation_id] = operation
                if "{" in path:
                    self._templated.append(operation)
                else:
                    self._exact[(operation.method, path)] = operation
        self._exact_paths = frozenset(path for _, path in self._exact)
        self.all_scopes: frozenset[str] = frozenset(s for op in self.operations.values() for s in op.scopes)
        self._validators: dict[str, Draft4Validator] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None) -> KlaviyoSpec:
        """The spec at `path`, else the full spec found or the packaged subset (see `find_spec`), parsed once."""
        return _load_spec(str(find_spec(path).resolve()))

    def match(self, method: str, path: str) -> tuple[Operation | None, bool]:
        """(operation, path_known): the operation for this method and path; path_known tells 405 from 404."""
        path = "/" + path.strip("/")  # Klaviyo answers with and without the trailing slash
        operation = self._exact.get((method, path))
        if operation is not None:
            return operation, True
        known = path in self._exact_paths
        for candidate in self._templated:
            if candidate.pattern.match(path):
                if candidate.method == method:
                    return candidate, True
                known = True
        return None, known

    def validate(self, operation_id: str, body: Any) -> list[Violation]:
        """Violations of the operation's requestBody schema, the most relevant first ([] when valid)."""
        validator = self._validator(operation_id)
        errors = sorted(validator.iter_errors(body), key=relevance)
        violations: list[Violation] = []
        for error in errors:
            for violation in _violations(error, body):
                if violation not in violations:
                    violations.append(violation)
        return violations[:_MAX_VIOLATIONS]

    def _validator(self, operation_id: str) -> Draft4Validator:
        with self._lock:
            validator = self._validators.get(operation_id)
            if validator is None:
                schema = self.operations[operation_id].body_schema
                if schema is None:
                    raise KeyError(f"{operation_id} takes no JSON body")
                validator = Draft4Validator(schema, registry=self._registry, format_checker=_FORMATS)
                self._validators[operation_id] = validator
            return validator


@functools.lru_cache(maxsize=4)
def _load_spec(path: str) -> KlaviyoSpec:
    with open(path, encoding="utf-8") as handle:
        return KlaviyoSpec(json.load(handle))


def _body_schema(operation: Mapping[str, Any]) -> Mapping[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get(JSON_API, {}).get("schema")
    return _to_json_schema(schema, strict=True) if isinstance(schema, dict) else None


def allof_members(schemas: Mapping[str, Any]) -> set[str]:
    """Components used inside an allOf: closing them would refuse the properties of their siblings."""
    names: set[str] = set()

    def walk(node: Any, in_allof: bool) -> None:
        if isinstance(node, dict):
            if in_allof and isinstance(node.get("$ref"), str):
                names.add(node["$ref"].rsplit("/", 1)[-1])
            for key, value in node.items():
                walk(value, key == "allOf")
        elif isinstance(node, list):
            for item in node:
                walk(item, in_allof)

    walk(dict(schemas), False)
    return names


def _to_json_schema(node: Any, strict: bool) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema (Draft 4): nullable, absolute $refs, closed resources (see module doc)."""
    if isinstance(node, list):
        return [_to_json_schema(item, strict) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith("#/"):
            return _nullable({"$ref": _URI + value}, node)  # 3.0 ignores the siblings of $ref (but nullable)
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _to_json_schema(sub, strict) for name, sub in value.items()}
        elif key in {"items", "not"} or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _to_json_schema(value, strict)
        elif key in {"allOf", "anyOf", "oneOf"} and isinstance(value, list):
            out[key] = [_to_json_schema(item, strict and key != "allOf") for item in value]
        elif key not in {"nullable", "example", "discriminator", "readOnly", "writeOnly", "xml", "externalDocs"}:
            out[key] = value
    if strict and "properties" in out and "additionalProperties" not in out and "allOf" not in out:
        out["additionalProperties"] = False
    return _nullable(out, node)


def _nullable(schema: dict[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
    if original.get("nullable") is not True:
        return schema
    if isinstance(schema.get("type"), str):
        schema = {**schema, "type": [schema["type"], "null"]}
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    if isinstance(schema.get("oneOf"), list):
        return {**schema, "oneOf": [*schema["oneOf"], {"type": "null"}]}
    return {"anyOf": [schema, {"type": "null"}]}


_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time with an offset")
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


@_FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if isinstance(value, str):
        datetime.strptime(value, "%Y-%m-%d")  # a calendar date: no zone to attach
    return True


def _pointer(parts: Iterable[Any]) -> str:
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _resource_type(body: Any, path: Iterable[Any]) -> str:
    """The JSON:API `type` of the innermost resource object around `path` (for Klaviyo-like messages)."""
    found = "resource"
    node = body
    for part in (None, *path):
        if part is not None:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        if isinstance(node, dict) and isinstance(node.get("type"), str):
            found = node["type"]
    return found


def _violations(error: ValidationError, body: Any) -> list[Violation]:
    path = list(error.absolute_path)
    resource = _resource_type(body, path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return [
            Violation(_pointer([*path, name]), f"'{name}' is not a valid field for the resource '{resource}'.")
            for name in error.instance
            if name not in declared
        ]
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(error.validator_value, list):
        return [
            Violation(_pointer([*path, name]), f"'{name}' is a required field for the resource '{resource}'.")
            for name in error.validator_value
            if name not in error.instance
        ]
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    return [Violation(_pointer(path), message)]


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    id: str
    profile_id: str
    metric: str
    unique_id: str | None
    time: str
    value: float | None
    value_currency: str | None
    properties: dict[str, Any]
    identifiers: dict[str, str]
    operation: str
    received_at: float


@dataclass(slots=True)
class FakeProfile:
    id: str
    identifiers: dict[str, str]
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AcceptedSubscription:
    profile_id: str
    email: str | None
    phone_number: str | None
    channels: dict[str, Any]
    list_id: str | None
    custom_source: str | None


FaultKind = Literal["error", "throttle", "challenge", "slow"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One injected answer: `error` (status, default 500), `throttle` (429 + Retry-After), `challenge`
    (Cloudflare's HTML 403), or `slow` (waits `delay` seconds, then answers normally). `operation` limits it
    to one operationId (e.g. "create_event"); faults are used up in order, one request each."""

    kind: FaultKind
    status: int = 500
    retry_after: int = 1
    delay: float = 0.0
    operation: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        kind = data.get("kind")
        if kind not in ("error", "throttle", "challenge", "slow"):
            raise ValueError(f"unknown fault kind {kind!r}")
        delay = float(data.get("delay", 0.0))
        if not 0 <= delay <= _MAX_FAULT_DELAY:
            raise ValueError(f"a fault delay lies within 0..{_MAX_FAULT_DELAY} s")
        return cls(kind=kind, status=int(data.get("status", 500)), retry_after=int(data.get("retry_after", 1)),
                   delay=delay, operation=data.get("operation"))


class _Rejection(Exception):
    """Not an error: a control-flow signal that carries the HTTP answer to give."""

    def __init__(self, response: Response) -> None:
        self.response = response


# ---------------------------------------------------------------------------------------------- the fake


class FakeKlaviyo:
    """The fake as an ASGI app (`.app` is the Starlette app) with its records; thread-safe to inspect."""

    def __init__(
        self,
        spec: KlaviyoSpec,
        keys: Mapping[str, Iterable[str]] | None = None,
        clock: Callable[[], float] = time.time,
        faults: Iterable[Fault] = (),
        rate_limits: bool = True,
    ) -> None:
        self.spec = spec
        # key -> granted scopes; None accepts any "pk_..." key with every scope of the spec.
        self._keys = None if keys is None else {key: _with_reads(scopes) for key, scopes in keys.items()}
        self._clock = clock
        self._rate_limits = rate_limits
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)
        self._reset_state()
        self.app = Starlette(routes=[
            Route("/_fake/events", self._fake_events, methods=["GET"]),
            Route("/_fake/profiles", self._fake_profiles, methods=["GET"]),
            Route("/_fake/subscriptions", self._fake_subscriptions, methods=["GET"]),
            Route("/_fake/stats", self._fake_stats, methods=["GET"]),
            Route("/_fake/faults", self._fake_faults, methods=["GET", "POST"]),
            Route("/_fake/reset", self._fake_reset, methods=["POST"]),
            Route("/{path:path}", self._api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    # -- what tests read

    @property
    def accepted_events(self) -> list[AcceptedEvent]:
        with self._lock:
            return list(self._events)

    @property
    def profiles(self) -> dict[str, FakeProfile]:
        with self._lock:
            return {pid: FakeProfile(p.id, dict(p.identifiers), dict(p.attributes))
                    for pid, p in self._profiles.items()}

    @property
    def subscriptions(self) -> list[AcceptedSubscription]:
        with self._lock:
            return list(self._subscriptions)

    def count(self, status: int | None = None, operation: str | None = None) -> int:
        """How many requests got `status` (any when None) for `operation` (any when None)."""
        with self._lock:
            return sum(n for (op, code), n in self._answers.items()
                       if (status is None or code == status) and (operation is None or op == operation))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            operations: dict[str, dict[str, int]] = {}
            for (op, code), n in sorted(self._answers.items()):
                operations.setdefault(op, {})[str(code)] = n
            statuses: Counter[str] = Counter()
            for (_, code), n in self._answers.items():
                statuses[str(code)] += n
            return {"requests": sum(statuses.values()), "statuses": dict(statuses), "operations": operations,
                    "events": len(self._events), "duplicates_dropped": self._duplicates,
                    "profiles": len(self._profiles), "subscriptions": len(self._subscriptions)}

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._reset_state()

    def _reset_state(self) -> None:
        self._events: list[AcceptedEvent] = []
        self._event_keys: set[tuple[str, str, str]] = set()
        self._duplicates = 0
        self._profiles: dict[str, FakeProfile] = {}
        self._index: dict[tuple[str, str], str] = {}
        self._subscriptions: list[AcceptedSubscription] = []
        self._answers: Counter[tuple[str, int]] = Counter()
        self._buckets: dict[tuple[str, str], RateLimit] = {}
        self._faults = []
        self._serial = 0

    # -- /_fake endpoints

    async def _fake_events(self, request: Request) -> Response:
        return _json(200, [asdict(event) for event in self.accepted_events])

    async def _fake_profiles(self, request: Request) -> Response:
        return _json(200, [asdict(profile) for profile in self.profiles.values()])

    async def _fake_subscriptions(self, request: Request) -> Response:
        return _json(200, [asdict(sub) for sub in self.subscriptions])

    async def _fake_stats(self, request: Request) -> Response:
        return _json(200, self.stats())

    async def _fake_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                payload = json.loads(await request.body())
                items = payload if isinstance(payload, list) else [payload]
                self.inject(*(Fault.from_json(item) for item in items))
            except (ValueError, TypeError, AttributeError) as error:
                return _json(400, {"error": str(error)})
        with self._lock:
            return _json(200, [asdict(fault) for fault in self._faults])

    async def _fake_reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)

    # -- the API

    async def _api(self, request: Request) -> Response:
        operation, known = self.spec.match(request.method, request.url.path)
        operation_id = operation.operation_id if operation else "unknown"
        try:
            raw = await request.body()  # read first: a slow answer still processes what the client sent
        except ClientDisconnect:
            return Response(status_code=499)
        try:
            fault = self._take_fault(operation_id)
            if fault is not None:
                if fault.kind != "slow":
                    raise _Rejection(_fault_response(fault))
                await asyncio.sleep(min(fault.delay, _MAX_FAULT_DELAY))
            if operation is None:
                raise _Rejection(_error(405 if known else 404, "method_not_allowed" if known else "not_found",
                                        "Method not allowed." if known else "Not found.",
                                        f"{request.method} {request.url.path} is not an operation of the API."))
            key = self._authenticate(request)
            self._check_revision(request)
            self._authorize(key, operation)
            self._throttle(key, operation)
            body = self._body(request, operation, raw)
            response = self._handle(operation, body, request)
        except _Rejection as rejection:
            response = rejection.response
        with self._lock:
            self._answers[(operation_id, response.status_code)] += 1
        return response

    def _take_fault(self, operation_id: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.operation is None or fault.operation == operation_id:
                    return self._faults.pop(index)
        return None

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme != "Klaviyo-API-Key" or not key.strip():
            raise _Rejection(_error(401, "not_authenticated", "Authentication credentials were not provided.",
                                    "Missing or invalid authorization scheme. Please use Klaviyo-API-Key."))
        key = key.strip()
        known = key.startswith("pk_") if self._keys is None else key in self._keys
        if not known:
            raise _Rejection(_error(401, "authentication_failed", "Incorrect authentication credentials.",
                                    "Incorrect authentication credentials."))
        return key

    def _check_revision(self, request: Request) -> None:
        revision = request.headers.get("revision")
        if not revision:
            raise _Rejection(_error(400, "invalid", "Invalid input.", "The 'revision' header is required.",
                                    parameter="revision"))
        match = _REVISION.match(revision.strip())
        if match is None or match.group(1) > self.spec.revision:
            raise _Rejection(_error(400, "invalid", "Invalid input.",
                                    f"Invalid revision '{revision}': the latest is {self.spec.revision}.",
                                    parameter="revision"))

    def _authorize(self, key: str, operation: Operation) -> None:
        granted = self.spec.all_scopes if self._keys is None else self._keys[key]
        missing = [scope for scope in operation.scopes if scope not in granted]
        if missing:
            raise _Rejection(_error(403, "permission_denied", "You do not have permission to perform this action.",
                                    f"This API key is missing required scopes: {', '.join(missing)}."))

    def _throttle(self, key: str, operation: Operation) -> None:
        if not self._rate_limits or not operation.rate_limits:
            return
        with self._lock:
            limit = self._buckets.get((key, operation.operation_id))
            if limit is None:
                limit = self._buckets[(key, operation.operation_id)] = RateLimit.of(*operation.rate_limits)
            wait = limit.try_acquire(self._clock())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise _Rejection(_error(429, "throttled", "Request was throttled.",
                                    f"Request was throttled. Expected available in {seconds} second"
                                    f"{'' if seconds == 1 else 's'}.", headers={"Retry-After": str(seconds)}))

    def _body(self, request: Request, operation: Operation, raw: bytes) -> Any:
        if operation.body_schema is None:
            return None
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (JSON_API, "application/json"):
            raise _Rejection(_error(415, "unsupported_media_type", "Unsupported media type.",
                                    f"Unsupported media type \"{content_type}\" in request."))
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise _Rejection(_error(400, "parse_error", "Malformed request.", f"JSON parse error - {error}",
                                    pointer="/")) from None
        violations = self.spec.validate(operation.operation_id, body)
        if violations:
            raise _Rejection(_invalid(violations))
        return body

    # -- operations

    def _handle(self, operation: Operation, body: Any, request: Request) -> Response:
        handler = {
            "create_event": self._create_event,
            "bulk_create_events": self._bulk_create_events,
            "create_or_update_profile": self._import_profile,
            "bulk_subscribe_profiles": self._bulk_subscribe,
            "get_events": self._get_events,
        }.get(operation.operation_id)
        if handler is None:
            return _error(501, "not_implemented", "Not implemented.",
                          f"The fake Klaviyo validates {operation.operation_id} but does not implement it.")
        return handler(body, request)

    def _create_event(self, body: Any, request: Request) -> Response:
        attributes = body["data"]["attributes"]
        event = self._check_event(attributes, "/data/attributes")
        profile = _check_profile(attributes["profile"]["data"], "/data/attributes/profile/data")
        with self._lock:
            profile_id = self._upsert(profile)
            self._record(profile_id, event, profile, "create_event")
        return Response(status_code=202)

    def _bulk_create_events(self, body: Any, request: Request) -> Response:
        entries = body["data"]["attributes"]["events-bulk-create"]["data"]
        checked: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        seen: set[tuple[tuple[tuple[str, str], ...], str, str]] = set()
        base = "/data/attributes/events-bulk-create/data"
        for i, entry in enumerate(entries):
            profile = _check_profile(entry["attributes"]["profile"]["data"], f"{base}/{i}/attributes/profile/data")
            identity = tuple(sorted((k, v) for k, v in _identifiers(profile).items()))
            events = []
            for j, raw in enumerate(entry["attributes"]["events"]["data"]):
                pointer = f"{base}/{i}/attributes/events/data/{j}/attributes"
                event = self._check_event(raw["attributes"], pointer)
                if event["unique_id"] is not None:
                    key = (identity, event["metric"], event["unique_id"])
                    if key in seen:
                        raise _Rejection(_invalid([Violation(
                            pointer + "/unique_id",
                            f"unique_id '{event['unique_id']}' is repeated for the same profile and metric; "
                            "no events were processed.")]))
                    seen.add(key)
                events.append(event)
            checked.append((profile, events))
        with self._lock:
            for profile, events in checked:
                profile_id = self._upsert(profile)
                for event in events:
                    self._record(profile_id, event, profile, "bulk_create_events")
        return _json(202, {"data": {"type": "event-bulk-create-job", "id": uuid.uuid4().hex,
                                    "attributes": {"status": "queued"}}})

    def _import_profile(self, body: Any, request: Request) -> Response:
        data = _check_profile(body["data"], "/data")
        with self._lock:
            existing = self._find(data)
            profile_id = self._upsert(data)
            profile = self._profiles[profile_id]
            document = {"data": {"type": "profile", "id": profile_id,
                                 "attributes": {**profile.identifiers, **profile.attributes},
                                 "links": {"self": f"{request.base_url}api/profiles/{profile_id}/"}}}
        return _json(200 if existing else 201, document)

    def _bulk_subscribe(self, body: Any, request: Request) -> Response:
        data = body["data"]
        list_data = data.get("relationships", {}).get("list", {}).get("data")
        list_id = list_data["id"] if isinstance(list_data, dict) else None
        profiles = []
        for i, entry in enumerate(data["attributes"]["profiles"]["data"]):
            attributes = entry["attributes"]
            pointer = f"/data/attributes/profiles/data/{i}/attributes"
            if not attributes.get("email") and not attributes.get("phone_number"):
                raise _Rejection(_invalid([Violation(pointer, "Either email or phone_number is required.")]))
            profile = {"attributes": {k: attributes[k] for k in ("email", "phone_number") if attributes.get(k)}}
            _check_identifiers(profile["attributes"], pointer)
            profiles.append((profile, attributes["subscriptions"]))
        with self._lock:
            for profile, channels in profiles:
                profile_id = self._upsert(profile)
                attrs = profile["attributes"]
                self._subscriptions.append(AcceptedSubscription(
                    profile_id=profile_id, email=attrs.get("email"), phone_number=attrs.get("phone_number"),
                    channels=channels, list_id=list_id, custom_source=data["attributes"].get("custom_source")))
        return Response(status_code=202)

    def _get_events(self, body: Any, request: Request) -> Response:
        with self._lock:
            events = list(self._events)
        return _json(200, {"data": [
            {"type": "event", "id": event.id,
             "attributes": {"timestamp": int(datetime.fromisoformat(event.time).timestamp()),
                            "event_properties": event.properties, "datetime": event.time, "uuid": event.id},
             "relationships": {"profile": {"data": {"type": "profile", "id": event.profile_id}},
                               "metric": {"data": {"type": "metric", "id": event.metric}}}}
            for event in events
        ], "links": {"self": str(request.url), "next": None, "prev": None}})

    # -- semantics beyond the schema

    def _check_event(self, attributes: Mapping[str, Any], pointer: str) -> dict[str, Any]:
        name = attributes["metric"]["data"]["attributes"]["name"]
        if not name or len(name) >= 128:
            raise _Rejection(_invalid([Violation(pointer + "/metric/data/attributes/name",
                                                 "A metric name must be 1 to 127 characters long.")]))
        now = datetime.fromtimestamp(self._clock(), UTC)
        raw_time = attributes.get("time")
        when = datetime.fromisoformat(raw_time.replace("Z", "+00:00")) if raw_time else now
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when.year < 1990 or when > now + timedelta(days=365):
            raise _Rejection(_invalid([Violation(pointer + "/time",
                                                 "The time must be after 1990 and at most a year in the future.")]))
        properties = attributes.get("properties") or {}
        if len(properties) > 400:
            raise _Rejection(_invalid([Violation(pointer + "/properties", "An event has at most 400 properties.")]))
        value = attributes.get("value")
        return {"metric": name, "unique_id": attributes.get("unique_id"),
                "time": when.astimezone(UTC).replace(microsecond=0).isoformat(),
                "value": float(value) if value is not None else None,
                "value_currency": attributes.get("value_currency"), "properties": properties}

    def _find(self, profile: Mapping[str, Any]) -> str | None:
        if profile.get("id") in self._profiles:
            return str(profile["id"])
        for name, value in _identifiers(profile).items():
            found = self._index.get((name, value))
            if found is not None:
                return found
        return None

    def _upsert(self, profile: Mapping[str, Any]) -> str:
        """The profile's id, created or updated (identifiers are added, attributes set; null clears)."""
        profile_id = self._find(profile)
        if profile_id is None:
            self._serial += 1
            profile_id = f"01FAKEPROFILE{self._serial:013d}"
            self._profiles[profile_id] = FakeProfile(profile_id, {})
        stored = self._profiles[profile_id]
        for name, value in _identifiers(profile).items():
            if (name, value) not in self._index and name not in stored.identifiers:
                stored.identifiers[name] = value
                self._index[(name, value)] = profile_id
        for name, value in profile.get("attributes", {}).items():
            if name in IDENTIFIER_FIELDS or name == "meta":
                continue
            if value is None:
                stored.attributes.pop(name, None)
            elif name == "properties" and isinstance(value, dict):
                stored.attributes["properties"] = {**stored.attributes.get("properties", {}), **value}
            else:
                stored.attributes[name] = value
        return profile_id

    def _record(self, profile_id: str, event: Mapping[str, Any], profile: Mapping[str, Any], via: str) -> None:
        # Klaviyo's rule: the unique_id, or else the time to the second, is recorded once per profile+metric.
        key = (profile_id, event["metric"], event["unique_id"] or f"time:{event['time']}")
        if key in self._event_keys:
            self._duplicates += 1
            return
        self._event_keys.add(key)
        self._serial += 1
        self._events.append(AcceptedEvent(
            id=f"01FAKEEVENT{self._serial:015d}", profile_id=profile_id, metric=event["metric"],
            unique_id=event["unique_id"], time=event["time"], value=event["value"],
            value_currency=event["value_currency"], properties=dict(event["properties"]),
            identifiers=_identifiers(profile), operation=via, received_at=self._clock()))


def _identifiers(profile: Mapping[str, Any]) -> dict[str, str]:
    attributes = profile.get("attributes") or {}
    found = {name: attributes[name] for name in IDENTIFIER_FIELDS if attributes.get(name)}
    if "email" in found:
        found["email"] = found["email"].strip().lower()
    return found


def _check_profile(profile: Mapping[str, Any], pointer: str) -> dict[str, Any]:
    attributes = profile.get("attributes") or {}
    if not _identifiers(profile) and not profile.get("id"):
        raise _Rejection(_invalid([Violation(pointer + "/attributes",
                                             "A profile needs at least one identifier (id, email, phone_number, "
                                             "external_id, _kx or anonymous_id).")]))
    _check_identifiers(attributes, pointer + "/attributes")
    return dict(profile)


def _check_identifiers(attributes: Mapping[str, Any], pointer: str) -> None:
    email = attributes.get("email")
    if email and not _EMAIL.match(email):
        raise _Rejection(_invalid([Violation(pointer + "/email", f"Invalid email address '{email}'.")]))
    phone = attributes.get("phone_number")
    if phone and not _E164.match(phone):
        raise _Rejection(_invalid([Violation(pointer + "/phone_number",
                                             f"Invalid phone number format '{phone}': use E.164, e.g. +15005550006.")]))


def _with_reads(scopes: Iterable[str]) -> frozenset[str]:
    granted = set(scopes)
    granted.update(scope.replace(":write", ":read") for scope in list(granted) if scope.endswith(":write"))
    return frozenset(granted)


# ---------------------------------------------------------------------------------------------- answers


def _json(status: int, document: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(document), status_code=status, media_type=JSON_API, headers=dict(headers or {}))


def _error(status: int, code: str, title: str, detail: str, *, pointer: str | None = None,
           parameter: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
    source = {"pointer": pointer} if pointer is not None else {"parameter": parameter} if parameter else {}
    item = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title, "detail": detail,
            "source": source, "links": {}, "meta": {}}
    return _json(status, {"errors": [item]}, headers)


def _invalid(violations: Iterable[Violation]) -> Response:
    errors = [{"id": str(uuid.uuid4()), "status": 400, "code": "invalid", "title": "Invalid input.",
               "detail": violation.detail, "source": {"pointer": violation.pointer}, "links": {}, "meta": {}}
              for violation in violations]
    return _json(400, {"errors": errors})


def _fault_response(fault: Fault) -> Response:
    if fault.kind == "throttle":
        return _error(429, "throttled", "Request was throttled.",
                      f"Request was throttled. Expected available in {fault.retry_after} seconds.",
                      headers={"Retry-After": str(fault.retry_after)})
    if fault.kind == "challenge":
        page = ("<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
                "<body>Checking your browser</body></html>")
        return Response(page, status_code=403, media_type="text/html",
                        headers={"cf-mitigated": "challenge", "Retry-After": str(fault.retry_after)})
    return _error(fault.status, "error", "A server error occurred.", "The fake Klaviyo injected this error.")


# ---------------------------------------------------------------------------------------------- running it


def build_fake_klaviyo(
    spec_path: str | Path | None = None,
    keys: Mapping[str, Iterable[str]] | None = None,
    clock: Callable[[], float] = time.time,
    faults: Iterable[Fault] = (),
    rate_limits: bool = True,
) -> FakeKlaviyo:
    """A fake Klaviyo: `keys` maps private keys to their scopes (None: any "pk_..." key, all scopes)."""
    return FakeKlaviyo(KlaviyoSpec.load(spec_path), keys=keys, clock=clock, faults=faults, rate_limits=rate_limits)


def serve_fake_klaviyo(
    host: str = "127.0.0.1", port: int = 8011, *, keys: Mapping[str, Iterable[str]] | None = None,
    spec_path: str | Path | None = None, rate_limits: bool = True,
) -> None:
    """Run the fake until interrupted (what `recapture fake-klaviyo` does)."""
    fake = build_fake_klaviyo(spec_path, keys=keys, rate_limits=rate_limits)
    uvicorn.run(fake, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class FakeKlaviyoServer:
    """The fake on a real socket (uvicorn in a daemon thread): `with FakeKlaviyoServer(fake) as server: server.url`."""

    def __init__(self, fake: FakeKlaviyo, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.fake = fake
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(fake, host=host, port=self.port, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-klaviyo", daemon=True)

    def __enter__(self) -> FakeKlaviyoServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        if not self._server.started:
            self._server.should_exit = True
            raise RuntimeError(f"the fake Klaviyo did not start on {self.url}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

"""The subset of Klaviyo's spec shipped in the package: generated from the full spec, never drifting from it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from recapture.adapters.destinations import fake_klaviyo
from recapture.adapters.destinations.fake_klaviyo import (
    IMPLEMENTED_OPERATIONS,
    PACKAGED_LICENSE,
    PACKAGED_SPEC,
    FakeKlaviyo,
    FakeKlaviyoServer,
    KlaviyoSpec,
    find_spec,
)
from recapture.adapters.destinations.klaviyo import OPERATIONS, SCOPE_PROBES
from recapture.adapters.destinations.klaviyo_spec_subset import extract_subset, operations_used, subset_of
from tests.support import SHARED

FULL_SPEC = SHARED / "contracts" / "klaviyo" / "openapi-stable.json"
HEADERS = {"Authorization": "Klaviyo-API-Key pk_subset_test", "revision": "2026-07-15",
           "content-type": "application/vnd.api+json"}


@pytest.fixture(scope="module")
def full_document() -> dict[str, object]:
    if not FULL_SPEC.is_file():
        pytest.skip(f"Klaviyo's full spec is not at {FULL_SPEC}: nothing to compare the subset with")
    document: dict[str, object] = json.loads(FULL_SPEC.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def subset() -> KlaviyoSpec:
    return KlaviyoSpec.load(PACKAGED_SPEC)


def test_the_packaged_subset_is_exactly_what_the_extraction_gives_today(full_document: dict[str, object]) -> None:
    """Re-extracting from the full spec gives the packaged file byte for byte, and its licence is Klaviyo's."""
    assert PACKAGED_SPEC.read_text(encoding="utf-8") == subset_of(FULL_SPEC), (
        "regenerate it: python -m recapture.adapters.destinations.klaviyo_spec_subset")
    assert PACKAGED_LICENSE.read_text(encoding="utf-8") == FULL_SPEC.with_name("LICENSE").read_text(encoding="utf-8")


def test_validation_on_the_subset_is_validation_on_the_full_spec(
    full_document: dict[str, object], subset: KlaviyoSpec,
) -> None:
    """Every operation and every component, as the validator uses them, is identical on both documents."""
    full = KlaviyoSpec(full_document)
    assert subset.revision == full.revision
    assert subset.schemas.items() <= full.schemas.items()
    for operation_id, operation in subset.operations.items():
        assert operation == full.operations[operation_id]
    assert set(subset.operations) == set(operations_used(full))


def test_the_subset_holds_every_operation_recapture_probes_sends_or_the_fake_answers(subset: KlaviyoSpec) -> None:
    """The client's operations, the scope probes and the fake's own operations are all in it."""
    assert set(OPERATIONS) | set(IMPLEMENTED_OPERATIONS) <= set(subset.operations)
    for method, path in SCOPE_PROBES.values():
        operation, _ = subset.match(method, path)
        assert operation is not None, (method, path)


def test_a_reference_to_a_missing_component_or_operation_is_refused() -> None:
    """The extraction fails loudly instead of shipping a subset that cannot resolve."""
    document = {"openapi": "3.0.2", "info": {"version": "x"}, "components": {"schemas": {}},
                "paths": {"/a": {"post": {"operationId": "a", "requestBody": {"$ref": "#/components/schemas/Gone"}}}}}
    with pytest.raises(LookupError, match="Gone"):
        extract_subset(document, ["a"])
    with pytest.raises(LookupError, match="b"):
        extract_subset(document, ["b"])


def test_without_a_full_spec_the_fake_falls_back_to_the_packaged_subset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """No shared/ folder anywhere (an installed package): find_spec gives the subset; a named path must exist."""
    monkeypatch.delenv("RECAPTURE_KLAVIYO_SPEC", raising=False)
    monkeypatch.setattr(fake_klaviyo, "shared_candidates", lambda: [tmp_path / "nowhere.json"])
    assert find_spec() == PACKAGED_SPEC
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        find_spec(tmp_path / "missing.json")


def test_the_fake_on_the_subset_answers_every_operation_it_implements(subset: KlaviyoSpec) -> None:
    """Served from the subset, no implemented operation is unknown (404) or unimplemented (501)."""
    with FakeKlaviyoServer(FakeKlaviyo(subset, rate_limits=False)) as server:
        for operation_id in IMPLEMENTED_OPERATIONS:
            operation = subset.operations[operation_id]
            answer = httpx.request(operation.method, server.url + operation.path, headers=HEADERS,
                                   content=b"{}" if operation.body_schema is not None else None)
            assert answer.status_code not in (404, 405, 501), (operation_id, answer.text)

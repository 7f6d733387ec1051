"""The part of Klaviyo's official OpenAPI spec that recapture needs, shipped inside the package.

The fake Klaviyo validates requests against Klaviyo's spec (3 MB, MIT, in `shared/contracts/klaviyo/` of the
repository). An installed package has no `shared/` folder, so the package carries a subset of it: the operations
recapture sends (`klaviyo.OPERATIONS`), the ones its scope probe sends (`klaviyo.SCOPE_PROBES`) and the ones the
fake serves (`fake_klaviyo.IMPLEMENTED_OPERATIONS`), with every component they reference, transitively, copied
unchanged. Validation on the subset is therefore the validation on the full spec for those operations; any other
operation is unknown to it (404).

The subset is generated, never edited: a test re-extracts it from the full spec and requires it to be identical.
Regenerate it after updating the full spec:

    .venv/bin/python -m recapture.adapters.destinations.klaviyo_spec_subset [path/to/openapi-stable.json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from recapture.adapters.destinations.fake_klaviyo import (
    COMPOSED_ELSEWHERE,
    IMPLEMENTED_OPERATIONS,
    PACKAGED_LICENSE,
    PACKAGED_SPEC,
    SUBSET_KEY,
    KlaviyoSpec,
    allof_members,
    find_full_spec,
)
from recapture.adapters.destinations.klaviyo import OPERATIONS, SCOPE_PROBES

METHODS: Final = frozenset({"get", "post", "put", "patch", "delete"})
COMPONENTS_PREFIX: Final = "#/components/"
# What the subset keeps of the spec's root besides its paths and components (the renderer's `x-readme` is dropped).
ROOT_KEYS: Final = ("openapi", "info", "servers", "security")


def operations_used(spec: KlaviyoSpec) -> tuple[str, ...]:
    """The operationIds recapture, its scope probe and the fake need, in a stable order."""
    probed: list[str] = []
    for method, path in SCOPE_PROBES.values():
        operation, _ = spec.match(method, path)
        if operation is None:
            raise LookupError(f"the scope probe {method} {path} is no operation of the spec")
        probed.append(operation.operation_id)
    return tuple(sorted({*OPERATIONS, *probed, *IMPLEMENTED_OPERATIONS}))


def extract_subset(document: Mapping[str, Any], operation_ids: Collection[str]) -> dict[str, Any]:
    """The spec reduced to these operations and the components they reference (order of the original kept)."""
    paths = _kept_paths(document["paths"], operation_ids)
    found = {op["operationId"] for item in paths.values() for method, op in item.items() if method in METHODS}
    if missing := set(operation_ids) - found:
        raise LookupError(f"operations not in the spec: {sorted(missing)}")
    needed = _referenced_components(document["components"], paths)
    components = {
        section: {name: schema for name, schema in entries.items() if (section, name) in needed}
        for section, entries in document["components"].items()
    }
    # The root's `security` names a scheme without a $ref: keep the schemes whole (one small entry).
    components["securitySchemes"] = dict(document["components"].get("securitySchemes", {}))
    tags = {tag for item in paths.values() for method, op in item.items() if method in METHODS
            for tag in op.get("tags", ())}
    subset: dict[str, Any] = {key: document[key] for key in ROOT_KEYS if key in document}
    kept = components["schemas"]
    subset[SUBSET_KEY] = {
        "source": "Klaviyo's openapi/stable spec (MIT, see the LICENSE file beside this one)",
        "operations": sorted(found),
        "generated_by": f"python -m {__package__}.{Path(__file__).stem}",
        # Components that operations outside the subset compose with allOf: the fake keeps them open, as on the
        # full spec, so that validation is the same on both.
        COMPOSED_ELSEWHERE: sorted((allof_members(document["components"]["schemas"]) & kept.keys())
                                   - allof_members(kept)),
    }
    subset["paths"] = paths
    subset["components"] = {section: entries for section, entries in components.items() if entries}
    subset["tags"] = [tag for tag in document.get("tags", ()) if tag.get("name") in tags]
    return subset


def _kept_paths(paths: Mapping[str, Any], operation_ids: Collection[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for path, item in paths.items():
        operations = {method: op for method, op in item.items()
                      if method in METHODS and isinstance(op, dict) and op.get("operationId") in operation_ids}
        if operations:
            shared = {key: value for key, value in item.items() if key not in METHODS}  # path-level parameters
            kept[path] = {**shared, **operations}
    return kept


def _referenced_components(components: Mapping[str, Any], roots: Any) -> set[tuple[str, str]]:
    """(section, name) of every component reachable from `roots` through `#/components/...` references."""
    needed: set[tuple[str, str]] = set()
    pending = list(_references(roots))
    while pending:
        section, name = pending.pop()
        if (section, name) in needed:
            continue
        if name not in components.get(section, {}):
            raise LookupError(f"dangling reference #/components/{section}/{name}")
        needed.add((section, name))
        pending.extend(_references(components[section][name]))
    return needed


def _references(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith(COMPONENTS_PREFIX):
            section, _, name = reference[len(COMPONENTS_PREFIX):].partition("/")
            yield section, name
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def render(subset: Mapping[str, Any]) -> str:
    """The file's exact text: one stable rendering, so that a re-extraction compares byte for byte."""
    return json.dumps(subset, indent=1, ensure_ascii=False) + "\n"


def subset_of(full_spec: Path) -> str:
    """The packaged file's text as extracted from the full spec at `full_spec`."""
    document = json.loads(full_spec.read_text(encoding="utf-8"))
    return render(extract_subset(document, operations_used(KlaviyoSpec(document))))


def write_subset(full_spec: Path, license_file: Path, target: Path = PACKAGED_SPEC,
                 target_license: Path = PACKAGED_LICENSE) -> None:
    target.write_text(subset_of(full_spec), encoding="utf-8")
    target_license.write_text(license_file.read_text(encoding="utf-8"), encoding="utf-8")


def main(arguments: Iterable[str] = ()) -> int:
    given = list(arguments)
    full_spec = Path(given[0]) if given else find_full_spec()
    if full_spec is None:
        print("Klaviyo's full spec was not found: pass its path", file=sys.stderr)
        return 2
    write_subset(full_spec, full_spec.with_name("LICENSE"))
    print(f"wrote {PACKAGED_SPEC} from {full_spec}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

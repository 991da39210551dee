"""Every permission the operator holds is listed in docs/security.md with the reason it needs
it: a rule added, changed or dropped in the manifests without the table following fails here."""

from __future__ import annotations

from typing import Any

from tests.manifests import ROOT, load_all

ROLES = ("stash-operator", "stash-operator-leader", "stash-webhook", "stash-webhook-certs")
Rule = tuple[str, frozenset[str], frozenset[str], frozenset[str], frozenset[str]]


def _words(cell: str) -> frozenset[str]:
    return frozenset(part.strip() for part in cell.split(","))


def _documented() -> dict[Rule, str]:
    text = (ROOT / "docs" / "security.md").read_text()
    table = text.split("## The operator's permissions", 1)[1].split("\n## ", 1)[0]
    rows: dict[Rule, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[0] in ("role", "---") or set(cells[0]) <= {"-"}:
            continue
        role, groups, resources, verbs, names, why = cells
        names_set = _words(names) if names else frozenset()
        rows[(role, _words(groups), _words(resources), _words(verbs), names_set)] = why
    return rows


def _granted() -> set[Rule]:
    found: set[Rule] = set()
    for path in ("operator.yaml", "webhook.yaml"):
        for doc in load_all(ROOT / "manifests" / "rbac" / path):
            name = doc["metadata"]["name"]
            if doc["kind"] not in ("ClusterRole", "Role") or name not in ROLES:
                continue
            rule: dict[str, Any]
            for rule in doc["rules"]:
                found.add(
                    (
                        name,
                        frozenset(rule["apiGroups"]),
                        frozenset(rule["resources"]),
                        frozenset(rule["verbs"]),
                        frozenset(rule.get("resourceNames") or ()),
                    )
                )
    return found


def test_every_permission_of_the_operator_is_documented_with_its_reason() -> None:
    documented = _documented()
    granted = _granted()
    assert granted, "no rules read from the manifests"
    missing = granted - set(documented)
    assert not missing, f"granted but not in docs/security.md: {sorted(map(str, missing))}"
    stale = set(documented) - granted
    assert not stale, f"in docs/security.md but not granted: {sorted(map(str, stale))}"
    assert all(len(why) > 20 for why in documented.values()), "every rule says why"

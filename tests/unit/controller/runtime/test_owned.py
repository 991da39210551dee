"""Applying what the operator keeps for invokers: a write whose echo will come is awaited, one
that changed nothing is not (no watch event ever comes for it)."""

from __future__ import annotations

from typing import Any

from api.objects import JSON
from controller.runtime.loop import Writes
from controller.runtime.owned import ensure


def role(version: str, **labels: str) -> JSON:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": "stash-trigger-nightly",
            "namespace": "demo",
            "resourceVersion": version,
            "labels": labels,
        },
    }


class _Store:
    """The cache and the API server in one: what is stored, and what an apply stores."""

    def __init__(self, stored: JSON, after_apply: JSON) -> None:
        self.stored, self.after_apply = stored, after_apply

    def get(self, rt: Any, namespace: str, name: str) -> JSON:
        return self.stored

    def apply(self, desired: JSON, field_manager: str) -> JSON:
        return self.after_apply


def _desired() -> JSON:
    desired = role("", app="stash")
    del desired["metadata"]["resourceVersion"]
    return desired


def test_an_apply_that_changed_something_awaits_its_echo() -> None:
    store, writes = _Store(role("7"), role("8", app="stash")), Writes()
    assert ensure(store, store, writes, _desired()) is not None  # type: ignore[arg-type]
    assert writes.awaited() == 1
    assert writes.echo(role("8", app="stash"))


def test_an_apply_the_server_found_nothing_to_change_in_awaits_nothing() -> None:
    # The cache lacked what the server stores differently (a default, say); the apply kept
    # the version, so no event will ever echo it.
    store, writes = _Store(role("7"), role("7", app="stash")), Writes()
    ensure(store, store, writes, _desired())  # type: ignore[arg-type]
    assert writes.awaited() == 0
    assert writes.in_namespace("demo") == 1  # still a write made

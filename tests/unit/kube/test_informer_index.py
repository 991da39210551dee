"""An informer's secondary index: a few objects found among many without a scan, and kept
right through a list, changes that move an object from one value to another, and deletions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from api.objects import JSON
from kube.client import ResourceType
from kube.informer import Informer

SESSIONS = ResourceType("stash.appscode.com/v1beta1", "backupsessions", True, "BackupSession")


def session(name: str, invoker: str, version: str = "1") -> JSON:
    return {
        "metadata": {"name": name, "namespace": "demo", "resourceVersion": version},
        "spec": {"invoker": {"kind": "BackupBatch", "name": invoker}},
    }


class _Server:
    """What the informer reads: one listing, then one watch's events."""

    def __init__(self, items: list[JSON], events: list[JSON]) -> None:
        self.items = items
        self.events = events

    def list(self, rt: ResourceType, namespace: str | None, **_: Any) -> JSON:
        return {"items": self.items, "metadata": {"resourceVersion": "1"}}

    def watch(self, rt: ResourceType, namespace: str | None, **_: Any) -> Iterator[JSON]:
        yield from self.events


def _by_invoker(obj: JSON) -> list[str]:
    return [obj["spec"]["invoker"]["name"]]


def _names(informer: Informer, value: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in informer.by_index("invoker", value))


def test_the_index_follows_the_listing_and_every_event() -> None:
    listed = [session(f"nightly-{i}", "nightly") for i in range(1000)] + [session("w-1", "weekly")]
    server = _Server(
        listed,
        [
            {"type": "ADDED", "object": session("w-2", "weekly", "2")},
            {"type": "MODIFIED", "object": session("nightly-0", "weekly", "3")},  # moved
            {"type": "DELETED", "object": session("w-1", "weekly", "4")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5"}}},
        ],
    )
    informer = Informer(server, SESSIONS)  # type: ignore[arg-type]
    informer.add_index("invoker", _by_invoker)
    version = informer._list()
    assert len(informer.by_index("invoker", "nightly")) == 1000
    assert _names(informer, "weekly") == ["w-1"]
    assert informer._watch(version) == "5"
    assert _names(informer, "weekly") == ["nightly-0", "w-2"]
    assert len(informer.by_index("invoker", "nightly")) == 999
    assert informer.by_index("invoker", "monthly") == []


def test_an_index_added_after_the_listing_files_what_is_cached() -> None:
    informer = Informer(_Server([session("a", "nightly")], []), SESSIONS)  # type: ignore[arg-type]
    informer._list()
    informer.add_index("invoker", _by_invoker)
    assert _names(informer, "nightly") == ["a"]

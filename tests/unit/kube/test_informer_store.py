"""What an informer stores: a listing read page by page, and only what its transform keeps."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from api.objects import JSON
from kube import BadRequest
from kube import informer as informer_module
from kube.client import ResourceType
from kube.informer import Informer, slim

SESSIONS = ResourceType("stash.appscode.com/v1beta1", "backupsessions", True, "BackupSession")


def session(name: str, phase: str | None = None, version: str = "1") -> JSON:
    return {
        "metadata": {
            "name": name,
            "namespace": "demo",
            "resourceVersion": version,
            "managedFields": [{"manager": "stash"}],
        },
        "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
        "status": {"phase": phase} if phase else {},
    }


class _PagingServer:
    """Serves its items in pages of at most the ``limit`` asked for, then one watch's events."""

    def __init__(self, items: list[JSON], events: list[JSON] | None = None) -> None:
        self.items = items
        self.events = events or []
        self.limits: list[int | None] = []

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        **_: Any,
    ) -> JSON:
        self.limits.append(limit)
        start = int(continue_token or 0)
        end = len(self.items) if limit is None else start + limit
        meta: JSON = {"resourceVersion": "77"}
        if end < len(self.items):
            meta["continue"] = str(end)
        return {"items": [dict(i) for i in self.items[start:end]], "metadata": meta}

    def watch(self, rt: ResourceType, namespace: str | None, **_: Any) -> Iterator[JSON]:
        yield from self.events


def _unfinished(obj: JSON) -> JSON | None:
    return None if obj["status"].get("phase") in ("Succeeded", "Failed", "Skipped") else obj


def _names(informer: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in informer.items())


def test_a_listing_is_read_in_pages_and_stored_whole(monkeypatch: Any) -> None:
    monkeypatch.setattr(informer_module, "PAGE_SIZE", 7)
    server = _PagingServer([session(f"s-{i:02}") for i in range(30)])
    informer = Informer(server, SESSIONS)  # type: ignore[arg-type]
    replaced: list[int] = []
    informer.subscribe(on_replace=lambda items: replaced.append(len(items)))

    version = informer._list()

    assert version == "77"
    assert server.limits == [7, 7, 7, 7, 7]
    assert _names(informer) == [f"s-{i:02}" for i in range(30)]
    assert replaced == [30]
    stored = informer.get("demo", "s-00")
    assert stored is not None
    assert stored["kind"] == "BackupSession"
    assert "managedFields" not in stored["metadata"]


def test_what_the_transform_declines_is_never_stored() -> None:
    server = _PagingServer([session("old-1", "Succeeded"), session("old-2", "Failed")])
    server.items += [session("new", "Running"), session("next")]
    informer = Informer(server, SESSIONS, transform=_unfinished)  # type: ignore[arg-type]

    informer._list()

    assert _names(informer) == ["new", "next"]


def test_an_object_the_transform_stops_keeping_is_dropped_as_if_deleted() -> None:
    server = _PagingServer(
        [session("a", "Running"), session("b", "Running")],
        [
            {"type": "MODIFIED", "object": session("a", "Succeeded", "2")},  # finished
            {"type": "ADDED", "object": session("c", "Skipped", "3")},  # never kept
            {"type": "MODIFIED", "object": session("b", "Running", "4")},
        ],
    )
    informer = Informer(server, SESSIONS, transform=_unfinished)  # type: ignore[arg-type]
    deleted: list[str] = []
    upserted: list[str] = []
    informer.subscribe(
        on_delete=lambda o: deleted.append(o["metadata"]["name"]),
        on_upsert=lambda o: upserted.append(o["metadata"]["name"]),
    )
    informer._list()

    version = informer._watch("1")

    assert version == "4"
    assert _names(informer) == ["b"]
    assert deleted == ["a"]  # "c" was never held: nobody is told it went
    assert upserted == ["b"]


def test_the_transform_decides_what_of_an_object_is_stored() -> None:
    def without_status(obj: JSON) -> JSON:
        obj.pop("status", None)
        return obj

    server = _PagingServer(
        [session("a", "Running")],
        [{"type": "MODIFIED", "object": session("a", "Failed", "2")}],
    )
    informer = Informer(server, SESSIONS, transform=without_status)  # type: ignore[arg-type]
    informer._list()
    informer._watch("1")

    stored = informer.get("demo", "a")
    assert stored is not None
    assert "status" not in stored
    assert stored["metadata"]["resourceVersion"] == "2"
    assert "managedFields" not in stored["metadata"]


def test_every_reader_gets_its_own_copy_and_cannot_change_the_cache() -> None:
    informer = Informer(_PagingServer([session("a", "Running")]), SESSIONS)  # type: ignore[arg-type]
    informer.add_index("phase", lambda o: [o["status"].get("phase", "")])
    informer._list()

    mine = informer.get("demo", "a")
    assert mine is not None
    mine["status"]["phase"] = "Failed"
    mine["metadata"]["name"] = "changed"
    informer.items()[0]["spec"] = {}
    informer.by_index("phase", "Running")[0]["status"] = {}

    again = informer.get("demo", "a")
    assert again is not None
    assert again["status"] == {"phase": "Running"}
    assert again["metadata"]["name"] == "a"
    assert again["spec"]["invoker"]["name"] == "nightly"
    assert [o["metadata"]["name"] for o in informer.by_index("phase", "Running")] == ["a"]
    assert len(informer) == 1


def test_each_relist_handler_reads_the_whole_listing_for_itself() -> None:
    server = _PagingServer([session(f"s-{i}", "Running") for i in range(5)])
    informer = Informer(server, SESSIONS)  # type: ignore[arg-type]
    seen: list[list[str]] = []

    def first(items: Sequence[JSON]) -> None:
        for item in items:
            item["metadata"]["name"] = "spoilt"
        seen.append([i["metadata"]["name"] for i in items])

    def second(items: Sequence[JSON]) -> None:
        seen.append([i["metadata"]["name"] for i in items[1:3]] + [str(len(items))])

    informer.subscribe(on_replace=first)
    informer.subscribe(on_replace=second)
    informer._list()

    assert seen == [[f"s-{i}" for i in range(5)], ["s-1", "s-2", "5"]]


def test_a_stored_object_costs_about_its_json_size() -> None:
    big = [session(f"s-{i:04}", "Running") for i in range(400)]
    for item in big:
        item["spec"]["note"] = "x" * 900  # about 1 KB of JSON each
    informer = Informer(_PagingServer(big), SESSIONS)  # type: ignore[arg-type]
    json_size = sum(len(orjson.dumps(slim(dict(item)))) for item in big)

    tracemalloc.start()
    try:
        informer._list()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(informer) == 400
    assert held < 2 * json_size, (held, json_size)


class _NoFieldSelectors(_PagingServer):
    """An API server that cannot select this kind by field (before Kubernetes 1.31)."""

    def __init__(self, items: list[JSON]) -> None:
        super().__init__(items)
        self.watched_with: list[str | None] = []

    def list(self, rt: ResourceType, namespace: str | None, **options: Any) -> JSON:
        if options.get("field_selector"):
            raise BadRequest(message='"status.phase" is not a known field selector', status=400)
        return super().list(rt, namespace, **options)

    def watch(self, rt: ResourceType, namespace: str | None, **options: Any) -> Iterator[JSON]:
        self.watched_with.append(options.get("field_selector"))
        yield from self.events


def test_without_field_selection_the_informer_filters_by_its_transform() -> None:
    server = _NoFieldSelectors([session("old", "Succeeded"), session("new", "Running")])
    informer = Informer(
        server,  # type: ignore[arg-type]
        SESSIONS,
        transform=_unfinished,
        field_selector="status.phase!=Succeeded",
    )
    version = informer._list()
    informer._watch(version)

    assert _names(informer) == ["new"]
    assert server.watched_with == [None]

"""An informer: list, then watch from the list's resourceVersion, keeping a local store.

Re-lists on 410 Gone; retries other failures with capped exponential backoff; resumes a closed
watch from the last resourceVersion seen (bookmarks included). Handlers run on the informer's
thread and must be quick: they update an index or enqueue a key, nothing more.

Lists come in pages, and each object passes through ``transform`` before it is stored
(controller-runtime's cache transform): the store holds only what its readers use, and the
memory a list takes is one page's, not the whole listing's, however many objects there are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import overload

import orjson

from api.objects import JSON
from kube.client import Client, ResourceType
from kube.errors import BadRequest, Gone, KubeError

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str]  # (namespace, name)
_Entry = tuple[bytes, tuple[tuple[str, str], ...]]  # the object's JSON, its (index, value)s


class Listing(Sequence[JSON]):
    """A listing as ``on_replace`` handlers see it: each object decoded when it is read (every
    handler gets its own copies; the listing is never held parsed as a whole)."""

    def __init__(self, blobs: list[bytes]) -> None:
        self._blobs = blobs

    def __len__(self) -> int:
        return len(self._blobs)

    @overload
    def __getitem__(self, index: int) -> JSON: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[JSON]: ...

    def __getitem__(self, index: int | slice) -> JSON | Sequence[JSON]:
        if isinstance(index, slice):
            return Listing(self._blobs[index])
        obj: JSON = orjson.loads(self._blobs[index])
        return obj


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(obj: JSON) -> JSON:
    """Drop what no reader uses but many objects carry: ``metadata.managedFields`` (often the
    larger half of an object) and the copy of the whole object ``kubectl apply`` leaves in an
    annotation."""
    meta = obj.get("metadata") or {}
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        del annotations[LAST_APPLIED]
    return obj


PAGE_SIZE = 500  # objects per list request
WEDGED_MARGIN = 60.0  # seconds beyond two watches' length before an informer counts as wedged


def key_of(obj: JSON) -> ObjectKey:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


class Informer:
    def __init__(
        self,
        client: Client,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        on_replace: Callable[[Sequence[JSON]], object] | None = None,
        on_upsert: Callable[[JSON], object] | None = None,
        on_delete: Callable[[JSON], object] | None = None,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
        transform: Callable[[JSON], JSON | None] | None = None,
        field_selector: str | None = None,
    ) -> None:
        """``transform`` returns what to store of an object (already without managedFields),
        or None to keep nothing of it: the informer then holds it as absent (a stored one is
        dropped and ``on_delete`` told). ``field_selector`` lets the API server leave out what
        the transform would drop anyway; an API server that cannot select by that field
        (older than Kubernetes 1.31 for a custom resource's field) is asked without it."""
        self._client = client
        self._transform = transform
        self._field_selector = field_selector
        self._rt = rt
        self._namespace = namespace
        self._selector = label_selector
        self._on_replace = [on_replace] if on_replace else []
        self._on_upsert = [on_upsert] if on_upsert else []
        self._on_delete = [on_delete] if on_delete else []
        self._watch_timeout = watch_timeout
        self._max_backoff = max_backoff
        # The store keeps each object as the JSON bytes of what the transform kept, with the
        # index values it is filed under: a third to a fifth of the memory of the parsed
        # object, and every reader gets its own copy (nobody can change the cache by mistake).
        self._store: dict[ObjectKey, _Entry] = {}
        # Secondary indexes (client-go's Indexers): name -> value -> the keys filed under it
        self._indexers: dict[str, Callable[[JSON], Iterable[str]]] = {}
        self._indexes: dict[str, dict[str, dict[ObjectKey, None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()
        self.relists = 0
        self.last_contact = time.monotonic()  # a list, an event or a watch's normal end

    def subscribe(
        self,
        *,
        on_replace: Callable[[Sequence[JSON]], object] | None = None,
        on_upsert: Callable[[JSON], object] | None = None,
        on_delete: Callable[[JSON], object] | None = None,
    ) -> None:
        """Add handlers (before ``start``): several consumers can share one watch."""
        if on_replace:
            self._on_replace.append(on_replace)
        if on_upsert:
            self._on_upsert.append(on_upsert)
        if on_delete:
            self._on_delete.append(on_delete)

    def has_index(self, name: str) -> bool:
        with self._lock:
            return name in self._indexers

    def add_index(self, name: str, values: Callable[[JSON], Iterable[str]]) -> None:
        """File every object under ``values(obj)`` in index ``name`` (before ``start``), so
        that ``by_index`` finds a few objects among many without scanning them all."""
        with self._lock:
            self._indexers[name] = values
            self._indexes[name] = {}
            store, self._store = self._store, {}
            for key, (blob, _) in store.items():
                self._put(key, self._entry(orjson.loads(blob)))

    def _entry(self, obj: JSON) -> _Entry:
        """What the store keeps of ``obj``: its bytes and the index values it is filed under."""
        filed = tuple(
            (name, value) for name, values in self._indexers.items() for value in values(obj)
        )
        # orjson's result keeps the buffer it grew (8 KB for a 1 KB object): stored, it is
        # copied to its exact size
        return bytes(memoryview(orjson.dumps(obj))), filed

    def _put(self, key: ObjectKey, entry: _Entry) -> None:
        """Store ``entry`` (the lock held), its index entries moved with it."""
        self._drop(key)
        self._store[key] = entry
        for name, value in entry[1]:
            self._indexes[name].setdefault(value, {})[key] = None

    def _drop(self, key: ObjectKey) -> None:
        old = self._store.pop(key, None)
        if old is None:
            return
        for name, value in old[1]:
            filed = self._indexes[name].get(value)
            if filed is not None:
                filed.pop(key, None)
                if not filed:
                    del self._indexes[name][value]

    # -- reading: each object decoded for its reader ------------------------------------------

    def by_index(self, name: str, value: str) -> list[JSON]:
        with self._lock:
            blobs = [self._store[key][0] for key in self._indexes[name].get(value, {})]
        return [orjson.loads(blob) for blob in blobs]

    def get(self, namespace: str, name: str) -> JSON | None:
        with self._lock:
            entry = self._store.get((namespace, name))
        if entry is None:
            return None
        obj: JSON = orjson.loads(entry[0])
        return obj

    def items(self) -> list[JSON]:
        with self._lock:
            blobs = [blob for blob, _ in self._store.values()]
        return [orjson.loads(blob) for blob in blobs]

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Informer:
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{self._rt.plural}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float) -> bool:
        return self.synced.wait(timeout)

    def wedged(self) -> str | None:
        """Why this informer no longer follows the API server, or None: its thread ended, or
        nothing came from the API server (a list, an event, a watch ending on time) for much
        longer than a watch lasts — a connection that hangs without an error."""
        if self._thread is None or self._stop.is_set():
            return None
        if not self._thread.is_alive():
            return f"the {self._rt.plural} informer stopped"
        silent = time.monotonic() - self.last_contact
        if silent > 2 * self._watch_timeout + WEDGED_MARGIN:
            return f"the {self._rt.plural} informer heard nothing for {silent:.0f}s"
        return None

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._list()
                backoff = 0.5
                while not self._stop.is_set():
                    version = self._watch(version)
            except Gone:
                log.info("%s: resourceVersion expired, re-listing", self._rt.plural)
                continue
            except KubeError as exc:
                log.warning("%s: %s (retrying in %.1fs)", self._rt.plural, exc, backoff)
            except Exception:
                log.exception("%s: unexpected error (retrying in %.1fs)", self._rt.plural, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _keep(self, obj: JSON) -> JSON | None:
        slim(obj)
        return obj if self._transform is None else self._transform(obj)

    def _list(self) -> str:
        store: dict[ObjectKey, _Entry] = {}
        token: str | None = None
        while True:
            try:
                listing = self._client.list(
                    self._rt,
                    self._namespace,
                    label_selector=self._selector,
                    field_selector=self._field_selector,
                    limit=PAGE_SIZE,
                    continue_token=token,
                )
            except BadRequest as exc:
                if self._field_selector is None or token is not None:
                    raise
                log.warning(
                    "%s: the API server does not select by %r (%s); filtering here instead",
                    self._rt.plural,
                    self._field_selector,
                    exc,
                )
                self._field_selector = None
                continue
            for item in listing.get("items", []):  # list items carry no apiVersion/kind
                item.setdefault("apiVersion", self._rt.api_version)
                item.setdefault("kind", self._rt.kind)
                kept = self._keep(item)
                if kept is not None:
                    store[key_of(kept)] = self._entry(kept)
            meta = listing.get("metadata") or {}
            token = meta.get("continue") or None
            del listing  # a page at a time: the listing is never held whole, parsed
            if token is None:  # every page of one snapshot: its resourceVersion is the list's
                break
        with self._lock:
            self._store = {}
            self._indexes = {name: {} for name in self._indexers}
            for key, entry in store.items():
                self._put(key, entry)
        self.relists += 1
        self.last_contact = time.monotonic()
        listed = Listing([blob for blob, _ in store.values()])
        for handler in self._on_replace:
            handler(listed)
        self.synced.set()
        return str(meta.get("resourceVersion", ""))

    def _watch(self, version: str) -> str:
        for event in self._client.watch(
            self._rt,
            self._namespace,
            resource_version=version,
            label_selector=self._selector,
            field_selector=self._field_selector,
            timeout_seconds=self._watch_timeout,
        ):
            if self._stop.is_set():
                break
            self.last_contact = time.monotonic()
            obj = event.get("object") or {}
            version = str(obj.get("metadata", {}).get("resourceVersion", version))
            kind = event.get("type")
            if kind == "BOOKMARK":
                continue
            kept = self._keep(obj) if kind in ("ADDED", "MODIFIED") else None
            if kept is not None:
                entry = self._entry(kept)
                with self._lock:
                    self._put(key_of(kept), entry)
                for handler in self._on_upsert:
                    handler(kept)
            elif kind in ("DELETED", "ADDED", "MODIFIED"):  # gone, or no longer kept
                with self._lock:
                    held = self._store.get(key_of(obj)) is not None
                    self._drop(key_of(obj))
                if held or kind == "DELETED":
                    for handler in self._on_delete:
                        handler(obj)
        self.last_contact = time.monotonic()  # the watch ended on time
        return version

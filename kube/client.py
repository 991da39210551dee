"""A small JSON client of the API server: urllib3 over the ``kube.config`` connection.

Objects go in and out as plain dicts; resource types are found by discovery and cached. The
project's own ``api`` models are the types, and dicts keep unknown fields intact. No generated
client is loaded: a sidecar in every opted-in pod pays only for TLS, urllib3 and orjson.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3

from api.objects import JSON
from kube import config as kube_config
from kube.config import Connection
from kube.errors import Gone, KubeError, NotFound, Unavailable, error_from_response

USER_AGENT = "stash-py"

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def api_prefix(api_version: str) -> str:
    """``/api/v1`` for the core group, ``/apis/<group>/<version>`` for the others."""
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives on the API server."""

    api_version: str
    plural: str
    namespaced: bool
    kind: str = ""

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        parts = [api_prefix(self.api_version)]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


class Client:
    """Blocking API client; thread-safe (urllib3 pools connections)."""

    def __init__(self, connection: Connection, *, pool_size: int = 16) -> None:
        self.connection = connection
        self._credentials = connection.credentials
        extra: dict[str, Any] = {}
        if connection.tls_server_name:
            extra["server_hostname"] = connection.tls_server_name
        # Not blocking: a burst past the pool opens extra connections, which are closed on
        # return; watches hold theirs for minutes.
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=pool_size, block=False, ssl_context=connection.ssl_context, **extra
        )
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._types_lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Client:
        paths = kube_config.kubeconfig_paths(path)
        return cls(kube_config.Kubeconfig.read(paths, explicit=bool(path)).connection(context))

    @classmethod
    def in_cluster(cls) -> Client:
        return cls(kube_config.in_cluster())

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, context: str | None = None) -> Client:
        """The kubeconfig given (or $KUBECONFIG, ~/.kube/config; its ``context`` or current
        one), else the pod's service account; a ``ConfigError`` (a ValueError) saying which is
        unusable when neither is."""
        return cls(kube_config.load(kubeconfig, context))

    @property
    def host(self) -> str:
        return self.connection.server

    def close(self) -> None:
        self._pool.clear()

    # -- raw requests -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float | None = 30.0,
        raw: bool = False,
    ) -> Any:
        """Send one request and return the decoded JSON body (the bytes with ``raw``); raise
        ``KubeError`` on failure."""
        what = f"{method} {path}"
        payload = None if body is None else _encode(body)
        try:
            response = self._pool.request(
                method,
                self._url(path, query),
                body=payload,
                headers=self._headers(
                    accept, content_type if payload is not None else None, headers
                ),
                timeout=urllib3.Timeout(total=timeout) if timeout else None,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(message=f"{what}: {type(exc).__name__}: {exc}") from None
        data = response.data
        if not 200 <= response.status <= 299:
            raise error_from_response(response.status, data, what)
        if raw:
            return data
        if not data:
            return None
        return orjson.loads(data)

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        return self.connection.server + path + ("?" + urlencode(params) if params else "")

    def _headers(
        self, accept: str, content_type: str | None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": USER_AGENT, **(extra or {})}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            headers.update(self._credentials.headers())  # rotated tokens included
        except kube_config.ConfigError as exc:
            raise Unavailable(message=f"credentials: {exc}") from None
        return headers

    # -- discovery ----------------------------------------------------------------------------

    def resource_type(self, api_version: str, kind: str) -> ResourceType:
        """Find where ``kind`` is served (cached; re-discovered once when missing)."""
        key = (api_version, kind)
        with self._types_lock:
            found = self._types.get(key)
        if found:
            return found
        listing = self.request("GET", api_prefix(api_version))
        with self._types_lock:
            for res in listing.get("resources", []):
                if "/" in res["name"]:
                    continue  # subresources
                rt = ResourceType(api_version, res["name"], bool(res["namespaced"]), res["kind"])
                self._types[(api_version, res["kind"])] = rt
            found = self._types.get(key)
        if not found:
            raise NotFound(message=f"{api_version} has no kind {kind}", status=404)
        return found

    def forget_discovery(self) -> None:
        with self._types_lock:
            self._types.clear()

    def type_of(self, obj: JSON) -> ResourceType:
        return self.resource_type(obj["apiVersion"], obj["kind"])

    # -- object verbs -----------------------------------------------------------------------

    def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> JSON:
        result: JSON = self.request("GET", rt.path(namespace, name))
        return result

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> JSON:
        """A listing; with ``limit``, one page of it (``metadata.continue`` asks for the next,
        ``Gone`` when that token has expired)."""
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": str(limit) if limit else None,
            "continue": continue_token,
        }
        result: JSON = self.request("GET", rt.path(namespace), query=query)
        return result

    def create(self, obj: JSON, namespace: str | None = None, *, dry_run: bool = False) -> JSON:
        """Create ``obj``; with ``dry_run`` the server admits it (webhooks included), stores
        nothing, and returns what it would have stored."""
        rt = self.type_of(obj)
        ns = namespace or obj.get("metadata", {}).get("namespace")
        query = {"dryRun": "All"} if dry_run else None
        result: JSON = self.request("POST", rt.path(ns), body=obj, query=query)
        return result

    def apply(
        self,
        obj: JSON,
        *,
        field_manager: str,
        namespace: str | None = None,
        force: bool = True,
        dry_run: bool = False,
        subresource: str = "",
    ) -> JSON:
        """Server-side apply ``obj`` (the fields it holds become owned by ``field_manager``)."""
        rt = self.type_of(obj)
        meta = obj.get("metadata", {})
        ns = namespace or meta.get("namespace")
        query: dict[str, Any] = {"fieldManager": field_manager, "force": "true" if force else None}
        if dry_run:
            query["dryRun"] = "All"
        path = rt.path(ns, meta["name"], subresource)
        result: JSON = self.request("PATCH", path, body=obj, query=query, content_type=APPLY_PATCH)
        return result

    def patch(
        self,
        rt: ResourceType,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        subresource: str = "",
        content_type: str = MERGE_PATCH,
    ) -> JSON:
        result: JSON = self.request(
            "PATCH", rt.path(namespace, name, subresource), body=patch, content_type=content_type
        )
        return result

    def delete(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        missing_ok: bool = False,
        uid: str | None = None,
    ) -> None:
        """Delete an object; with ``uid``, only that one (``Conflict`` if the name now holds
        another)."""
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", rt.path(namespace, name), body=body)
        except NotFound:
            if not missing_ok:
                raise

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[JSON]:
        """Watch events (``{"type": ..., "object": ...}``) from ``resource_version`` on.

        Ends when the server closes the watch (after ``timeout_seconds``); raises ``Gone`` when
        ``resource_version`` is too old (re-list then), ``KubeError`` for other failures.
        Bookmarks are requested, so an idle watch still advances its resourceVersion.
        """
        query = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version or None,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": str(timeout_seconds),
        }
        path = rt.path(namespace)
        what = f"WATCH {path}"
        try:
            response = self._pool.request(
                "GET",
                self._url(path, query),
                headers=self._headers("application/json", None),
                timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 30),
                preload_content=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(message=f"{what}: {type(exc).__name__}: {exc}") from None
        try:
            if response.status != 200:
                raise error_from_response(response.status, response.read(), what)
            for line in response:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    code = int(status.get("code") or 0)
                    err = error_from_response(code, orjson.dumps(status), what)
                    raise err if code != 410 else Gone(message=str(err), status=410)
                yield event
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(message=f"{what}: {type(exc).__name__}: {exc}") from None
        finally:
            response.release_conn()

    def table(self, rt: ResourceType, namespace: str | None = None) -> JSON:
        """The server-side table (what ``kubectl get`` prints, printer columns included)."""
        result: JSON = self.request("GET", rt.path(namespace), accept=TABLE_ACCEPT)
        return result


def _encode(body: Any) -> bytes:
    """A request body: bytes and text as given, anything else as JSON (which is also YAML,
    for server-side apply); datetimes as RFC 3339."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return orjson.dumps(body)


__all__ = ["Client", "Connection", "KubeError", "ResourceType"]

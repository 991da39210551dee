"""A small JSON client over the kubernetes package's transport (TLS, auth, kubeconfig).

Objects go in and out as plain dicts; resource types are found by discovery and cached. The
typed API classes of the kubernetes package are not used: the project's own ``api`` models are
the types, and dicts keep unknown fields intact.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from kube.errors import Gone, KubeError, NotFound, Unavailable, error_from_response

JSON = dict[str, Any]

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


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def context_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace a kubectl command acts in by default: the kubeconfig context's, else the
    pod's own (in a cluster), else ``default``."""
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except (k8s_config.ConfigException, OSError):
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


class Client:
    """Blocking API client; thread-safe (urllib3 pools connections)."""

    def __init__(self, api_client: k8s_client.ApiClient) -> None:
        self._api = api_client
        self._config: k8s_client.Configuration = api_client.configuration
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._types_lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Client:
        cfg = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
        return cls(k8s_client.ApiClient(cfg))

    @classmethod
    def in_cluster(cls) -> Client:
        cfg = k8s_client.Configuration()
        k8s_config.load_incluster_config(client_configuration=cfg)
        return cls(k8s_client.ApiClient(cfg))

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, context: str | None = None) -> Client:
        """The kubeconfig given (or $KUBECONFIG, ~/.kube/config; its ``context`` or current
        one), else the pod's service account; a ValueError saying which is unusable when
        neither is."""
        try:
            return cls.from_kubeconfig(kubeconfig, context)
        except k8s_config.ConfigException as exc:
            if kubeconfig or context:
                raise ValueError(
                    f"kubeconfig {kubeconfig or ''}: {exc}".replace("  ", " ")
                ) from None
            try:
                return cls.in_cluster()
            except k8s_config.ConfigException as inner:
                raise ValueError(
                    f"no kubeconfig ({exc}) and not in a pod ({inner}): give --kubeconfig"
                ) from None

    @property
    def host(self) -> str:
        return str(self._config.host)

    def close(self) -> None:
        self._api.close()

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
        try:
            response = self._api.call_api(
                method,
                self._url(path, query),
                header_params=self._headers(accept, content_type, headers),
                body=body,
                _request_timeout=timeout,
            )
            data = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(message=f"{what}: {type(exc).__name__}: {exc}") from None
        except k8s_client.ApiException as exc:
            raise error_from_response(exc.status or 0, exc.body, what) from None
        if not 200 <= response.status <= 299:
            raise error_from_response(response.status, data, what)
        if raw:
            return data
        if not data:
            return None
        return json.loads(data)

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        return self._config.host + path + ("?" + urlencode(params) if params else "")

    def _headers(
        self, accept: str, content_type: str | None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        headers = {"Accept": accept, **(extra or {})}
        if content_type:
            headers["Content-Type"] = content_type
        auth = self._config.auth_settings().get("BearerToken")  # refreshed tokens included
        if auth and auth.get("value"):
            headers[str(auth["key"])] = str(auth["value"])
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
    ) -> JSON:
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
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
            "timeoutSeconds": str(timeout_seconds),
        }
        path = rt.path(namespace)
        what = f"WATCH {path}"
        try:
            response = self._api.call_api(
                "GET",
                self._url(path, query),
                header_params=self._headers("application/json", None),
                _request_timeout=(10, timeout_seconds + 30),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(message=f"{what}: {type(exc).__name__}: {exc}") from None
        raw = response.response
        try:
            if response.status != 200:
                raise error_from_response(response.status, raw.read(), what)
            for line in raw:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    code = int(status.get("code") or 0)
                    err = error_from_response(code, json.dumps(status), what)
                    raise err if code != 410 else Gone(message=str(err), status=410)
                yield event
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(message=f"{what}: {type(exc).__name__}: {exc}") from None
        finally:
            raw.release_conn()

    def table(self, rt: ResourceType, namespace: str | None = None) -> JSON:
        """The server-side table (what ``kubectl get`` prints, printer columns included)."""
        result: JSON = self.request("GET", rt.path(namespace), accept=TABLE_ACCEPT)
        return result


__all__ = ["Client", "KubeError", "ResourceType"]

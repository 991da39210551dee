"""The Repository reconciler: ``status.references`` lists the invokers that back up into it."""

from __future__ import annotations

from typing import Any

from api import constants as c
from controller.caches import INVOKER_TYPES, REPOSITORIES, Caches
from controller.runtime import Controller, Result
from kube import Client, NotFound

JSON = dict[str, Any]
Key = tuple[str, str]


def _repo_key(invoker: JSON) -> Key:
    namespace = invoker.get("metadata", {}).get("namespace", "")
    repo = (invoker.get("spec") or {}).get("repository") or {}
    return (repo.get("namespace") or namespace, repo.get("name", ""))


class RepositoryReconciler:
    def __init__(self, client: Client, caches: Caches) -> None:
        self.client = client
        self.caches = caches
        self.writes = 0

    def register(self, controller: Controller[Key]) -> None:
        def own(obj: JSON) -> Key:
            meta = obj.get("metadata", {})
            return (meta.get("namespace", ""), meta.get("name", ""))

        self.caches.informer(REPOSITORIES).subscribe(
            on_replace=controller.replace_handler(own), on_upsert=controller.handler(own)
        )
        for rt in INVOKER_TYPES.values():
            self.caches.informer(rt).subscribe(
                on_replace=controller.replace_handler(_repo_key),
                on_upsert=controller.handler(_repo_key),
                on_delete=controller.handler(_repo_key),
            )

    def references(self, namespace: str, name: str) -> list[JSON]:
        found = []
        for kind, rt in INVOKER_TYPES.items():
            for invoker in self.caches.informer(rt).items():
                if _repo_key(invoker) == (namespace, name):
                    meta = invoker["metadata"]
                    found.append(
                        {
                            "apiGroup": c.GROUP,
                            "kind": kind,
                            "namespace": meta["namespace"],
                            "name": meta["name"],
                        }
                    )
        return sorted(found, key=lambda r: (r["namespace"], r["kind"], r["name"]))

    def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        repo = self.caches.get(REPOSITORIES, namespace, name)
        if repo is None:
            return None
        references = self.references(namespace, name)
        if ((repo.get("status") or {}).get("references") or []) == references:
            return None
        patch = {
            "metadata": {"resourceVersion": repo["metadata"]["resourceVersion"]},
            "status": {"references": references or None},
        }
        try:
            self.client.patch(REPOSITORIES, name, patch, namespace=namespace, subresource="status")
            self.writes += 1
        except NotFound:
            pass
        return None

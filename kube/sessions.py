"""Creating BackupSessions, the one way every creator does it: the CronJob (one per schedule
slot), ``stash trigger`` (on demand) and the operator (a retry).

A session is named ``<invoker>-<unix-seconds>``, owned by its invoker, labelled with the invoker
type and name. Creating the same slot twice finds the first one (AlreadyExists is success).
"""

from __future__ import annotations

import time

from api import constants as c
from api.naming import label_value, session_name
from api.objects import JSON
from kube import AlreadyExists, Client
from kube.types import BACKUP_SESSIONS as SESSIONS
from kube.types import INVOKER_TYPES


def new_session(
    kind: str,
    name: str,
    uid: str,
    namespace: str,
    *,
    unix_seconds: int,
    retry_left: int | None = None,
) -> JSON:
    spec: JSON = {"invoker": {"apiGroup": c.GROUP, "kind": kind, "name": name}}
    if retry_left is not None:
        spec["retryLeft"] = retry_left
    return {
        "apiVersion": c.V1BETA1,
        "kind": "BackupSession",
        "metadata": {
            "name": session_name(name, unix_seconds),
            "namespace": namespace,
            "labels": {c.INVOKER_TYPE_LABEL: kind, c.INVOKER_NAME_LABEL: label_value(name)},
            "ownerReferences": [
                {
                    "apiVersion": c.V1BETA1,
                    "kind": kind,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec,
    }


def create_session(
    client: Client,
    kind: str,
    name: str,
    namespace: str,
    *,
    uid: str | None = None,
    unix_seconds: int | None = None,
    retry_left: int | None = None,
) -> JSON:
    """Create the session of this second (reading the invoker's uid when not given)."""
    if kind not in INVOKER_TYPES:
        raise ValueError(f"invoker kind must be one of {', '.join(INVOKER_TYPES)}, not {kind!r}")
    if uid is None:
        uid = client.get(INVOKER_TYPES[kind], name, namespace)["metadata"]["uid"]
    body = new_session(
        kind,
        name,
        uid,
        namespace,
        unix_seconds=unix_seconds or int(time.time()),
        retry_left=retry_left,
    )
    try:
        return client.create(body)
    except AlreadyExists:
        existing: JSON = client.get(SESSIONS, body["metadata"]["name"], namespace)
        return existing

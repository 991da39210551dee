"""Volumes the operator and the webhook add to pods besides the target's own: a local backend's
volume, mounted where its ``mountPath`` says, in the sidecar, ``stash-init`` and the Jobs.
"""

from __future__ import annotations

from api.constants import LOCAL_BACKEND_VOLUME
from api.objects import JSON
from api.repository import Repository


def local_volume(
    repository: Repository, name: str = LOCAL_BACKEND_VOLUME
) -> tuple[JSON, JSON] | None:
    """The pod volume and mount of a local backend: its inline volume source, mounted at its
    ``mountPath`` in the sidecar and the Jobs; None for other backends. The whole volume is
    mounted: ``subPath`` is the directory inside it where the repository lives (``_local``)."""
    local = repository.spec.backend.local
    if local is None:
        return None
    source = {k: v for k, v in local.to_dict().items() if k not in ("mountPath", "subPath")}
    return {"name": name, **source}, {"name": name, "mountPath": local.mount_path}

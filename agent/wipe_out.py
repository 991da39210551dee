"""``stash wipe-out``: the wipe Job's program (``controller.jobs.wipe_job``), in the
Repository's own namespace with that namespace's service account: read the Repository and its
Secret, delete the repository's data from its backend (``engine.wipe``), and leave its words in
the termination log, where the operator reads them.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from agent.host_backup import SetupError, load_repository
from engine.wipe import NOT_RETRIED, WipeError, can_wipe, wipe_out
from kube import Client
from kube.errors import KubeError

log = logging.getLogger(__name__)


def wipe_in_pod(client: Client, namespace: str, name: str, termination_log: str) -> int:
    """Wipe Repository ``namespace/name`` out with this pod's own permissions; its words go to
    ``termination_log`` (read by the operator from the pod's status) and the log. 0: wiped;
    1: failed, a retry may succeed; NOT_RETRIED: it cannot be wiped (no Secret, no Repository,
    a backend that cannot be wiped)."""

    def said(code: int, words: str) -> int:
        (log.info if code == 0 else log.error)("wipe out of %s/%s: %s", namespace, name, words)
        with contextlib.suppress(OSError):
            Path(termination_log).write_text(words[:4000])
        return code

    try:
        repository, secret = load_repository(client, name, namespace)
    except SetupError as exc:
        return said(NOT_RETRIED, f"{exc}: no credentials to wipe with; the backend's data is kept")
    except KubeError as exc:
        return said(1, f"reading Repository {namespace}/{name}: {exc}")
    if not can_wipe(repository):
        kind = repository.spec.backend.kind()
        return said(
            NOT_RETRIED, f"wipeOut is not supported for the {kind} backend; its data is kept"
        )
    try:
        deleted = wipe_out(repository, secret)
    except WipeError as exc:
        return said(1, str(exc))
    return said(0, f"deleted the repository's data from the backend ({deleted} objects)")

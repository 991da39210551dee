"""A BackupBatch's or RestoreBatch's own hooks, run by ``stash run-hook`` in a short-lived pod
of the invoker's namespace (the operator's hook Job), never inside the operator.

The pod runs as the invoker's backup (restore) service account, so a hook reaches only what
that namespace's pods may reach, with that namespace's network identity; an ``exec`` hook runs
its command in this pod. The result is the session's ``GlobalPreBackupHookSucceeded`` /
``GlobalPostBackupHookSucceeded`` condition (the RestoreBatch's ``GlobalPreRestoreHookSucceeded``
/ ``GlobalPostRestoreHookSucceeded``), written once: a pod started again after it wrote the
condition does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

from pydantic import ValidationError

from agent.hooks import HookError, run_hook
from api.common import Handler
from api.conditions import get_condition
from api.hooks import BATCH_HOOK_CONDITIONS, BATCH_HOOK_TIMEOUT, HOOK_CONTAINER, HookKind
from api.objects import JSON
from engine.reporting import ConditionUpdate, SessionReporter, with_conditions
from kube import Client, NotFound
from kube.status import update_status
from kube.types import INVOKER_TYPES, RESTORE_BATCHES

log = logging.getLogger(__name__)


def execute(
    handler_spec: JSON, kind: HookKind, timeout: float = BATCH_HOOK_TIMEOUT
) -> ConditionUpdate:
    """Run the hook here; the condition that records how it went."""
    try:
        handler = Handler.model_validate(handler_spec)
        done = run_hook(
            kind, handler, own_container=HOOK_CONTAINER, timeout=timeout, default_host=None
        )
        return ConditionUpdate(
            BATCH_HOOK_CONDITIONS[kind],
            True,
            "GlobalHookExecutionSucceeded",
            f"{kind} hook: {done}",
        )
    except (HookError, ValidationError) as exc:
        return ConditionUpdate(
            BATCH_HOOK_CONDITIONS[kind], False, "GlobalHookExecutionFailed", str(exc)
        )


def run_batch_hook(client: Client, namespace: str, session_name: str, kind: HookKind) -> int:
    """Run the session's batch hook of ``kind`` and record it; 0 once recorded."""
    reporter = SessionReporter(client, namespace, session_name)
    try:
        session = reporter.get()
    except NotFound:
        log.error("BackupSession %s/%s not found", namespace, session_name)
        return 1
    if get_condition((session.get("status") or {}).get("conditions"), BATCH_HOOK_CONDITIONS[kind]):
        log.info("%s hook of %s already ran", kind, session_name)
        return 0
    ref = (session.get("spec") or {}).get("invoker") or {}
    rt = INVOKER_TYPES.get(str(ref.get("kind")))
    if rt is None:
        log.error("session %s has no invoker", session_name)
        return 1
    invoker = client.get(rt, str(ref.get("name")), namespace)
    spec = ((invoker.get("spec") or {}).get("hooks") or {}).get(kind) or {}
    update = execute(spec, kind)
    reporter.set_conditions([update])
    log.info("%s", update.message)
    return 0


def run_restore_batch_hook(client: Client, namespace: str, name: str, kind: HookKind) -> int:
    """Run the RestoreBatch's own hook of ``kind`` and record it on it; 0 once recorded."""
    try:
        batch = client.get(RESTORE_BATCHES, name, namespace)
    except NotFound:
        log.error("RestoreBatch %s/%s not found", namespace, name)
        return 1
    if get_condition((batch.get("status") or {}).get("conditions"), BATCH_HOOK_CONDITIONS[kind]):
        log.info("%s hook of %s already ran", kind, name)
        return 0
    spec = ((batch.get("spec") or {}).get("hooks") or {}).get(kind) or {}
    update = execute(spec, kind)
    now = dt.datetime.now(dt.UTC)
    update_status(
        client, RESTORE_BATCHES, namespace, name, lambda s: with_conditions(s, [update], now)
    )
    log.info("%s", update.message)
    return 0

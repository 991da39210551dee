"""Hook policy shared by whoever runs a hook (the sidecar, ``stash-init``, a Job's container, the
hook Job) and the operator that judges the session: which kinds exist, the condition each kind
records, whether a post hook runs for an outcome (Stash's ``executionPolicy``) and whether a
failed attempt is the last one.
"""

from __future__ import annotations

from typing import Literal

from api import constants as c
from api.constants import DEFAULT_MAX_RETRY
from api.objects import JSON

HookKind = Literal["preBackup", "postBackup", "preRestore", "postRestore"]


def retries_left(session: JSON, invoker: JSON | None) -> int:
    """How many retries may follow if ``session`` fails: its ``spec.retryLeft``, else the
    invoker's ``retryConfig.maxRetry`` (1 when unset); no retryConfig: none."""
    left = (session.get("spec") or {}).get("retryLeft")
    if left is None:
        retry = ((invoker or {}).get("spec") or {}).get("retryConfig")
        left = int(retry.get("maxRetry", DEFAULT_MAX_RETRY)) if retry else 0
    return int(left)


def is_final_attempt(session: JSON, invoker: JSON | None) -> bool:
    """Whether no retry follows if ``session`` fails."""
    return retries_left(session, invoker) <= 0


def should_run_post_hook(policy: str | None, backup_succeeded: bool, final_attempt: bool) -> bool:
    """Stash's executionPolicy: Always, OnSuccess, OnFailure, OnFinalRetryFailure (failed,
    and no retry follows)."""
    if policy == "OnSuccess":
        return backup_succeeded
    if policy == "OnFailure":
        return not backup_succeeded
    if policy == "OnFinalRetryFailure":
        return not backup_succeeded and final_attempt
    return True


# What a BackupBatch / RestoreBatch records of its own hooks (run by the hook Job).
BATCH_HOOK_CONDITIONS: dict[str, str] = {
    "preBackup": c.GLOBAL_PRE_BACKUP_HOOK_SUCCEEDED,
    "postBackup": c.GLOBAL_POST_BACKUP_HOOK_SUCCEEDED,
    "preRestore": c.GLOBAL_PRE_RESTORE_HOOK_SUCCEEDED,
    "postRestore": c.GLOBAL_POST_RESTORE_HOOK_SUCCEEDED,
}


# What a session records of a member's hooks, run on each host.
HOOK_CONDITIONS: dict[str, str] = {
    "preBackup": c.PRE_BACKUP_HOOK_SUCCEEDED,
    "postBackup": c.POST_BACKUP_HOOK_SUCCEEDED,
    "preRestore": c.PRE_RESTORE_HOOK_SUCCEEDED,
    "postRestore": c.POST_RESTORE_HOOK_SUCCEEDED,
}


HOOK_CONTAINER = "hook"


BATCH_HOOK_TIMEOUT = 30.0

"""Names other tools and users rely on (DESIGN.md section 4): group, labels, containers, phases."""

from __future__ import annotations

from typing import Final

GROUP: Final = "stash.appscode.com"
V1BETA1: Final = f"{GROUP}/v1beta1"
V1ALPHA1: Final = f"{GROUP}/v1alpha1"
# AppBinding's group and version (KubeDB's, Stash's addons'): how database targets are found
APPCATALOG_V1ALPHA1: Final = "appcatalog.appscode.com/v1alpha1"

# Opt-in label on pods and pod templates; the webhook only ever sees pods that carry it.
BACKUP_LABEL: Final = f"{GROUP}/backup"
BACKUP_LABEL_VALUE: Final = "enabled"
# On a workload's pod template (so on its pods): the uids of the restores its pods were rolled
# for. A pod that carries one was made to be restored by stash-init.
RESTORE_ANNOTATION: Final = f"{GROUP}/restore"

# On everything the operator makes (its caches watch its own objects by this label).
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "stash"
MANAGED_BY: Final = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}

# Labels on BackupSessions (and everything created for them).
INVOKER_TYPE_LABEL: Final = f"{GROUP}/invoker-type"
INVOKER_NAME_LABEL: Final = f"{GROUP}/invoker-name"

PVC_KIND: Final = "PersistentVolumeClaim"

SIDECAR_CONTAINER: Final = "stash"
RESTORE_INIT_CONTAINER: Final = "stash-init"
TMP_DIR_VOLUME: Final = "tmp-dir"
# The volume of a Repository's local backend, mounted at its mountPath (Stash's name).
LOCAL_BACKEND_VOLUME: Final = "stash-local"
TMP_DIR_MOUNT_PATH: Final = "/tmp"  # noqa: S108 - the sidecar's own emptyDir, not a host path

WEBHOOK_NAME: Final = "stash-webhook"
WEBHOOK_PATH: Final = "/mutate/pods"
PUSHGATEWAY_PORT: Final = 56789

# Condition types on invokers (BackupBatch / BackupConfiguration).
REPOSITORY_FOUND: Final = "RepositoryFound"
BACKEND_SECRET_FOUND: Final = "BackendSecretFound"  # noqa: S105 - a condition type
BACKUP_TARGET_FOUND: Final = "BackupTargetFound"
VALIDATION_PASSED: Final = "ValidationPassed"
CRONJOB_CREATED: Final = "CronJobCreated"
STASH_SIDECAR_INJECTED: Final = "StashSidecarInjected"
# The sidecars' service accounts may read their sessions and report (this project's own).
SIDECAR_AUTHORIZED: Final = "SidecarAuthorized"

# BackupSession phases after which a session's phase never changes again.
SESSION_TERMINAL_PHASES: Final = ("Succeeded", "Failed", "Skipped")
# A session or restore that ran and ended with a result (a restore runs once: its last phases).
RESULT_PHASES: Final = ("Succeeded", "Failed")
# A restore in one of these phases restores nothing more (Invalid: it never will).
RESTORE_ENDED_PHASES: Final = ("Succeeded", "Failed", "Invalid")

# Condition types on BackupSessions.
BACKUP_SKIPPED: Final = "BackupSkipped"
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
BACKUP_EXECUTOR_ENSURED: Final = "BackupExecutorEnsured"
RETENTION_POLICY_APPLIED: Final = "RetentionPolicyApplied"
REPOSITORY_INTEGRITY_VERIFIED: Final = "RepositoryIntegrityVerified"
# RetentionPolicyApplied False for this reason: a forget that would remove more than a share of
# a target's snapshots at once was held until confirmed (not a failure of the session).
RETENTION_HELD: Final = "RetentionHeld"
# Who does a session's repository work (retention, the integrity check): the last host to
# report claims it in the same write (its message: ``pod:<namespace>/<pod>``); a finish Job
# of the operator's claims it when that pod is gone before the work was recorded.
REPOSITORY_WORK_CLAIMED: Final = "RepositoryWorkClaimed"
REPOSITORY_METRICS_PUSHED: Final = "RepositoryMetricsPushed"
METRICS_PUSHED: Final = "MetricsPushed"
BACKUP_HISTORY_CLEANED: Final = "BackupHistoryCleaned"
PRE_BACKUP_HOOK_SUCCEEDED: Final = "PreBackupHookExecutionSucceeded"
POST_BACKUP_HOOK_SUCCEEDED: Final = "PostBackupHookExecutionSucceeded"
GLOBAL_PRE_BACKUP_HOOK_SUCCEEDED: Final = "GlobalPreBackupHookSucceeded"
GLOBAL_POST_BACKUP_HOOK_SUCCEEDED: Final = "GlobalPostBackupHookSucceeded"

# Condition types on RestoreSessions and RestoreBatches (and their members), Stash's names.
RESTORE_TARGET_FOUND: Final = "RestoreTargetFound"
STASH_INIT_CONTAINER_INJECTED: Final = "StashInitContainerInjected"
RESTORE_JOB_CREATED: Final = "RestoreJobCreated"
RESTORE_EXECUTOR_ENSURED: Final = "RestoreExecutorEnsured"
RESTORE_COMPLETED: Final = "RestoreCompleted"
PRE_RESTORE_HOOK_SUCCEEDED: Final = "PreRestoreHookExecutionSucceeded"
POST_RESTORE_HOOK_SUCCEEDED: Final = "PostRestoreHookExecutionSucceeded"
GLOBAL_PRE_RESTORE_HOOK_SUCCEEDED: Final = "GlobalPreRestoreHookSucceeded"
GLOBAL_POST_RESTORE_HOOK_SUCCEEDED: Final = "GlobalPostRestoreHookSucceeded"
RESTORE_INVOKER_KINDS: Final = ("RestoreSession", "RestoreBatch")
# The sidecar plan's hash: on a pod (what the webhook injected), on a pod template (what its pods
# must carry: a change rolls them) or on a workload (what its pods, injected at creation, carry).
SIDECAR_HASH_ANNOTATION: Final = f"{GROUP}/sidecar-hash"
# On an invoker: the mark of its retention policy (the Event of a held forget gives it), which
# lets a forget of more than the held share of a target's snapshots go ahead; and that share.
CONFIRM_RETENTION_ANNOTATION: Final = f"{GROUP}/confirm-retention"
RETENTION_HOLD_SHARE_ANNOTATION: Final = f"{GROUP}/retention-hold-share"
# On an invoker: how long after its last successful session it is named stale (a Go duration;
# without it, once two of its schedule's slots passed with no session succeeding), and the
# condition that says so.
STALE_AFTER_ANNOTATION: Final = f"{GROUP}/stale-after"
BACKUP_STALE: Final = "BackupStale"
# On an invoker: whether a restore of its newest successful session's snapshots was verified
# (docs/guides/verification.md), and the annotations that tune it: "false" turns verification
# off; how often the newest session is verified again (a Go duration, default 24h); how many
# bytes one verification may restore (a quantity, default 1Gi); "false" to verify on that
# period only, not after each successful session.
BACKUP_VERIFIED: Final = "BackupVerified"
VERIFY_ANNOTATION: Final = f"{GROUP}/verify"
VERIFY_EVERY_ANNOTATION: Final = f"{GROUP}/verify-every"
VERIFY_MAX_BYTES_ANNOTATION: Final = f"{GROUP}/verify-max-bytes"
VERIFY_AFTER_BACKUP_ANNOTATION: Final = f"{GROUP}/verify-after-backup"
BACKUP_INVOKER_KINDS: Final = ("BackupBatch", "BackupConfiguration")
RBAC_GROUP: Final = "rbac.authorization.k8s.io"

# Stash: a retryConfig without maxRetry retries a failed session once.
DEFAULT_MAX_RETRY = 1

# The image's user and group (its Dockerfile's USER 65532:65532). Pods the operator makes set
# both: a runAsUser without a runAsGroup makes the runtime look the user up in the image's
# /etc/passwd, where it is not, and fall back to group 0.
IMAGE_USER: Final = 65532
IMAGE_GROUP: Final = 65532

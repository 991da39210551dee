"""The operator's reconcilers. Each reconciles keys (namespace/name), never events: read current
state, converge, write only what changed.

``operator`` wires them: ``invokers`` (BackupBatch / BackupConfiguration: trigger CronJob, RBAC,
status), ``optin`` (pod-template opt-in labels), ``sessions`` (BackupSessions: Jobs, hooks,
follow-ups), ``repositories`` and ``restores`` (RestoreSession / RestoreBatch), each on a
de-duplicating work queue with per-key backoff (``queue``, ``runtime``).
"""

"""The operator's reconcilers. Each reconciles keys (namespace/name), never events: read current
state, converge, write only what changed.

``operator`` wires them. The rooms, each importing only the ones below it (import contract in
pyproject.toml):

- ``sessions``: BackupSessions, RestoreSessions and RestoreBatches (their next status, Jobs,
  hooks, follow-ups, metrics), and ``repository`` (Repository references and wipe-out);
- ``jobs``: the Jobs the operator creates (a member's backup or restore Job from its Task,
  batch hook Jobs, wipe Jobs) and what a Job's status and pod say about how it went;
- ``invokers``: BackupBatch / BackupConfiguration (validation, the tenant boundary's facts,
  trigger CronJob, RBAC, opt-in labels, status);
- ``runtime``: work queues, workers, shared caches, health, the operator's own metrics.
"""

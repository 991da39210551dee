"""Backup and restore sessions: their next status (``backup_status``, ``restore_status``, on
what they share in ``targets``), their reconcilers (``backup``, ``restore``), one target at a
time (``target_use``), why no injected container can do the work (``sidecar_presence``), and
the Pushgateway's groups derived from their record (``metric_groups``, ``metrics_restore``)."""

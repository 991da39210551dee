"""The programs that run inside users' pods, one module each: ``run_backup`` (the ``stash``
sidecar), ``restore_init`` (``stash-init``), ``job_steps`` (backup and restore Jobs),
``run_hook`` (the hook Job) and ``wipe_out`` (the wipe Job), with what they share: one host's
backup (``host_backup``) or restore (``host_restore``) and the hooks run around it (``hooks``).

They act with the pod's own service account, in the invoker's namespace, and record what they
did in status; the operator never imports them (import contracts in pyproject.toml)."""

"""The backup library, whoever runs it: restic (``restic``), where a repository lives
(``backend``), stale locks (``locks``), retention (``retention``), restoring a snapshot
(``restore``), results and how status records them (``results``, ``reporting``), progress,
metrics, and wiping a backend (``wipe``). No program's main loop lives here (those are
``agent``'s)."""

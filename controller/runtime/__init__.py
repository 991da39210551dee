"""The reconcile runtime: keys into de-duplicating work queues (``queue``), workers that
reconcile them (``loop``), shared informers (``caches``), slow work off the workers
(``background``), server-side applied children (``owned``), probes (``health``), the
operator's own metrics (``metrics``) and the Pushgateway's read-only door."""

"""BackupBatch / BackupConfiguration: what is wrong with one (``validation``, ``evaluation``),
what it refers to (``facts``, ``tenancy``), what it needs (``trigger``, ``grants``,
``sidecar_access``, ``optin``) and its reconciler (``reconciler``)."""

"""The mutating admission webhook: injects the ``stash`` sidecar into opted-in pods at creation.

``review`` parses AdmissionReviews, ``mutation.handle`` decides (pure), ``app`` is the HTTP edge
(FastAPI), ``server`` runs it over TLS with certificate reload, ``registration`` registers it.
"""

"""The operator's reconcilers. Each reconciles keys (namespace/name), never events: read current
state, converge, write only what changed.

Today: ``optin`` (pod-template opt-in labels for sidecar targets) on a de-duplicating work
queue with per-key backoff (``queue``).
"""

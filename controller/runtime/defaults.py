"""Defaults of the operator's settings, kept apart so that the command line can show them
without loading the operator."""

SIDECAR_GRACE = 120.0  # seconds a sidecar target may go without a ready pod carrying the sidecar
WORKERS = 4  # reconciles run at once per controller (bench/controller.py: 4 converge faster than 2)
DEFAULT_SESSION_TIMEOUT = "24h"  # the deadline of a session whose invoker sets no timeOut
STALL_AFTER = 600.0  # past that default deadline, seconds without progress that are a stall

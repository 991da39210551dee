"""What the ``stash`` commands share: their defaults, the arguments several roles take, and how
a long-running command learns it should stop."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from cli import logs

DEFAULT_IMAGE = os.environ.get("STASH_IMAGE", "stash-py:latest")
DEFAULT_NAMESPACE = os.environ.get("POD_NAMESPACE", "stash")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM (the kubelet stopping the pod) or SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def log_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="text (default) or json: one object per line with the work's fields "
        "(default: $STASH_LOG_FORMAT)",
    )


def retired_pushgateway_argument(parser: argparse.ArgumentParser) -> None:
    """Accepted and ignored: pods and Functions made by earlier versions still pass it. Only
    the operator writes metrics now, from the status these programs record (docs/security.md)."""
    parser.add_argument("--pushgateway-url", default="", help=argparse.SUPPRESS)


def duration(text: str) -> str:
    """An argument that is a Go duration (``24h``, ``90m``), as a ``timeOut`` is written."""
    from api.units import parse_duration

    try:
        if parse_duration(text).total_seconds() <= 0:
            raise ValueError("not positive")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 24h or 90m") from exc
    return text

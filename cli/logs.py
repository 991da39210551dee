"""How ``stash`` logs: plain lines for people, or with ``--log-format json`` (or
``STASH_LOG_FORMAT=json``) one JSON object per line for a log pipeline — time, level, logger,
message, the fields of the work it is about (``engine.logfields``: namespace, invoker,
session, target, host…) and, for an error with one, the traceback — so that a line can be
filtered by what it concerns and still parsed when it carries a traceback."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any

from engine.logfields import FieldsFilter

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"


class TextFormatter(logging.Formatter):
    """The plain format, with the work's fields at the end in brackets."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, str] = getattr(record, "fields", {}) or {}
        record.context = (
            " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" if fields else ""
        )
        return super().format(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in (getattr(record, "fields", {}) or {}).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str | None = None, level: str | None = None) -> None:
    """Log to stderr in ``log_format`` (default ``$STASH_LOG_FORMAT``, else text)."""
    chosen = (log_format or os.environ.get("STASH_LOG_FORMAT") or "text").lower()
    if chosen not in FORMATS:
        raise ValueError(f"log format {chosen!r}: one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler.addFilter(FieldsFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("STASH_LOG_LEVEL") or "INFO").upper())

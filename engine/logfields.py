"""What a log line is about (namespace, invoker, session, target, host, …), carried with the
work that logs it rather than passed to every call: a reconcile worker, a sidecar's host backup
or an admission request sets its fields for as long as it runs (``contextvars``: each thread and
each request has its own), and ``FieldsFilter`` puts them on every record logged meanwhile, for
the JSON log format to emit as fields."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

_fields: ContextVar[Mapping[str, str]] = ContextVar("stash_log_fields", default={})  # noqa: B039 - never mutated


@contextlib.contextmanager
def log_fields(**fields: str) -> Iterator[None]:
    """Add ``fields`` (empty values left out) to what the enclosed work logs."""
    token = _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _fields.reset(token)


def current_fields() -> dict[str, str]:
    return dict(_fields.get())


class FieldsFilter(logging.Filter):
    """Put the current fields on each record (``record.fields``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.fields = current_fields()
        return True

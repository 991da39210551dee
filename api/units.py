"""Sizes and durations as Stash writes them in status: binary units with three decimals
("1.500 KiB") and Go durations ("1m15.5s"), each with its reader, so whoever writes a figure
and whoever reads it back (the operator's metrics, ``kubectl stash``) agree.
"""

from __future__ import annotations

import datetime as dt
import math
import re

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: float) -> str:
    """1536 -> "1.500 KiB" (Stash's format: three decimals, binary units)."""
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """ "1.500 KiB" -> 1536: ``human_size`` read back (to within its three decimals)."""
    number, _, unit = text.strip().partition(" ")
    try:
        value = float(number)
    except ValueError:
        return 0
    if not math.isfinite(value) or value < 0:  # "inf", "nan", "-1": not a size
        return 0
    power = _UNITS.index(unit) if unit in _UNITS else 0
    return round(value * (1 << (10 * power)))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


_LONGEST = 100 * 365 * 86400.0


_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> dt.timedelta:
    """A Go duration ("1h30m", "90s") as a timedelta."""
    seconds = sum(float(n) * _UNIT[u] for n, u in _DURATION.findall(text))
    # A written duration past a century (or more digits than a float holds) is not a real one:
    # capped, so that adding it to a time stays a time.
    return dt.timedelta(seconds=min(seconds, _LONGEST))


def go_duration(seconds: float, decimals: int = 3) -> str:
    """Seconds as a Go duration string: 0.25 -> "250ms", 75.5 -> "1m15.5s", 3725 -> "1h2m5s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    sec = f"{rest:.{decimals}f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{sec}"
    if minutes:
        return f"{minutes}m{sec}"
    return sec


_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$")
_QUANTITY_UNITS = {
    None: 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
}


def parse_quantity(text: str) -> int | None:
    """A Kubernetes quantity of bytes ("1Gi", "500M", "4096") as an integer; None when it is
    not one."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    value = float(match[1]) * _QUANTITY_UNITS[match[2]]
    return int(value) if math.isfinite(value) and value < 1 << 62 else None

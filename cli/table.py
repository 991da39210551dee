"""Rows printed as a plain-text table, columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]], gap: int = 2) -> None:
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print((" " * gap).join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

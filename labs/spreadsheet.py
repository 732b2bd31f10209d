"""CSV files a person opens in a spreadsheet: the lab's VM list, new accounts' passwords."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

# A spreadsheet runs a cell that starts with one of these as a formula; names
# come from rosters, so an exported cell starting so gets a leading apostrophe.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(out: Any, header: tuple[str, ...], rows: Iterable[Iterable[object]]) -> None:
    """Write a CSV to `out` (a file or a response), every cell safe to open in a spreadsheet."""
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)

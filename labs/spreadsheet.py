"""CSV files a person opens in a spreadsheet: the lab's VM list, usage report, new accounts' passwords; each also
"for Excel" (a BOM, ';'), the form Excel in pt-BR opens as columns."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse

# A spreadsheet runs a cell that starts with one of these as a formula; names
# come from rosters, so an exported cell starting so gets a leading apostrophe.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(out: Any, header: tuple[str, ...], rows: Iterable[Iterable[object]], excel: bool = False) -> None:
    """Write a CSV to `out` (a file or a response), every cell safe to open in a spreadsheet.

    `excel`: for Excel where ',' is the decimal mark (pt-BR): a UTF-8 BOM (else
    it reads cp1252), ';' between cells and decimals with ','. Whole numbers and
    text are the same in both forms.
    """
    if excel:
        out.write("\ufeff")
    writer = csv.writer(out, delimiter=";" if excel else ",")
    writer.writerow(header)
    writer.writerows([_excel_cell(cell) if excel else csv_cell(cell) for cell in row] for row in rows)


def _excel_cell(value: object) -> object:
    if isinstance(value, Decimal | float):
        return str(value).replace(".", ",")
    return csv_cell(value)


def wants_excel(request: HttpRequest) -> bool:
    """The "for Excel" link of a CSV download (?for=excel)."""
    return request.GET.get("for") == "excel"


def csv_download(
    request: HttpRequest, stem: str, header: tuple[str, ...], rows: Iterable[Iterable[object]]
) -> HttpResponse:
    """A CSV file to download, `stem`.csv, or `stem`-excel.csv in the "for Excel" form when the request asks."""
    excel = wants_excel(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{stem}{"-excel" if excel else ""}.csv"'
    write_csv(response, header, rows, excel=excel)
    return response


def csv_data_uri(header: tuple[str, ...], rows: list, excel: bool = False) -> str:
    """A CSV as a data: URI, for a file made once and never stored (new passwords)."""
    buf = io.StringIO()
    write_csv(buf, header, rows, excel=excel)
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(buf.getvalue().encode()).decode()

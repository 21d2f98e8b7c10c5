"""Tables as downloads: CSV (UTF-8 with a BOM, so Excel reads Chinese right) or XLSX (openpyxl)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote

from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.styles import Font

Format = Literal["csv", "xlsx"]
CHINA_TIME = timezone(timedelta(hours=8))  # the page's and the reports' time zone
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_TYPES = {"csv": "text/csv; charset=utf-8", "xlsx": XLSX}


def local_time(ts_ms: int | None) -> str:
    """Epoch ms as Beijing time, the way a report shows it; empty for None."""
    if ts_ms is None:
        return ""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")


Sheet = tuple[str, Sequence[str], Sequence[Sequence[Any]]]  # title, headers, rows


def table_file(sheets: Sequence[Sheet], fmt: Format, name: str) -> Response:
    """A download of one or more (title, headers, rows) tables; CSV carries the first only."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        _, headers, rows = sheets[0]
        writer.writerow(headers)
        writer.writerows(rows)
        body = ("\ufeff" + buffer.getvalue()).encode("utf-8")
    else:
        book = Workbook()
        book.remove(book.active)
        for title, headers, rows in sheets:
            sheet = book.create_sheet(title[:31])  # Excel's limit on sheet names
            sheet.append(list(headers))
            for cell in sheet[1]:
                cell.font = Font(bold=True)
            for row in rows:
                sheet.append(list(row))
            sheet.freeze_panes = "A2"
        out = io.BytesIO()
        book.save(out)
        body = out.getvalue()
    filename = f"{name}.{fmt}"
    return Response(
        body,
        media_type=_TYPES[fmt],
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )

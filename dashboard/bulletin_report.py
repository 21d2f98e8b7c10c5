"""A bulletin (信息通报) as a download: its league table in XLSX (openpyxl) or PDF (fpdf2, with Noto Sans CJK so
Chinese names print), both with the period, the target and its source, and the data-quality rules."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.responses import Response
from fpdf import FPDF

from dashboard.export import local_time, table_file

PDF = "application/pdf"
# Debian's fonts-noto-cjk (deploy/scripts/report-deps.sh); face 2 of the collection is Simplified Chinese.
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
CJK_BOLD = CJK_FONT.with_name("NotoSansCJK-Bold.ttc")  # the table's headings
CJK_FACE_SC = 2
SCOPES = {"park": "园区 park", "county": "区县 county"}
PERIODS = {"daily": "日报 daily", "weekly": "周报 weekly", "monthly": "月报 monthly"}

# (field, header): the league table's columns, in both languages
COLUMNS: tuple[tuple[str, str], ...] = (
    ("rank", "排名 Rank"),
    ("enterprise_name", "企业 Enterprise"),
    ("points", "测点 Points"),
    ("online_rate_percent", "在线率% Online rate %"),
    ("meets_target", "达标 Meets target"),
    ("alarms", "报警 Alarms"),
    ("alarms_per_1000_point_hours", "报警/千点时 Alarms per 1,000 point-h"),
    ("median_ack_min", "确认中位(分) Median ack min"),
    ("median_disposition_min", "处置中位(分) Median disposition min"),
    ("missed_commitments", "漏承诺 Missed commitments"),
    ("missed_check_ins", "漏签到 Missed check-ins"),
    ("overdue_duties", "包保逾期 Overdue duties"),
    ("open_findings", "未整改 Open findings"),
    ("quality_violations", "数据质量问题 Data-quality violations"),
)
RULES = {"interruption": "数据中断 interruption", "flat_line": "数据不变 flat line",
         "out_of_range": "数据异常 out of range"}


class FontMissing(RuntimeError):
    """The CJK font the PDF needs is not installed."""


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "是 yes" if value else "否 no"
    return "" if value is None else value


def league_rows(bulletin: Mapping[str, Any]) -> list[list[Any]]:
    """The league table as rows of cells."""
    return [[_cell(row[field]) for field, _ in COLUMNS] for row in bulletin["rows"]]


def _rule_text(name: str, rule: Mapping[str, Any]) -> str:
    figures = ", ".join(f"{k}={v}" for k, v in rule.items() if k != "source")
    return f"{RULES[name]}: {figures} — {rule['source']}"


def summary_lines(bulletin: Mapping[str, Any]) -> list[str]:
    """What the table is of: scope, period, measured span, the target with its source, the quality rules."""
    period = bulletin["period"]
    lines = [
        f"{SCOPES[bulletin['scope_kind']]}: {bulletin['scope_name']} · {PERIODS[period['kind']]} {period['label']}",
        f"统计区间 measured: {local_time(bulletin['measured_from_ms'])} — {local_time(bulletin['measured_to_ms'])}"
        f" (北京时间 UTC+8)",
        f"发布 issued: {local_time(bulletin['issued_ms'])} · {bulletin['issued_by']}",
        f"在线率 online rate: {_cell(bulletin['online_rate_percent'])}% · 目标 target {bulletin['target_percent']}%"
        f" · 达标企业 enterprises meeting it: {bulletin['meeting_target']}/{len(bulletin['rows'])}",
        f"目标来源 target source: {bulletin['target_source']}",
    ]
    return lines + [_rule_text(name, rule) for name, rule in bulletin["quality_rules"].items()]


def file_name(bulletin: Mapping[str, Any]) -> str:
    """bulletin-<scope>-<period label>."""
    return f"bulletin-{bulletin['scope_id']}-{bulletin['period']['label']}"


def xlsx_response(bulletin: Mapping[str, Any]) -> Response:
    """The league table and, on a second sheet, what it is of."""
    return table_file([
        ("信息通报 bulletin", [h for _, h in COLUMNS], league_rows(bulletin)),
        ("说明 notes", ["说明 notes"], [[line] for line in summary_lines(bulletin)]),
    ], "xlsx", file_name(bulletin))


def pdf_bytes(bulletin: Mapping[str, Any]) -> bytes:
    """The bulletin on landscape A4 pages: title, summary lines, the league table."""
    if not (CJK_FONT.exists() and CJK_BOLD.exists()):
        raise FontMissing(f"PDF export needs {CJK_FONT} and {CJK_BOLD.name} (Debian fonts-noto-cjk: run "
                          "`make report-deps`)")
    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_font("cjk", "", str(CJK_FONT), collection_font_number=CJK_FACE_SC)
    pdf.add_font("cjk", "B", str(CJK_BOLD), collection_font_number=CJK_FACE_SC)
    pdf.add_page()
    pdf.set_font("cjk", size=15)
    pdf.cell(text="信息通报 Information bulletin", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=8)
    for line in summary_lines(bulletin):
        pdf.multi_cell(0, 4.5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("cjk", size=7)
    widths = (10, 38, 12, 18, 15, 13, 22, 18, 20, 19, 18, 18, 17, 19)
    with pdf.table(col_widths=widths, text_align="CENTER", line_height=4) as table:
        table.row([h for _, h in COLUMNS])
        for cells in league_rows(bulletin):
            table.row([str(c) for c in cells])
    return bytes(pdf.output())


def pdf_response(bulletin: Mapping[str, Any]) -> Response:
    """The PDF as a download."""
    name = f"{file_name(bulletin)}.pdf"
    return Response(pdf_bytes(bulletin), media_type=PDF,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})

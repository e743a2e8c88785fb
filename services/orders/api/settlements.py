"""Monthly settlement statements per provider and county (JSON, CSV, XLSX with Chinese headers)
and closing a month."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.orders import handlers
from services.orders.api.schemas import CloseMonthIn
from services.orders.domain.settlement import HEADERS_ZH, export_rows
from shared.auth import CurrentPrincipal
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["settlement"])
PROBLEMS = {400: {"description": "Bad request"}, 401: {"description": "No or invalid token"},
            403: {"description": "Outside the token's scope"}, 409: {"description": "Month already closed"},
            422: {"description": "Invalid field"}}
County = Annotated[str | None, Query(max_length=6)]
ProviderQ = Annotated[str | None, Query(max_length=64)]
Month = Annotated[str | None, Query(description="YYYY-MM (default: this month)")]


async def _statement(runtime, principal, county, provider, month):
    month = handlers.parse_month(month)
    async with runtime.db.connection() as conn:
        return await handlers.settlement(conn, principal, county, provider, month)


@router.get("/settlements", responses=PROBLEMS, summary="A county's monthly statement per provider")
async def get_settlement(principal: CurrentPrincipal, runtime: RuntimeDep, county: County = None,
                         provider: ProviderQ = None, month: Month = None) -> dict:
    doc, _ = await _statement(runtime, principal, county, provider, month)
    return doc


@router.get("/settlements.csv", responses=PROBLEMS, response_class=Response,
            summary="The statement as CSV (Chinese headers, UTF-8 with BOM, amounts in fen)")
async def settlement_csv(principal: CurrentPrincipal, runtime: RuntimeDep, county: County = None,
                         provider: ProviderQ = None, month: Month = None) -> Response:
    doc, lines = await _statement(runtime, principal, county, provider, month)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADERS_ZH)
    writer.writerows(export_rows(lines))
    name = f"settlement-{doc['county_code']}-{doc['month']}.csv"
    return Response(("\ufeff" + buffer.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


@router.get("/settlements.xlsx", responses=PROBLEMS, response_class=Response,
            summary="The statement as an Excel workbook (Chinese headers, amounts in fen)")
async def settlement_xlsx(principal: CurrentPrincipal, runtime: RuntimeDep, county: County = None,
                          provider: ProviderQ = None, month: Month = None) -> Response:
    import xlsxwriter

    doc, lines = await _statement(runtime, principal, county, provider, month)
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("结算单")
    bold = book.add_format({"bold": True, "bg_color": "#DDEBF7"})
    sheet.write_row(0, 0, HEADERS_ZH, bold)
    for i, row in enumerate(export_rows(lines), start=1):
        sheet.write_row(i, 0, row, bold if row[0] == "合计" else None)
    sheet.freeze_panes(1, 0)
    sheet.set_column(0, len(HEADERS_ZH) - 1, 14)
    sheet.set_column(3, 3, 38)
    book.close()
    name = f"settlement-{doc['county_code']}-{doc['month']}.xlsx"
    return Response(buffer.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


@router.post("/settlements/close", status_code=201, responses=PROBLEMS,
             summary="Close a county's month: its statement is final; later corrections go to the next month")
async def close(body: CloseMonthIn, principal: CurrentPrincipal, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        return await handlers.close_month(conn, principal, body.county_code, body.month)

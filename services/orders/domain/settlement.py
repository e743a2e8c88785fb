"""Monthly settlement statements (pure): every completed, verified (or confirmed) order of a
county's month grouped by provider, with its split; totals are sums of the lines, integer fen, so
they reconcile with the orders exactly. Exports carry Chinese headers."""

from __future__ import annotations

from dataclasses import dataclass

from services.orders.domain.funding import SOURCES

MONEY = ("price_fen", *(f"{s}_fen" for s in SOURCES))
HEADERS_ZH = ["县区代码", "结算月份", "服务商编号", "订单编号", "服务日期", "服务项目", "核验状态", "调整项",
              "订单金额(分)", "政府(分)", "集体(分)", "社会(分)", "个人(分)"]


@dataclass(frozen=True, slots=True)
class StatementLine:
    county_code: str
    month: str
    provider_id: str
    order_id: str
    service_day: str
    services: str
    evv_status: str
    adjustment: bool
    price_fen: int
    government_fen: int
    collective_fen: int
    social_fen: int
    personal_fen: int


def totals(lines: list[StatementLine]) -> dict[str, int]:
    out = {m: sum(getattr(line, m) for line in lines) for m in MONEY}
    out["orders"] = len(lines)
    return out


def statement(county: str, month: str, lines: list[StatementLine]) -> dict:
    """The statement document: per provider its lines and totals, and the county's totals."""
    providers: dict[str, list[StatementLine]] = {}
    for line in lines:
        providers.setdefault(line.provider_id, []).append(line)
    for line in lines:
        assert line.price_fen == sum(getattr(line, f"{s}_fen") for s in SOURCES), line.order_id
    return {
        "county_code": county, "month": month,
        "providers": [{"provider_id": pid, "totals": totals(ls), "lines": [line_view(x) for x in ls]}
                      for pid, ls in sorted(providers.items())],
        "totals": totals(lines),
    }


def line_view(line: StatementLine) -> dict:
    return {"order_id": line.order_id, "service_day": line.service_day, "services": line.services,
            "evv_status": line.evv_status, "adjustment": line.adjustment,
            **{m: getattr(line, m) for m in MONEY}}


def export_rows(lines: list[StatementLine]) -> list[list]:
    """The rows of the CSV/XLSX export under HEADERS_ZH, a 合计 (total) row last."""
    rows = [[x.county_code, x.month, x.provider_id, x.order_id, x.service_day, x.services,
             {"verified": "已核验", "confirmed": "县区确认"}.get(x.evv_status, x.evv_status),
             "是" if x.adjustment else "否", *(getattr(x, m) for m in MONEY)] for x in lines]
    t = totals(lines)
    rows.append(["合计", "", "", f"{t['orders']} 单", "", "", "", "", *(t[m] for m in MONEY)])
    return rows

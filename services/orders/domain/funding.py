"""Who pays for an order: 政府补一点、集体出一点、社会捐一点、个人付一点 (SPEC §2 Subsidies).

Pure and exact: integer fen only, and for every line government + collective + social + personal
equals the line's price. A benefit pays its share of each line it covers, limited by what is left
of the resident's monthly cap for it, of the county's monthly budget for its source, and of the
line itself; a source whose budget is spent pays nothing more and the personal share takes the
rest. Shares are rounded down (the fen goes to the personal share, never over a budget)."""

from __future__ import annotations

from dataclasses import dataclass, field

PUBLIC_SOURCES = ("government", "collective", "social")
SOURCES = (*PUBLIC_SOURCES, "personal")
SOURCE_ZH = {"government": "政府", "collective": "集体", "social": "社会", "personal": "个人"}


@dataclass(frozen=True, slots=True)
class Benefit:
    """One entitlement of a policy: `share_pct` of the covered services' price paid by `source`,
    up to `monthly_cap_fen` per resident and month."""

    code: str
    name: str
    source: str
    share_pct: int
    monthly_cap_fen: int
    when: dict
    services: tuple[str, ...] | None = None

    def covers(self, service_code: str) -> bool:
        return self.services is None or service_code in self.services


@dataclass(frozen=True, slots=True)
class Line:
    service_code: str
    quantity: int
    unit_price_fen: int

    @property
    def price_fen(self) -> int:
        return self.quantity * self.unit_price_fen


@dataclass(slots=True)
class LineSplit:
    line: Line
    fen: dict[str, int]


@dataclass(slots=True)
class Split:
    lines: list[LineSplit]
    totals: dict[str, int]
    used: dict[str, int]          # benefit code -> fen taken from the resident's cap this order
    spent: dict[str, int]         # public source -> fen taken from the county's budget
    notes: list[str] = field(default_factory=list)

    @property
    def price_fen(self) -> int:
        return sum(ls.line.price_fen for ls in self.lines)


def split_order(lines: list[Line], benefits: list[Benefit], cap_left: dict[str, int],
                budget_left: dict[str, int]) -> Split:
    """Split each line over the benefits in policy order. `cap_left` (per benefit code) and
    `budget_left` (per public source) are what remains this month; neither is changed."""
    caps = dict(cap_left)
    budgets = {s: budget_left.get(s, 0) for s in PUBLIC_SOURCES}
    used: dict[str, int] = {}
    spent = {s: 0 for s in PUBLIC_SOURCES}
    notes: list[str] = []
    splits: list[LineSplit] = []
    for line in lines:
        fen = {s: 0 for s in SOURCES}
        uncovered = line.price_fen
        for benefit in benefits:
            if not uncovered or not benefit.covers(line.service_code):
                continue
            want = min(line.price_fen * benefit.share_pct // 100, uncovered)
            pay = max(0, min(want, caps.get(benefit.code, benefit.monthly_cap_fen), budgets[benefit.source]))
            if pay < want:
                if budgets[benefit.source] < want:
                    _note(notes, f"{benefit.source} budget exhausted: {benefit.code} pays {pay} of {want} fen")
                else:
                    _note(notes, f"monthly cap of {benefit.code} reached: pays {pay} of {want} fen")
            if not pay:
                continue
            caps[benefit.code] = caps.get(benefit.code, benefit.monthly_cap_fen) - pay
            budgets[benefit.source] -= pay
            used[benefit.code] = used.get(benefit.code, 0) + pay
            spent[benefit.source] += pay
            fen[benefit.source] += pay
            uncovered -= pay
        fen["personal"] = uncovered
        splits.append(LineSplit(line, fen))
    totals = {s: sum(ls.fen[s] for ls in splits) for s in SOURCES}
    return Split(splits, totals, used, spent, notes)


def _note(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)

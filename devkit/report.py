"""The demo's run report: one self-contained HTML file a finance user can read (inline SVG, no scripts).

It shows what moved, a chart of actuals against the approved plan by month, and both reconciliations:
F&O trial balance against Anaplan's actuals module per company, account and period, and the approved plan
against the journal lines F&O holds. Amounts are ``Decimal`` throughout; nothing here talks to a system.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

ZERO = Decimal("0.00")
SIGN_CONVENTION = (
    "Sign convention: tables show ledger amounts, debit positive and credit negative, for actuals and plans "
    "alike; the charts show revenue (a credit) and costs (debits) as positive amounts, by negating revenue for "
    "actuals and plans alike."
)
Key = tuple[str, str, date]  # (company, account, first day of the period)


@dataclass
class Reconciliation:
    """Two independent readings of the same figures, compared per company, account and period."""

    title: str
    left_name: str
    right_name: str
    left: dict[Key, Decimal]
    right: dict[Key, Decimal]
    tolerance: Decimal = ZERO
    note: str = ""
    currencies: dict[str, str] = field(default_factory=dict)  # company -> accounting currency
    account_names: dict[str, str] = field(default_factory=dict)  # account code -> name

    def currency(self, company: str) -> str:
        return self.currencies.get(company, "")

    def account(self, code: str) -> str:
        """``code name`` (names beside codes, as a controller reads a chart of accounts)."""
        name = self.account_names.get(code.rsplit(":", 1)[-1])  # plan keys read <version>:<account>
        return f"{code} {name}" if name else code

    @property
    def keys(self) -> list[Key]:
        return sorted(set(self.left) | set(self.right))

    def rows(self) -> list[tuple[Key, Decimal, Decimal, Decimal]]:
        out = []
        for k in self.keys:
            a, b = self.left.get(k, ZERO), self.right.get(k, ZERO)
            out.append((k, a, b, a - b))
        return out

    def differences(self) -> list[tuple[Key, Decimal, Decimal, Decimal]]:
        return [r for r in self.rows() if abs(r[3]) > self.tolerance]

    @property
    def ok(self) -> bool:
        return not self.differences() and bool(self.keys)

    @property
    def compared(self) -> int:
        return len(self.keys)

    def companies(self) -> list[str]:
        return sorted({k[0] for k in self.keys})

    def total(self, side: str, company: str) -> Decimal:
        """One company's net (one currency: totals are never added across companies)."""
        values = self.left if side == "left" else self.right
        return sum((v for k, v in values.items() if k[0] == company), ZERO)

    def gross(self, side: str, company: str) -> tuple[Decimal, Decimal]:
        """(sum of debit balances, sum of credit balances) of one company's account/period totals."""
        values = [v for k, v in (self.left if side == "left" else self.right).items() if k[0] == company]
        return sum((v for v in values if v > 0), ZERO), sum((v for v in values if v < 0), ZERO)

    def side_text(self, side: str) -> str:
        name = self.left_name if side == "left" else self.right_name
        parts = []
        for co in self.companies():
            debit, credit = self.gross(side, co)
            cur = self.currency(co)
            parts.append(f"{co} {fmt_money(self.total(side, co))} {cur} (debit balances {fmt_money(debit)}, "
                         f"credit balances {fmt_money(credit)})".replace("  ", " "))  # fmt: skip
        return f"{name}: " + "; ".join(parts)

    def by_account(self) -> list[tuple[str, str, Decimal, Decimal, Decimal]]:
        agg: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
        for (company, account, _p), a, b, _d in self.rows():
            agg[(company, account)][0] += a
            agg[(company, account)][1] += b
        return [(c, a, v[0], v[1], v[0] - v[1]) for (c, a), v in sorted(agg.items())]

    def by_period(self) -> list[tuple[str, date, int, Decimal, Decimal, Decimal, Decimal, int]]:
        """Per company and period: accounts compared, debit and credit balances on each side, accounts off.

        (Net totals of a balanced ledger are zero every month, so the sides are compared by their balances.)
        """
        agg: dict[tuple[str, date], list[Any]] = defaultdict(lambda: [0, ZERO, ZERO, ZERO, ZERO, 0])
        for (company, _a, period), a, b, d in self.rows():
            cell = agg[(company, period)]
            cell[0] += 1
            cell[1] += a if a > 0 else ZERO
            cell[2] += b if b > 0 else ZERO
            cell[3] += a if a < 0 else ZERO
            cell[4] += b if b < 0 else ZERO
            cell[5] += 1 if abs(d) > self.tolerance else 0
        return [(c, p, *v) for (c, p), v in sorted(agg.items())]

    def status(self) -> str:
        if not self.keys:
            return "NOTHING TO COMPARE"
        n = len(self.differences())
        return "RECONCILED" if n == 0 else f"{n} DIFFERENCE(S)"


@dataclass
class Series:
    name: str
    values: list[Decimal]
    kind: str  # "bar" | "line"
    color: str


@dataclass
class Chart:
    title: str
    labels: list[str]
    series: list[Series]
    note: str = ""
    unit: str = ""  # the currency of every value on the chart (one chart never mixes currencies)


@dataclass
class ReportData:
    title: str
    subtitle: str
    summary: list[tuple[str, str]]  # (label, value)
    flows: list[dict[str, Any]]  # {"name", "status", "rows": [(label, value)]}
    charts: list[Chart]
    reconciliations: list[Reconciliation]
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (side, what, count)
    ok: bool = True
    # (version, where it lands in F&O, currency, Anaplan approved total, F&O cumulative total, entries pending
    # completion): one row per version and currency, the totals of the companies booking in that currency
    plan_versions: list[tuple[str, str, str, Decimal, Decimal, int]] = field(default_factory=list)


# --- formatting ------------------------------------------------------------------------------------------


def fmt_money(d: Decimal) -> str:
    return f"{d:,.2f}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice_step(span: Decimal) -> Decimal:
    """A round tick step giving about five ticks over ``span``."""
    if span <= 0:
        return Decimal(1)
    raw = span / 5
    exp = len(str(int(raw))) - 1 if raw >= 1 else 0
    base = Decimal(10) ** exp
    for m in (1, 2, 5, 10):
        if raw <= base * m:
            return base * m
    return base * 10


def _short_money(d: Decimal) -> str:
    a = abs(d)
    if a >= 1_000_000:
        return f"{d / 1_000_000:,.1f}M"
    if a >= 1_000:
        return f"{d / 1_000:,.0f}k"
    return f"{d:,.0f}"


def svg_chart(chart: Chart, width: int = 860, height: int = 300) -> str:
    """Grouped bars and lines over month labels, with a zero line; negative values go below it."""
    left, right, top, bottom = 70, 20, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in chart.series for v in s.values] or [ZERO]
    lo, hi = min(min(values), ZERO), max(max(values), ZERO)
    if hi == lo:
        hi = lo + 1
    step = _nice_step(hi - lo)
    lo = (lo / step).to_integral_value(rounding="ROUND_FLOOR") * step
    hi = (hi / step).to_integral_value(rounding="ROUND_CEILING") * step

    def y(v: Decimal) -> float:
        return top + float((hi - v) / (hi - lo)) * plot_h

    n = max(1, len(chart.labels))
    slot = plot_w / n
    bars = [s for s in chart.series if s.kind == "bar"]
    bar_w = slot * 0.7 / max(1, len(bars))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(chart.title)}" class="chart">',
        f'<text x="{left}" y="18" class="ct">{_e(chart.title)}</text>',
    ]
    if chart.unit:
        parts.append(f'<text x="{left - 6}" y="{top - 8}" class="yl">{_e(chart.unit)}</text>')
    tick = lo
    while tick <= hi:
        ty = y(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{ty + 4:.1f}" class="yl">{_e(_short_money(tick))}</text>')
        tick += step
    zero = y(ZERO)
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{zero:.1f}" y2="{zero:.1f}" class="zero"/>')
    for i, label in enumerate(chart.labels):
        cx = left + slot * (i + 0.5)
        parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 18}" class="xl">{_e(label)}</text>')
        for j, s in enumerate(bars):
            v = s.values[i] if i < len(s.values) else ZERO
            x = cx - slot * 0.35 + j * bar_w
            y0, y1 = sorted((y(v), zero))
            parts.append(
                f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bar_w - 2:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                f'fill="{s.color}"><title>{_e(s.name)} {_e(label)}: {_e(fmt_money(v))} {_e(chart.unit)}</title></rect>'
            )
    for s in chart.series:
        if s.kind != "line":
            continue
        pts = " ".join(f"{left + slot * (i + 0.5):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{s.color}" stroke-width="2.5"/>')
        for i, v in enumerate(s.values):
            cx = left + slot * (i + 0.5)
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{y(v):.1f}" r="3.5" fill="{s.color}">'
                f"<title>{_e(s.name)} {_e(chart.labels[i])}: {_e(fmt_money(v))} {_e(chart.unit)}</title></circle>"
            )
    lx = left
    for s in chart.series:
        shape = (
            f'<rect x="{lx}" y="{height - 18}" width="12" height="12" fill="{s.color}"/>'
            if s.kind == "bar"
            else f'<line x1="{lx}" x2="{lx + 12}" y1="{height - 12}" y2="{height - 12}" stroke="{s.color}" stroke-width="3"/>'
        )
        parts.append(shape + f'<text x="{lx + 16}" y="{height - 8}" class="lg">{_e(s.name)}</text>')
        lx += 30 + 8 * len(s.name)
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, Decimal):
                css = ' class="num neg"' if cell < 0 else ' class="num"'
                cells.append(f"<td{css}>{_e(fmt_money(cell))}</td>")
            elif isinstance(cell, int):
                cells.append(f'<td class="num">{cell:,}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _recon_html(r: Reconciliation) -> str:
    diffs = r.differences()
    badge = "ok" if r.ok else "bad"
    parts = [
        f'<section class="recon"><h2>{_e(r.title)} <span class="badge {badge}">{_e(r.status())}</span></h2>',
        f"<p>{_e(r.note)}</p>" if r.note else "",
        "<p>Compared <b>"
        + f"{r.compared:,}</b> company / account / period totals. "
        + f"<b>{_e(r.side_text('left'))}</b>; <b>{_e(r.side_text('right'))}</b>; "
        + f"tolerance {_e(fmt_money(r.tolerance))}.</p>",
    ]
    if diffs:
        parts.append("<h3>Differences</h3>")
        parts.append(
            _table(
                ["Company", "Currency", "Account", "Period", r.left_name, r.right_name, "Difference"],
                [
                    (k[0], r.currency(k[0]), r.account(k[1]), k[2].strftime("%Y-%m"), a, b, d)
                    for k, a, b, d in diffs[:500]
                ],
                "diff",
            )
        )
    parts.append("<h3>By period</h3>")
    parts.append(
        _table(
            ["Company", "Currency", "Period", "Accounts", f"{r.left_name} debits", f"{r.right_name} debits",
             f"{r.left_name} credits", f"{r.right_name} credits", "Accounts off"],
            [(c, r.currency(c), p.strftime("%Y-%m"), *rest) for c, p, *rest in r.by_period()],
        )
    )  # fmt: skip
    parts.append("<details><summary>By account (all periods)</summary>")
    parts.append(
        _table(
            ["Company", "Currency", "Account", r.left_name, r.right_name, "Difference"],
            [(c, r.currency(c), r.account(acc), a, b, d) for c, acc, a, b, d in r.by_account()],
        )
    )
    parts.append("</details></section>")
    return "".join(parts)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:980px;color:#1d2733}
h1{margin-bottom:.2rem}.sub{color:#5b6b7c;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{border:1px solid #d5dde5;border-radius:8px;padding:.6rem .9rem;min-width:150px}
.card b{display:block;font-size:1.25rem}.card span{color:#5b6b7c;font-size:.85rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem}
th,td{border-bottom:1px solid #e3e8ee;padding:.25rem .6rem;text-align:left}
th{background:#f4f6f8}td.num{text-align:right;font-variant-numeric:tabular-nums}td.neg{color:#9b2c2c}
table.diff td{background:#fff4f4}
.badge{font-size:.8rem;padding:.15rem .5rem;border-radius:10px;vertical-align:middle}
.badge.ok{background:#daf5e3;color:#166534}.badge.bad{background:#fde2e2;color:#9b1c1c}
svg.chart{width:100%;height:auto;margin:.5rem 0 1.2rem}
svg .grid{stroke:#e3e8ee}svg .zero{stroke:#8796a5}
svg .yl{font-size:11px;text-anchor:end;fill:#5b6b7c}svg .xl{font-size:11px;text-anchor:middle;fill:#5b6b7c}
svg .lg{font-size:12px;fill:#1d2733}svg .ct{font-size:14px;font-weight:600;fill:#1d2733}
.flows{display:flex;gap:1rem;flex-wrap:wrap}.flow{flex:1;min-width:300px}
footer{color:#8796a5;font-size:.8rem;margin-top:2rem}
"""


def plan_versions_html(rows: Sequence[tuple[str, str, str, Decimal, Decimal, int]]) -> str:
    """F&O's cumulative plan per version and currency (every entry the connector wrote, all runs) against
    Anaplan's approved plan; empty when there is nothing to show."""
    if not rows:
        return ""
    body = [
        (version, where, currency, fmt_money(approved), fmt_money(held), fmt_money(held - approved),
         "yes" if held == approved else "NO", pending)
        for version, where, currency, approved, held, pending in rows
    ]  # fmt: skip
    return (
        "<h2>F&amp;O cumulative plan per version vs Anaplan approved plan</h2>"
        + _table(
            [
                "Version",
                "In F&O",
                "Currency",
                "Anaplan approved",
                "F&O cumulative",
                "Difference",
                "Equal",
                "Entries pending completion",
            ],
            body,
        )
        + "<p class='sub'>One row per version and currency: the totals of the companies that book in that "
        "currency (amounts in different currencies are never added). F&amp;O's total is every line the "
        "connector holds there for the version (original entries plus every revision), read from F&amp;O; revenue in ledger sign (credit negative). Budget "
        "register entries count once written; they reach budget balances when completed in F&amp;O "
        "(Update budget balances).</p>"
    )


def render(data: ReportData) -> str:
    badge = (
        '<span class="badge ok">ALL RECONCILED</span>'
        if data.ok
        else '<span class="badge bad">ATTENTION</span>'
    )
    cards = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in data.summary)
    flows = [
        f'<div class="flow"><h3>{_e(f["name"])} — {_e(f["status"])}</h3>'
        + _table(["", ""], f["rows"])
        + "</div>"
        for f in data.flows
    ]
    charts = "".join(
        svg_chart(c) + (f"<p class='sub'>{_e(c.note)}</p>" if c.note else "") for c in data.charts
    )
    requests = _table(["System", "What", "Count"], data.requests) if data.requests else ""
    recons = "".join(_recon_html(r) for r in data.reconciliations)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(data.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(data.title)} {badge}</h1><p class='sub'>{_e(data.subtitle)}</p>"
        f"<div class='cards'>{cards}</div>"
        "<h2>Actuals against the approved plan</h2>"
        f"{charts}"
        f"<h2>What moved</h2><div class='flows'>{''.join(flows)}</div>"
        f"{plan_versions_html(data.plan_versions)}"
        f"{recons}"
        f"<h2>Requests</h2>{requests}"
        "<footer>Generated by d365-anaplan demo against local sandboxes of Dynamics 365 F&amp;O and Anaplan. "
        "Amounts are in each company's accounting currency, named beside every figure; amounts in different "
        f"currencies are never added. {_e(SIGN_CONVENTION)}</footer>"
        "</body></html>"
    )


def write(data: ReportData, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path

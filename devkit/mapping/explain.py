"""``map explain``: what one record becomes, through the functions the runs call (no second implementation).

* Actuals: an F&O GL line (its id, or a voucher number for all its lines) of one month becomes a row of the
  actuals file and a cell of the Anaplan module the import loads: the line is checked and turned into a row
  by :func:`~d365_anaplan.flows.actuals.validate_gl_line`, the month's lines are summed by
  :func:`~d365_anaplan.flows.actuals.aggregate_actuals` (the cell's amount), and the file row is written by
  :func:`~d365_anaplan.flows.actuals_file.write_actuals_csv` in the order of the import's ``headerNames``.
* Plans: a data row of an Anaplan export file becomes F&O budget register (or journal) lines: the export is
  read by :func:`~d365_anaplan.flows.plans.parse_plan_export`, rounded and signed as the run does, and turned
  into entries by :func:`~d365_anaplan.flows.plan_deltas.plan_deltas` and
  :func:`~d365_anaplan.flows.journal.build_entries` (as a first load: what F&O already holds is not read).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.dynamics.client import DynamicsConnection
    from d365_anaplan.flows.actuals import ActualsRow
    from d365_anaplan.flows.records import GLLine, PlanRow
    from d365_anaplan.steps.mapping import MapSource


@dataclass
class ActualsExplanation:
    line: GLLine
    file_row: dict[str, str] = field(default_factory=dict)  # column -> value, in the file's order
    cell: dict[str, str] = field(default_factory=dict)  # the Anaplan cell: every column but the amount
    cell_amount: Decimal | None = None  # what the cell receives (the month's lines of the same key)
    cell_lines: int = 0
    left_out: str = ""  # why the line is not loaded

    def text(self, import_action: str) -> str:
        g = self.line
        head = (f"F&O GL line {g.source_id or '?'} (voucher {g.voucher}, company {g.company}, account {g.account}, "
                f"{' '.join(f'{k}={v}' for k, v in sorted(g.dimensions.items()))}, {g.accounting_date}, "
                f"{g.amount} {g.amount_currency})")  # fmt: skip
        if self.left_out:
            return f"{head}\n  not loaded: {self.left_out}"
        row = ", ".join(f"{k}={v}" for k, v in self.file_row.items())
        cell = ", ".join(f"{k}={v}" for k, v in self.cell.items())
        return (f"{head}\n  file row of import {import_action!r}: {row}\n  Anaplan cell: {cell}\n"
                f"  the cell receives {self.cell_amount} (the sum of {self.cell_lines} line(s) of the month "
                "with this key)")  # fmt: skip


@dataclass
class PlanExplanation:
    export: str
    row_number: int
    rows: list[PlanRow] = field(default_factory=list)  # the parsed cells of the row (one per month)
    lines: list[dict[str, Any]] = field(default_factory=list)  # the F&O lines, with their entry
    raw: list[str] = field(default_factory=list)

    def text(self) -> str:
        out = [f"export {self.export!r} data row {self.row_number}: {self.raw}"]
        if not self.rows:
            out.append("  not read as a plan value (another version, not approved, zero or outside the plan)")
        out += [f"  -> {line['target']} {line['budget_model'] or line['journal_name']} "
                f"{line['budget_code'] or ''} company {line['company']}: {line['account_display_value']} "
                f"{line['trans_date']} {line['amount']} {line['currency']}" for line in self.lines]  # fmt: skip
        return "\n".join(out)


def explain_actuals(cfg: ConnectionConfig, conn: DynamicsConnection, client: AnaplanClient, key: str,
                    month: date, source: MapSource) -> list[ActualsExplanation]:  # fmt: skip
    """Every GL line of ``month`` whose id (or voucher) is ``key``, and what it becomes (``source``: where
    CSV value maps are read)."""
    from d365_anaplan.flows.actuals import aggregate_actuals, validate_gl_line
    from d365_anaplan.flows.actuals_file import write_actuals_csv
    from d365_anaplan.flows.calendar import month_start
    from d365_anaplan.flows.mapping import map_actuals_rows
    from d365_anaplan.steps.mapping import account_types, actuals_scope, load_value_maps, needs_account_types
    from d365_anaplan.steps.preflight import import_headers

    m = cfg.mapping
    start = month_start(month)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    lines = list(conn.reader.gl_lines(start, end))
    found = [g for g in lines if key in (g.source_id, g.voucher)]
    if not found:
        return []
    common: dict[str, Any] = {"dimensions": m.dimensions, "companies": cfg.dynamics.companies,
                              "periods": {start}, "ledger": cfg.ledger}  # fmt: skip
    balances = cfg.ledger.balance_sheet == "balances"
    maps = load_value_maps(cfg, source)
    types = account_types(conn.reader) if needs_account_types(cfg) else {}
    scope = actuals_scope(cfg, types) if not m.scopes.actuals.unrestricted else None
    natural = types if m.actuals.sign == "natural" else None

    def mapped(rows: list[ActualsRow], aggregate: bool) -> list[ActualsRow]:  # as prepare_actuals maps them
        return list(map_actuals_rows(rows, maps, m.dimensions, scope=scope, account_types=natural,
                                     aggregate=aggregate))  # fmt: skip

    movements = (g for g in lines if not (balances and g.balance_sheet))
    cells = {r.key: r for r in mapped(aggregate_actuals(movements, **common).rows(), True)}
    order = import_headers(client, m.actuals.import_action)
    out = []
    for g in found:
        exp = ActualsExplanation(g)
        out.append(exp)
        if balances and g.balance_sheet:
            exp.left_out = (
                "a balance-sheet line: loaded as part of the period-end balance (ledger.balance_sheet)"
            )
            continue
        fo_row = validate_gl_line(g, 1, **common)
        if fo_row is None:
            exp.left_out = f"fiscal period type {g.period_type!r} is not in ledger.period_types"
            continue
        if scope is not None and fo_row.account not in scope:
            exp.left_out = (
                f"account {fo_row.account} is outside {scope.setting} ({scope.reason_out(fo_row.account)})"
            )
            continue
        row = mapped([fo_row], False)[0]
        cell = cells.get(row.key)
        exp.cell_amount = cell.amount if cell else row.amount
        exp.cell_lines = cell.line_count if cell else 1
        text = io.StringIO()
        write_actuals_csv([row], text, mapping=m.actuals, dimensions=m.dimensions,
                          fiscal_year_start_month=cfg.close_calendar.fiscal_year_start_month,
                          ledger=cfg.ledger, order=order)  # fmt: skip
        header, record = list(csv.reader(io.StringIO(text.getvalue())))[:2]
        exp.file_row = dict(zip(header, record, strict=True))
        skip = {m.actuals.amount_column, m.actuals.line_id_column, m.actuals.voucher_column,
                m.actuals.description_column}  # fmt: skip
        exp.cell = {k: v for k, v in exp.file_row.items() if k not in skip}
    return out


def explain_plan_row(cfg: ConnectionConfig, conn: DynamicsConnection, client: AnaplanClient, export_name: str,
                     row_number: int, source: MapSource) -> PlanExplanation:  # fmt: skip
    """What data row ``row_number`` (1-based, after the header) of the export becomes in F&O."""
    from d365_anaplan.errors import ConfigError
    from d365_anaplan.flows.journal import build_entries
    from d365_anaplan.flows.plan_deltas import plan_deltas
    from d365_anaplan.flows.plans import (
        SPREAD_DECIMALS,
        parse_plan_export,
        round_largest_remainder,
        to_ledger_sign,
    )
    from d365_anaplan.steps.mapping import load_value_maps

    m = cfg.mapping
    export = next((e for e in m.plans.exports if export_name in (e.export_action,)), None)
    if export is None:
        raise ConfigError([f"mapping.plans.exports: no export {export_name!r} (have "
                           f"{[e.export_action for e in m.plans.exports]})"])  # fmt: skip
    wanted = m.plans.dimensions
    dims = [d for d in m.dimensions if wanted is None or d.name in wanted]
    buf = io.BytesIO()
    client.run_export(export.export_action, buf)
    data = buf.getvalue()
    records = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    explanation = PlanExplanation(export.export_action, row_number,
                                  raw=records[row_number] if 0 < row_number < len(records) else [])  # fmt: skip
    spread = m.plans.rounding == "largest_remainder"
    parsed = parse_plan_export([data], export=export, plans=m.plans, dimensions=dims,
                               companies=cfg.dynamics.companies, calendar=cfg.close_calendar,
                               period_format=export.period_format or m.actuals.period_format,
                               decimals=SPREAD_DECIMALS if spread else 2,
                               maps=load_value_maps(cfg, source))  # fmt: skip
    rows: list[PlanRow] = round_largest_remainder(list(parsed)) if spread else list(parsed)
    if m.plans.sign == "natural":
        types = {a.account.upper(): a.account_type for a in conn.reader.main_accounts()}
        rows = to_ledger_sign(rows, types, source=f"export {export.export_action!r}")
    explanation.rows = [r for r in rows if r.line_number == row_number + 1]  # file lines: the header is 1
    if not explanation.rows:
        return explanation
    budget = cfg.dynamics.journal.target == "budget_register"
    fmt = conn.reader.budget_format() if budget else conn.reader.ledger_format()
    from d365_anaplan.steps.plan_currency import resolve_plan_currencies

    deltas, _approved = plan_deltas(explanation.rows, [], sorted({r.period for r in explanation.rows}))
    plan = build_entries(deltas, connection=cfg.name, run_id="explain", export=export,
                         settings=cfg.dynamics.journal, currencies=resolve_plan_currencies(cfg, conn.reader),
                         segment_order=fmt.segments, delimiter=fmt.delimiter,
                         fiscal_year_start_month=cfg.close_calendar.fiscal_year_start_month)  # fmt: skip
    for journal in plan.journals:
        for line in journal.lines():
            if line.is_offset:
                continue
            explanation.lines.append({
                "target": "budget register entry" if budget else "ledger journal", "company": journal.company,
                "budget_model": journal.budget_model, "budget_code": journal.budget_code,
                "journal_name": journal.journal_name, "account_display_value": line.account_display_value,
                "account": line.account, "dimensions": dict(line.dimensions),
                "trans_date": line.trans_date.isoformat(), "amount": line.amount, "currency": line.currency,
            })  # fmt: skip
    return explanation

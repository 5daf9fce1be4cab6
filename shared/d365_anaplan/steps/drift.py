"""Drift detection's reads and verdict (issue 12, item 6): the fingerprint of the model metadata a flow relies
on, read from Anaplan, compared with the one the last successful run recorded (``ledger/drift.py``).

What a flow relies on:

* actuals: the ``headerNames`` of every import it uploads to (accounts, companies, dimension values, actuals),
  the read-back export's header, and the members of every list it reads (accounts, dimension lists);
* plans: the header row of every plan export (for a time-in-columns export its row columns, the ones before
  the first period label, so a time range rolling forward is no drift).

Lists the actuals flow loads itself (the accounts list, dimension lists with a ``list_import``) gain members
from the run; there only removed members count as drift (Anaplan never deletes members an import did not
name, so a removed member was removed by someone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from d365_anaplan.errors import BadInputData, MetadataDrift
from d365_anaplan.flows.drift import Fingerprint, diff, fingerprint
from d365_anaplan.flows.periods import parse_period_label
from d365_anaplan.steps.preflight import planned_files

if TYPE_CHECKING:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.steps.context import StepContext

Flow = Literal["actuals", "plans"]

REMEDY = (
    "if the change is intended, run again with --accept-drift (execution input accept_drift: true) to accept "
    "it and record the new fingerprint; otherwise ask the model builder to undo it. `d365-anaplan check` shows "
    "the same difference"
)


def _row_columns(headers: list[str], period_format: str, fiscal_start: int) -> list[str]:
    """The columns of a time-in-columns export before its first period label."""
    out = []
    for name in headers:
        try:
            parse_period_label(name.strip(), period_format, fiscal_start)
        except BadInputData:
            out.append(name)
            continue
        break
    return out


def loaded_lists(cfg: ConnectionConfig) -> set[str]:
    """Lists the actuals flow itself loads members into (their added members are not drift)."""
    m = cfg.mapping
    out = {m.accounts.list_name} if m.accounts.list_name and m.accounts.import_action else set()
    return out | {d.list_name for d in m.dimensions if d.list_name and d.list_import}


def read_fingerprint(cfg: ConnectionConfig, client: AnaplanClient, flow: Flow) -> Fingerprint:
    """The fingerprint of what ``flow`` relies on, read from the model now."""
    m = cfg.mapping
    imports: dict[str, list[str]] = {}
    exports: dict[str, list[str]] = {}
    lists: dict[str, list[str]] = {}
    if flow == "actuals":
        for planned in planned_files(cfg):
            meta = client.import_metadata(client.find_import(planned.action).id)
            headers = meta.source.header_names if meta.source and meta.source.header_names else []
            imports[planned.action] = list(headers)
        if m.actuals.verify_export:
            name = str(m.actuals.verify_export)
            exports[name] = client.export_header_names(client.find_export(name).id)
        named = [m.accounts.list_name] + [d.list_name for d in m.dimensions]
        for list_name in dict.fromkeys(n for n in named if n):
            lists[list_name] = [item.code or item.name for item in client.list_items(list_name)]
    else:
        fiscal_start = cfg.close_calendar.fiscal_year_start_month
        for export in m.plans.exports:
            headers = client.export_header_names(client.find_export(export.export_action).id)
            if m.plans.layout == "time_in_columns":
                fmt = export.period_format or m.actuals.period_format
                headers = _row_columns(headers, fmt, fiscal_start)
            exports[export.export_action] = headers
    return fingerprint(imports, exports, lists)


def drift_lines(cfg: ConnectionConfig, flow: Flow, before: Fingerprint, now: Fingerprint) -> list[str]:
    """The diff, leaving out members the flow's own list loads add."""
    if flow == "actuals":
        own = loaded_lists(cfg)
        before = {**before, "lists": dict(before.get("lists", {}))}
        for name in own & set(before["lists"]) & set(now.get("lists", {})):
            old, new = before["lists"][name], now["lists"][name]
            kept = old.get("members")
            if kept is not None and new.get("members") is not None:
                if set(kept) <= set(new["members"]):
                    before["lists"][name] = new  # only additions: the run's own loads
            elif new.get("count", 0) >= old.get("count", 0):
                before["lists"][name] = new  # too long to keep its members: a growing list is taken as loaded
    return diff(before, now)


def verdict(cfg: ConnectionConfig, flow: Flow, stored: dict[str, Any] | None, now: Fingerprint) -> list[str]:
    """The drift since the stored fingerprint (none before the first successful run)."""
    if stored is None:
        return []
    return drift_lines(cfg, flow, dict(stored.get("fingerprint") or {}), now)


def drift_error(flow: Flow, lines: list[str], stored: dict[str, Any]) -> MetadataDrift:
    return MetadataDrift(
        f"the model metadata the {flow} flow relies on changed since run {stored.get('run_id')} "
        f"(nothing was read or written): {'; '.join(lines)} (remedy: {REMEDY})"
    )


def check_drift(ctx: StepContext, flow: Flow, accept_drift: bool) -> list[str]:
    """The pre-check's drift verdict: raise :class:`MetadataDrift` on a change (unless accepted), else keep
    this run's fingerprint for its close. Returns the drift that was accepted."""
    from d365_anaplan.ledger.drift import Fingerprints

    store = Fingerprints(ctx.env.ledger_table)
    now = read_fingerprint(ctx.cfg, ctx.anaplan, flow)
    stored = store.current(ctx.connection, flow)
    lines = verdict(ctx.cfg, flow, stored, now)
    if lines and not accept_drift and stored is not None:
        raise drift_error(flow, lines, stored)
    store.stage(ctx.connection, flow, ctx.run_id, now, accepted=lines)
    return lines

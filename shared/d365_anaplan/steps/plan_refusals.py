"""Plan rows F&O would refuse or the connection leaves out, refused before anything is written: accounts outside
the plans scope (``mapping.scopes``) and suspended main accounts (``MainAccounts.IsSuspended``)."""

from __future__ import annotations

from d365_anaplan.dynamics.odata_shapes import Query
from d365_anaplan.errors import AlignmentFailed, BadInputData
from d365_anaplan.flows.mapping import scope_filter
from d365_anaplan.flows.records import PlanRow
from d365_anaplan.steps.context import StepContext


def refuse_out_of_scope(ctx: StepContext, all_rows: dict[str, list[PlanRow]]) -> None:
    """A plan row on a main account outside the plans scope (``mapping.scopes``) is refused, naming the
    export line, before anything is written."""
    m = ctx.cfg.mapping
    if m.scopes.for_flow("plans").unrestricted:
        return
    types = {a.account.upper(): a.account_type for a in ctx.dynamics.reader.main_accounts()}
    scope = scope_filter(m, "plans", types)
    for name, rows in all_rows.items():
        for row in rows:
            why = scope.reason_out(row.account)
            if why is not None:
                raise BadInputData(
                    f"export {name!r} line {row.line_number}: account {row.account!r} is outside {scope.setting} "
                    f"({why}); nothing was written to F&O"
                )


def refuse_suspended_accounts(ctx: StepContext, all_rows: dict[str, list[PlanRow]]) -> None:
    """F&O refuses new lines on a suspended main account (``MainAccounts.IsSuspended``); finding out while
    writing would leave the other vouchers written. Refuse the plan before anything is written, naming the
    export lines."""
    q = Query("MainAccounts", select=("MainAccountId", "IsSuspended"), cross_company=False)
    suspended = {
        str(r.get("MainAccountId") or "").upper()
        for r in ctx.dynamics.client.iter_rows(q)
        if str(r.get("IsSuspended") or "No") == "Yes"
    }
    hits = [
        (name, row) for name, rows in all_rows.items() for row in rows if row.account.upper() in suspended
    ]
    if not hits:
        return
    shown = "; ".join(
        f"export {name!r} line {row.line_number}: field 'Account' {row.account!r}" for name, row in hits[:10]
    )
    more = f" (and {len(hits) - 10} more)" if len(hits) > 10 else ""
    accounts = sorted({row.account for _, row in hits})
    raise AlignmentFailed(
        f"alignment with F&O: main account(s) {accounts} are suspended in F&O (MainAccounts.IsSuspended), "
        f"which refuses new journal lines on them; {len(hits)} plan row(s) use them: {shown}{more}. "
        "Nothing was written to F&O."
    )

"""Master data to list files: main accounts and dimension values staged per list import, drift checked.

Every output has a deterministic S3 key under the run, so a retried or redriven step overwrites its own
output and never adds a second copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from d365_anaplan.config import ListImport
from d365_anaplan.flows.textsafe import check_code, csv_writer, neutralise_text
from d365_anaplan.staging import S3StreamWriter
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.mapping import actuals_scope, step_value_maps
from d365_anaplan.steps.staged_io import TextAdapter, record_staged


def _stage_list(
    ctx: StepContext,
    name: str,
    spec: ListImport,
    rows: Iterable[tuple[str, ...]],
    what: str,
    properties: list[str] | None = None,
) -> dict[str, Any]:
    """A list file: code, name and optional property columns (``properties``: their headers, values follow
    code and name in each row)."""
    key = ctx.key("master", name)
    count = 0
    seen: set[str] = set()
    with S3StreamWriter(ctx.s3, ctx.env.staging_bucket, key) as out:
        w = csv_writer(TextAdapter(out))
        w.writerow([spec.code_column, spec.name_column, *(properties or [])])
        for code, label, *extra in rows:
            check_code(code, where=f"{what} {code!r}", field="code")
            if code in seen:
                continue
            seen.add(code)
            w.writerow([code, neutralise_text(label), *(neutralise_text(x) for x in extra)])
            count += 1
    record_staged(ctx, "ExtractMasterData", out.result)
    return {"action": spec.import_action, "key": key, "rows": count}


def extract_master_data(ctx: StepContext, accept_drift: bool = False) -> dict[str, Any]:
    """Main accounts (those in the actuals scope), legal entities and the configured dimensions' values, one
    list file per import, in Anaplan codes (value maps applied; codes merged by a map are written once).

    First the F&O part of drift detection (``steps/fo_drift.py``): this is the first step of the flow under
    the Dynamics role, before the list and actuals loads write anything to Anaplan."""
    from d365_anaplan.steps.fo_drift import check_fo_drift

    accepted = check_fo_drift(ctx, "actuals", accept_drift)
    m = ctx.cfg.mapping
    reader = ctx.dynamics.reader
    maps = step_value_maps(ctx)
    accounts = list(reader.main_accounts())
    scope = actuals_scope(ctx.cfg, {a.account.upper(): a.account_type for a in accounts})
    opts = ctx.cfg.ledger
    attributes = [
        (col, attr)
        for col, attr in (
            (opts.account_type_column, "account_type"),
            (opts.account_category_column, "category"),
            (opts.account_parent_column, "parent"),
        )
        if col
    ]
    imports = [
        _stage_list(
            ctx,
            "accounts.csv",
            m.accounts,
            (
                (
                    maps.account.apply(a.account, where=f"MainAccounts {a.account!r}"),
                    a.name,
                    *(str(getattr(a, attr)) for _, attr in attributes),
                )
                for a in accounts
                if a.account in scope
            ),
            "MainAccounts",
            [col for col, _ in attributes if col],
        )
    ]
    if m.companies is not None:
        wanted = set(ctx.cfg.dynamics.companies)
        entities = (
            (maps.company.apply(e.company, where=f"LegalEntities {e.company!r}"), e.name)
            for e in reader.legal_entities()
            if e.company.upper() in wanted
        )
        imports.append(_stage_list(ctx, "companies.csv", m.companies, entities, "LegalEntities"))
    caveats: list[str] = []
    for dim in m.dimensions:
        if dim.list_import is None:
            continue
        values = reader.dimension_values(dim.name)
        if not values.complete:
            caveats.append(f"{dim.name}: {values.caveat}")
        spec = ListImport(
            import_action=dim.list_import,
            code_column=m.accounts.code_column,
            name_column=m.accounts.name_column,
        )
        imports.append(
            _stage_list(
                ctx,
                f"{dim.name}.csv",
                spec,
                (
                    (maps.get(dim.name).apply(v.value, where=f"{dim.name} value {v.value!r}"), v.description)
                    for v in values.values
                ),
                f"{dim.name} value",
            )
        )
    ctx.ledger.record_step(
        ctx.run_id,
        "ExtractMasterData",
        "SUCCEEDED",
        {"imports": imports, "caveats": caveats, "accepted_drift": accepted},
    )
    return {"imports": imports, "caveats": caveats}

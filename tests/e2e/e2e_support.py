"""Helpers of the end-to-end tests: expected end states computed from the sandboxes' own data (never from
our staged files or our transforms), readers of the sandboxes' end state, ledger accessors and wrappers.

The F&O sandbox's GL generator is the source of truth for actuals; the Anaplan sandbox's Plan module is the
source of truth for plans.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from devkit.engine import LocalEngine
from devkit.stack import BLANK, Stack

CONNECTION = "demo"
PERIODS = ("2025-01", "2025-02", "2025-03")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ACTUAL = "Actual"

Handler = Callable[[dict[str, Any], Any], Any]


def manual(first: str = PERIODS[0], last: str = PERIODS[-1]) -> dict[str, Any]:
    return {"connection": CONNECTION, "trigger": "manual", "periods": {"from": first, "to": last}}


def label(year: int, month: int) -> str:
    """Anaplan's month member for a period, like ``Jan 25``."""
    return f"{MONTHS[month - 1]} {year % 100:02d}"


def window_labels(periods: Iterable[str] = PERIODS) -> set[str]:
    out = set()
    for p in periods:
        y, m = p.split("-")
        out.add(label(int(y), int(m)))
    return out


# --- actuals ------------------------------------------------------------------------------------------------


def expected_actuals(stack: Stack, periods: Iterable[str] = PERIODS) -> dict[tuple[str, ...], Decimal]:
    """Posted GL summed per (company, account, business unit, cost centre, department, period label, version),
    straight from the F&O sandbox's generator; blank dimension values become the blank member."""
    gl = stack.dynamics.app.gl
    wanted = set(periods)
    sums: dict[tuple[str, ...], int] = defaultdict(int)
    for v in range(gl.voucher_count):
        head = gl.voucher(v)
        d = head.accounting_date
        if f"{d.year:04d}-{d.month:02d}" not in wanted:
            continue
        for line in gl.voucher_lines(v):
            key = (
                head.company,
                line.account.account,
                line.business_unit or BLANK,
                line.cost_center or BLANK,
                line.department or BLANK,
                label(d.year, d.month),
                ACTUAL,
            )
            sums[key] += line.cents
    return {k: Decimal(c).scaleb(-2) for k, c in sums.items() if c != 0}


def anaplan_actuals(stack: Stack, periods: Iterable[str] = PERIODS) -> dict[tuple[str, ...], Decimal]:
    """Cells of Anaplan's "GL Actuals" module for the periods (version Actual), zero cells left out."""
    labels = window_labels(periods)
    out: dict[tuple[str, ...], Decimal] = {}
    for key, values in stack.anaplan.app.module_cells("GL Actuals").items():
        if key[-2] not in labels or key[-1] != ACTUAL:
            continue
        amount = values.get("Amount")
        assert isinstance(amount, Decimal), (key, values)
        if amount != 0:
            out[key] = amount
    return out


def assert_actuals_match(stack: Stack, periods: Iterable[str] = PERIODS) -> None:
    expected = expected_actuals(stack, periods)
    held = anaplan_actuals(stack, periods)
    assert expected, "the F&O sandbox posted no GL in the window: the test would prove nothing"
    missing = {k: v for k, v in expected.items() if held.get(k) != v}
    extra = {k: v for k, v in held.items() if k not in expected}
    assert not missing and not extra, (
        f"{len(missing)} cell(s) differ from F&O (e.g. {list(missing.items())[:3]} held "
        f"{[held.get(k) for k in list(missing)[:3]]}); {len(extra)} unexpected (e.g. {list(extra.items())[:3]})"
    )
    per_company: dict[str, Decimal] = defaultdict(Decimal)
    for k, v in held.items():
        per_company[k[0]] += v
    assert all(total == 0 for total in per_company.values()), "balanced vouchers sum to zero per company"


def clear_actuals(stack: Stack) -> None:
    app = stack.anaplan.app
    with app._lock:  # the sandbox's own lock: its import worker writes the same dict
        app.seed.modules["GL Actuals"].cells.clear()


# --- plans --------------------------------------------------------------------------------------------------


def offset_account(stack: Stack) -> str:
    return str(stack.ledger_journal_connection()["dynamics"]["journal"]["offset_account"])


PlanKey = tuple[str, str, str, str]  # version, company, account, period (yyyy-mm)
# How the sandbox's own data tells the versions apart: the budget model (budget register) or the journal
# name (ledger journal) each export is configured with in devkit.stack.
VERSION_OF_MODEL = {"FY": "Budget", "FC": "Forecast"}
VERSION_OF_JOURNAL = {"Budget": "Budget", "Anaplan": "Forecast"}


def expected_plan_cells(stack: Stack, periods: Iterable[str] = PERIODS) -> dict[PlanKey, Decimal]:
    """The approved, non-zero cells of the Anaplan sandbox's Plan module in the window (Draft rows left out)."""
    labels = {label(int(p[:4]), int(p[5:])): p for p in periods}
    out: dict[PlanKey, Decimal] = {}
    for (company, account, period, version), values in stack.anaplan.app.module_cells("Plan").items():
        if period not in labels or values.get("Approval") != "Approved":
            continue
        amount = values["Amount"]
        assert isinstance(amount, Decimal)
        if amount != 0:
            out[(version, company, account, labels[period])] = amount
    return out


def fo_plan_cells(stack: Stack, periods: Iterable[str] | None = None) -> dict[PlanKey, Decimal]:
    """F&O's cumulative plan per version, company, account and month over every budget register entry and
    journal in the sandbox (ledger sign: revenue as stored, i.e. negative; offset lines left out); zero
    totals left out. Computed from the sandbox's tables, not from anything the connector staged."""
    from devkit.sandbox.dynamics.budget import stored_amount

    fo = stack.dynamics.app
    offset = offset_account(stack)
    sums: dict[PlanKey, Decimal] = defaultdict(Decimal)
    with fo.lock:
        for key, header in fo.budget_headers.items():
            version = VERSION_OF_MODEL[str(header["BudgetModelId"])[:2]]
            for line in fo.budget_lines.get(key, []):
                account = str(line["DimensionDisplayValue"]).split("-")[0]
                sums[(version, key[0], account, str(line["EntryDate"])[:7])] += stored_amount(line)
        for key, header in fo.journal_headers.items():
            version = VERSION_OF_JOURNAL[str(header["JournalName"])]
            for line in fo.journal_lines.get(key, []):
                account = str(line["AccountDisplayValue"]).split("-")[0]
                if account == offset:
                    continue
                sums[(version, key[0], account, str(line["TransDate"])[:7])] += Decimal(
                    line["DebitAmount"]
                ) - Decimal(line["CreditAmount"])
    wanted = set(periods) if periods is not None else None
    return {k: v for k, v in sums.items() if v != 0 and (wanted is None or k[3] in wanted)}


def unbalanced_vouchers(stack: Stack) -> list[tuple[str, str, str, Decimal]]:
    fo = stack.dynamics.app
    sums: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    with fo.lock:
        for (company, number), lines in fo.journal_lines.items():
            for line in lines:
                sums[(company, number, str(line["Voucher"]))] += Decimal(line["DebitAmount"]) - Decimal(
                    line["CreditAmount"]
                )
    return [(*k, v) for k, v in sums.items() if v != 0]


def assert_plans_match(stack: Stack, periods: Iterable[str] = PERIODS) -> None:
    """F&O's cumulative total per version, company, account and month equals Anaplan's approved plan to the
    cent (a duplicated entry, a missed revision or a wrong revenue sign fails here); vouchers balance."""
    expected = expected_plan_cells(stack, periods)
    assert expected, "the Plan module has no approved row in the window: the test would prove nothing"
    held = fo_plan_cells(stack, periods)
    extra = {k: v for k, v in held.items() if expected.get(k) != v}
    lacking = {k: v for k, v in expected.items() if held.get(k) != v}
    assert not extra and not lacking, (
        f"F&O differs from the approved plan: F&O has {list(extra.items())[:5]}; the plan has "
        f"{list(lacking.items())[:5]} ({len(extra)} / {len(lacking)} cells)"
    )
    assert fo_plan_cells(stack) == held, "nothing outside the window"
    assert unbalanced_vouchers(stack) == [], "every voucher must balance"


def clear_journals(stack: Stack) -> None:
    fo = stack.dynamics.app
    with fo.lock:
        fo.journal_headers.clear()
        fo.journal_lines.clear()
        fo.budget_headers.clear()
        fo.budget_lines.clear()


def journal_counts(stack: Stack) -> tuple[int, int]:
    """(headers, lines) of journals and budget register entries in the F&O sandbox."""
    fo = stack.dynamics.app
    with fo.lock:
        return (
            len(fo.journal_headers) + len(fo.budget_headers),
            sum(len(v) for v in fo.journal_lines.values()) + sum(len(v) for v in fo.budget_lines.values()),
        )


# --- ledger -------------------------------------------------------------------------------------------------


def ledger(engine: LocalEngine) -> Any:
    from d365_anaplan.ledger.audit import RunLedger

    return RunLedger(engine.environment["LEDGER_TABLE"])


def forget_fingerprints(engine: LocalEngine) -> None:
    """Delete the metadata fingerprints recorded so far (drift detection): for files whose tests reshape the
    sandbox model on purpose and share one engine, so each test starts as a connection's first run does."""
    import boto3

    table = engine.environment["LEDGER_TABLE"]
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    for flow in ("actuals", "plans"):
        pk = {"S": f"DRIFT#{CONNECTION}#{flow}"}
        items = ddb.query(TableName=table, KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": pk}).get("Items", [])  # fmt: skip
        for item in items:
            ddb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})


def anaplan_requests(stack: Stack) -> int:
    """HTTP requests the Anaplan sandbox's servers (auth, OAuth, API) have received so far."""
    return sum(server.requests.total() for server in stack.anaplan.servers.values())


def leases(engine: LocalEngine) -> Any:
    from d365_anaplan.ledger.lease import ModelLease

    return ModelLease(engine.environment["LEDGER_TABLE"])


def model_key(stack: Stack) -> str:
    return f"{stack.anaplan.app.seed.workspace_id}/{stack.anaplan.app.seed.model_id}"


def cause_of(engine: LocalEngine, run_id: str) -> dict[str, Any]:
    run = ledger(engine).get_run(run_id)
    assert run.status == "FAILED", run
    assert isinstance(run.cause, dict), run
    return dict(run.cause)


def assert_failed_cleanly(engine: LocalEngine, stack: Stack, result: Any, error: str, *needles: str) -> str:
    """FAILED with the named error recorded in the ledger, its text naming ``needles``, and the lease free."""
    assert result.status == "FAILED", (result.status, result.output)
    cause = cause_of(engine, result.name)
    text = error_message(cause)
    assert cause.get("Error") == error, cause
    for needle in needles:
        assert needle in text, f"{needle!r} not in the recorded cause: {text[:1500]}"
    assert leases(engine).get(model_key(stack)) is None, "the model lease must be released"
    return text


def error_message(cause: dict[str, Any]) -> str:
    """The error's message from a recorded cause (Lambda's JSON ``errorMessage``; never the stack trace)."""
    raw = str(cause.get("Cause", ""))
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    return str(parsed.get("errorMessage", raw)) if isinstance(parsed, dict) else raw


def runs_of(engine: LocalEngine) -> list[Any]:
    return list(ledger(engine).list_runs(CONNECTION))


# --- wrappers -----------------------------------------------------------------------------------------------


def fail_once_after(
    error: type[Exception], when: Callable[[dict[str, Any]], bool] = lambda _e: True
) -> tuple[Callable[[Handler], Handler], list[dict[str, Any]]]:
    """A wrapper running the real handler (its external effect happens), then raising ``error`` once: the
    answer is lost, so Step Functions' Retry invokes the handler again with the same input, as a redrive would.
    Returns the wrapper and the list of events it failed."""
    failed: list[dict[str, Any]] = []

    def wrap(handler: Handler) -> Handler:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            out = handler(event, ctx)
            if not failed and when(event):
                failed.append(json.loads(json.dumps(event)))
                raise error("simulated: the connection dropped after the call took effect")
            return out

        return wrapped

    return wrap, failed


def recorder(events: list[dict[str, Any]]) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            events.append(json.loads(json.dumps(event)))
            return handler(event, ctx)

        return wrapped

    return wrap


def s3_text(engine: LocalEngine, key: str) -> bytes:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    body: bytes = s3.get_object(Bucket=engine.environment["STAGING_BUCKET"], Key=key)["Body"].read()
    return body


def s3_put(engine: LocalEngine, key: str, data: bytes) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=engine.environment["STAGING_BUCKET"], Key=key, Body=data)


def first_day(period: str) -> date:
    return date(int(period[:4]), int(period[5:]), 1)


def run_flow(engine: LocalEngine, flow: str) -> Any:
    return engine.run(flow, manual(), timeout=180)


def succeeded(result: Any) -> None:
    assert result.status == "SUCCEEDED", (result.error, result.task_failures())


def before_first(handler_filter: Any, action: Any) -> Any:
    """A wrapper doing ``action()`` once, just before the first invocation that matches ``handler_filter``."""
    done: list[bool] = []

    def wrap(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            if not done and handler_filter(event):
                done.append(True)
                action()
            return handler(event, ctx)

        return wrapped

    return wrap, done

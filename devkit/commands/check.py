"""``d365-anaplan check --config FILE``: read-only checks of both systems a connection names.

Anaplan: a token, the workspace and model, every configured import (with the columns its file must carry),
export and list. F&O: a token, ``$metadata`` (which route to posted GL), one page of every entity set the
flows read, the active ledger dimension format (does it carry the configured dimensions), the legal entities
and the journal names plan journals use. Nothing is written anywhere.

Drift (issue 12, item 6): one row per flow compares the model metadata with the fingerprint the flow's last
successful run recorded in the local state (``--state-dir``), or in a deployed stack's ledger (``--stack``): WARN with the run's diff when it changed (the
run would stop with MetadataDrift unless started with ``--accept-drift``).

Prints a pass/fail table with a remedy for every failure and warning (the same remedies ``run`` prints). Exit
codes (``devkit.commands.exit_codes``): 0 all pass, 1 some fail or warn (a drift WARN counts: the run would
stop), 2 the configuration or a credential reference is invalid, 3 a system could not be reached, 4 a system
refused our credentials.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.commands import _common as c
from devkit.commands import exit_codes as x
from devkit.commands import remedies

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"

Fingerprints = Callable[[str], "dict[str, Any] | None"]  # flow -> the last successful run's fingerprint item


@dataclass
class Check:
    system: str
    name: str
    status: str
    detail: str = ""
    remedy: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # systems that refused our credentials
    misconfigured: list[str] = field(default_factory=list)  # credential references that did not resolve
    clients: dict[str, Any] = field(default_factory=dict)  # "anaplan" / "dynamics" once authenticated

    def add(self, system: str, name: str, status: str, detail: str = "", remedy: str = "") -> Check:
        item = Check(system, name, status, detail, remedy)
        self.checks.append(item)
        return item

    @property
    def failed(self) -> list[Check]:
        return [ch for ch in self.checks if ch.status == FAIL]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    c.add_config_args(parser)
    parser.add_argument("--only", choices=("anaplan", "dynamics"), help="check one system only")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the clients' logs")
    parser.add_argument("--state-dir", dest="state_dir", type=Path, default=None, metavar="DIR",
                        help="local state whose last successful runs' metadata fingerprints the drift rows "
                        "compare with (default: the one `run` uses)")  # fmt: skip
    from devkit.commands.deployed import add_stack_args

    add_stack_args(parser)
    parser.add_argument("--from", dest="period_from", metavar="PERIOD",
                        help="first period the run would write, YYYY-MM (default: the close gate's window)")  # fmt: skip
    parser.add_argument("--to", dest="period_to", metavar="PERIOD", help="last period, YYYY-MM")
    parser.epilog = x.EPILOG


def _is_unreachable(exc: BaseException) -> bool:
    """A connection that never got an answer (refused, DNS, timeout) - not a TLS or HTTP-level refusal."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.SSLError):
            return False
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.Timeout | OSError):
            return True
        name = type(seen).__name__
        if name in ("AnaplanUnavailable", "DynamicsUnavailable") and "connect" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_tls(exc: BaseException) -> bool:
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _named(exc: BaseException, names: frozenset[str]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in names:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _short(exc: BaseException, width: int = 320) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _attempt(report: Report, system: str, name: str, remedy: str, fn: Callable[[], str]) -> bool:
    try:
        detail = fn()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row with its remedy
        if _named(exc, x.CONFIG_ERRORS):
            report.misconfigured.append(system)
            # an unresolved credential has one remedy; any other configuration problem has this check's own
            unresolved = _named(exc, frozenset({"SecretUnavailable"}))
            report.add(
                system, name, FAIL, _short(exc), remedies.CREDENTIAL_REFERENCE if unresolved else remedy
            )
        elif _is_unreachable(exc):
            report.unreachable.append(system)
            report.add(system, name, FAIL, _short(exc), remedies.UNREACHABLE)
        elif _is_tls(exc):
            report.unreachable.append(system)
            report.add(system, name, FAIL, _short(exc), remedies.TLS)
        elif _named(exc, x.AUTH_ERRORS):
            report.refused.append(system)
            report.add(system, name, FAIL, _short(exc), remedy)
        else:
            report.add(system, name, FAIL, _short(exc), remedy)
        return False
    report.add(system, name, PASS, detail)
    return True


# --- Anaplan -------------------------------------------------------------------------------------------------


def check_anaplan(
    cfg: Any,
    report: Report,
    maps: Any = None,
    *,
    fingerprints: Fingerprints | None = None,
    periods: dict[str, list[str]] | None = None,
) -> None:
    """Anaplan's rows (``maps``: where CSV value maps are read); with ``fingerprints`` (flow -> the last
    successful run's fingerprint item) the drift rows too."""
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.secrets import SecretResolver

    sysname = "Anaplan"
    state: dict[str, Any] = {}

    def token() -> str:
        client = AnaplanClient.from_config(cfg, resolver=SecretResolver(allow_local=True), max_attempts=2,
                                           backoff_base=0.2, sleep=lambda _s: None)  # fmt: skip
        client.tokens.token()
        state["client"] = client
        return f"{cfg.anaplan.auth.mode} auth at {cfg.anaplan.auth_url}: token issued"

    auth_remedy = remedies.anaplan_auth(cfg)
    if not _attempt(report, sysname, "authenticate", auth_remedy, token):
        report.add(sysname, "workspace, model, actions", SKIP, "no token")
        return
    client = state["client"]
    report.clients["anaplan"] = client
    ws_id, model_id = cfg.anaplan.workspace_id, cfg.anaplan.model_id

    def workspace() -> str:
        ws = client.find_workspace(ws_id)
        return f"{ws.name!r} ({ws.id})"

    _attempt(report, sysname, "workspace", f"anaplan.workspace_id {ws_id!r}: use an id listed by GET /workspaces "
             "for this user (the user must be a member of the workspace)", workspace)  # fmt: skip

    def model() -> str:
        found = client.find_model(model_id, ws_id)
        return f"{found.name!r} ({found.id})"

    if not _attempt(report, sysname, "model", f"anaplan.model_id {model_id!r}: use the id of the planning model in "
                    f"workspace {ws_id}", model):  # fmt: skip
        report.add(sysname, "actions", SKIP, "model not found")
        return

    from d365_anaplan.steps.preflight import preflight

    # The run's own metadata pre-check (imports vs the files the run writes, exports vs what plans read,
    # lists): the same verdict, message and remedy the run reaches before it reads anything.
    try:
        findings = preflight(cfg, client, maps=maps, periods=periods)
    except Exception as exc:  # noqa: BLE001 - an unreachable host or refused call becomes a row
        failure = exc
        _attempt(report, sysname, "imports, exports, lists", "the model's imports, exports and lists could not "
                 "be read: the user needs read access to the model's actions and lists", lambda: _raise(failure))  # fmt: skip
        return
    for found in findings:
        report.add(sysname, found.name, PASS if found.ok else FAIL, found.detail, found.remedy)
    if fingerprints is not None:
        check_drift(cfg, client, report, fingerprints)


def check_drift(cfg: Any, client: Any, report: Report, fingerprints: Fingerprints) -> None:
    """The drift verdict each flow's run would reach (issue 12, item 6): WARN with the run's diff when the model
    metadata changed since the flow's last successful run (the run stops with MetadataDrift unless started
    with --accept-drift); the exit code is then 1, as the run would fail."""
    from d365_anaplan.steps.drift import read_fingerprint, verdict

    _drift_rows(cfg, report, "Anaplan", "metadata drift", fingerprints,
                lambda flow, stored: verdict(cfg, flow, stored, read_fingerprint(cfg, client, flow)))  # fmt: skip


def _drift_rows(cfg: Any, report: Report, system: str, title: str, fingerprints: Fingerprints,
                lines_of: Callable[[Any, dict[str, Any] | None], list[str]], part: str | None = None) -> None:  # fmt: skip
    """One drift row per flow: WARN with the diff, else PASS (``part``: the fingerprint part compared)."""
    from d365_anaplan.steps.drift import REMEDY

    for flow in ["actuals", "plans"] if cfg.mapping.plans.exports else ["actuals"]:
        stored, name = fingerprints(flow), f"{title} ({flow})"
        try:
            lines = lines_of(flow, stored)
        except Exception as exc:  # noqa: BLE001 - a read that fails is a row like the others
            failure = exc
            _attempt(report, system, name, REMEDY, lambda: _raise(failure))  # noqa: B023 - called at once
            continue
        recorded = stored is not None and (part is None or part in (stored.get("fingerprint") or {}))
        if lines:
            report.add(system, name, WARN, "; ".join(lines), REMEDY)
        elif not recorded:
            report.add(
                system, name, PASS, "no fingerprint recorded yet (the first successful run records it)"
            )
        else:
            report.add(system, name, PASS, f"unchanged since run {stored.get('run_id')}")  # type: ignore[union-attr]


def _raise(exc: BaseException) -> str:
    raise exc


class _NoWatermarks:
    """The watermarks of a fresh local state (no run has loaded a period yet)."""

    def get(self, connection: str, flow: str) -> None:
        return None


@contextmanager
def ledger_of(state: Path, args: argparse.Namespace | None = None) -> Iterator[tuple[str, Any] | None]:
    """(table name, DynamoDB client or None) of the ledger the drift rows and the close gate read: a deployed
    stack's (``--stack``), else the local state ``run`` uses; None when there is no local state yet."""
    if args is not None and getattr(args, "stack", None):
        from devkit.commands.deployed import Deployed

        deployed = Deployed.resolve(args)
        yield deployed.resource_name("LedgerTable"), deployed.session.client("dynamodb")
        return
    from devkit import local_state

    if not local_state.exists(state):
        yield None
        return
    with local_state.ledger_tables(state) as names:
        yield names["LedgerTable"], None


def run_windows(
    cfg: Any, state: Path, first: str | None, last: str | None, args: argparse.Namespace | None = None
) -> dict[str, list[str]]:
    """The periods each flow's run would write now: the close gate's verdict (``steps/gate.py``), with the
    watermarks of the ledger the run uses (:func:`ledger_of`)."""
    from datetime import UTC, datetime

    from d365_anaplan.ledger.watermarks import Watermarks
    from d365_anaplan.steps.gate import close_gate

    now = datetime.now(UTC)

    def gate(flow: str, marks: Any) -> list[str]:
        return list(close_gate(cfg.close_calendar, connection=cfg.name, flow=flow, now=now, first=first,  # type: ignore[arg-type]
                               last=last, watermarks=marks,
                               reload_months=cfg.ledger.reload_closed_months)["periods"])  # fmt: skip

    with ledger_of(state, args) as table:
        marks = _NoWatermarks() if table is None else Watermarks(table[0], client=table[1])
        return {flow: gate(flow, marks) for flow in ("actuals", "plans")}


def stored_fingerprints(
    state: Path, connection: str, args: argparse.Namespace | None = None
) -> Fingerprints | None:
    """The fingerprints the last successful runs recorded in the ledger the run uses (None without one)."""
    from d365_anaplan.ledger.drift import Fingerprints as Store

    with ledger_of(state, args) as table:
        if table is None:
            return None
        store = Store(table[0], client=table[1])
        found = {flow: store.current(connection, flow) for flow in ("actuals", "plans")}
    return found.get


# --- F&O -----------------------------------------------------------------------------------------------------


def check_dynamics(
    cfg: Any,
    report: Report,
    *,
    fingerprints: Fingerprints | None = None,
    periods: dict[str, list[str]] | None = None,
) -> None:
    """F&O's rows; with ``fingerprints`` (flow -> the last successful run's fingerprint item) the F&O drift
    rows too; with ``periods`` (flow -> the months its run would write) the GL route over the actuals months."""
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.dynamics.odata_shapes import Query
    from d365_anaplan.secrets import SecretResolver

    sysname = "F&O"
    d = cfg.dynamics
    state: dict[str, Any] = {}

    def token() -> str:
        conn = connect(cfg, SecretResolver(allow_local=True), sleep=lambda _s: None, reuse_tokens=False)
        conn.tokens.token()
        state["conn"] = conn
        return f"client {d.client_id} in tenant {d.tenant_id}: token for {d.environment_url}"

    if not _attempt(report, sysname, "authenticate", remedies.DYNAMICS_AUTH, token):
        report.add(sysname, "metadata, entities, formats", SKIP, "no token")
        return
    conn = state["conn"]
    report.clients["dynamics"] = conn
    reader, client = conn.reader, conn.client

    def metadata() -> str:
        disc = reader.discover()
        state["discovery"] = disc
        key = "yes" if disc.has_integration_key else "no"
        return f"GL route {disc.route.value} via {disc.gl_entity_set}; LedgerJournalHeaders.IntegrationKey: {key}"

    _attempt(report, sysname, "$metadata (GL route)", remedies.DYNAMICS_ROUTE, metadata)

    sets = ["MainAccounts", "FinancialDimensionValues", "LegalEntities", "JournalNames",
            "LedgerJournalHeaders", "LedgerJournalLines"]  # fmt: skip
    disc = state.get("discovery")
    if disc is not None:
        sets.insert(2, disc.gl_entity_set)
        if disc.route.value == "bi":
            sets.insert(2, "GeneralJournalEntryBiEntities")
    if d.journal.target == "budget_register":
        sets += ["BudgetRegisterEntryHeaders", "BudgetRegisterEntryLines"]
    for entity_set in sets:

        def page(entity_set: str = entity_set) -> str:
            got = client.get_page(
                client.first_url(Query(entity_set, top=1)), what=f"GET {entity_set}", page_size=1
            )
            return f"readable ({len(got.rows)} row{'s' if len(got.rows) != 1 else ''} in a one-row page)"

        _attempt(report, sysname, f"entity {entity_set}",
                 "give the app's F&O user a security role that can read this entity (e.g. a custom role with "
                 "the entity's privilege) and make sure the entity is public in this environment", page)  # fmt: skip

    def ledger_format() -> str:
        fmt = reader.ledger_format()
        wanted = [dim.name for dim in cfg.mapping.dimensions]
        missing = [w for w in wanted if w not in fmt.segments]
        if missing:
            raise ValueError(f"active format {fmt.name!r} has segments {list(fmt.segments)}; "
                             f"dimensions {missing} of mapping.dimensions are not in it")  # fmt: skip
        return f"{fmt.name!r}: {fmt.delimiter.join(fmt.segments)}"

    _attempt(report, sysname, "ledger dimension format",
             "General ledger > Chart of accounts > Dimensions > Financial dimension configuration for integrating "
             "applications: activate a Ledger dimensions format with MainAccount and the mapped dimensions",
             ledger_format)  # fmt: skip

    _check_ledger(cfg, reader, report, sysname)  # ledgers, calendars and a sample of GL lines (actuals)
    months = (periods or {}).get("actuals") or []
    if months:
        _check_gl_window(cfg, reader, report, sysname, months)

    def companies() -> str:
        have = {e.company.upper() for e in reader.legal_entities()}
        missing = [co for co in d.companies if co.upper() not in have]
        if missing:
            raise ValueError(f"legal entities {missing} not found (have {sorted(have)[:20]})")
        return ", ".join(d.companies)

    _attempt(report, sysname, "legal entities", "fix dynamics.companies: dataAreaId values of existing legal "
             "entities the app's user may read", companies)  # fmt: skip

    names = {d.journal.journal_name} | {e.journal_name for e in cfg.mapping.plans.exports if e.journal_name}
    if d.journal.target == "ledger_journal":

        def journal_names() -> str:
            have: dict[str, set[str]] = {}
            for j in reader.journal_names():
                have.setdefault(j.company.upper(), set()).add(j.name)
            missing = [
                f"{n!r} in {co}"
                for co in d.companies
                for n in sorted(names)
                if n not in have.get(co.upper(), set())
            ]
            if missing:
                raise ValueError(f"journal names missing: {', '.join(missing)}")
            return f"{', '.join(sorted(names))} in {', '.join(d.companies)}"

        _attempt(report, sysname, "journal name", "create the journal name (General ledger > Journal setup > Journal "
                 "names, type Daily/Budget) in every company, or set dynamics.journal.journal_name", journal_names)  # fmt: skip
    check_plan_target(cfg, report, conn)
    if fingerprints is not None:
        check_fo_drift(cfg, reader, report, fingerprints)


def check_fo_drift(cfg: Any, reader: Any, report: Report, fingerprints: Fingerprints) -> None:
    """The F&O drift verdict each flow's run would reach (its first F&O step): WARN with the run's diff when
    the integration format or the financial dimensions changed since the flow's last successful run."""
    from d365_anaplan.steps.fo_drift import PART, fo_verdict, read_fo_fingerprint

    _drift_rows(cfg, report, "F&O", "F&O metadata drift", fingerprints,
                lambda flow, stored: fo_verdict(stored, read_fo_fingerprint(cfg, reader, flow)), PART)  # fmt: skip


@contextmanager
def _problems_as_failure() -> Iterator[None]:
    """A run's ConfigError as this check's failure row: the run's problem lines, word for word (a plain
    failure, not an unresolved credential)."""
    from d365_anaplan.errors import ConfigError

    try:
        yield
    except ConfigError as exc:
        raise ValueError("; ".join(exc.problems)) from None


def check_plan_target(cfg: Any, report: Report, conn: Any) -> None:
    """Where approved plans land (issue 10): the journal name's posting layer (ledger journals), the budget
    models and codes of every export and the budget register dimension format (budget register), and the
    status of the entries the connector wrote (pending completion in F&O)."""
    from d365_anaplan.flows.journal_keys import export_tag

    sysname = "F&O"
    d = cfg.dynamics
    j = d.journal
    writer, reader = conn.writer, conn.reader
    exports = cfg.mapping.plans.exports

    def currencies() -> str:
        from d365_anaplan.steps.plan_currency import resolve_plan_currencies

        with _problems_as_failure():  # what PlanJournals resolves (and refuses), word for word
            resolved = resolve_plan_currencies(cfg, reader)
        return "; ".join(
            f"{co} {cur} ({'configured = ledger' if j.currency_for(co) else 'ledger accounting currency'})"
            for co, cur in resolved.items()
        )

    _attempt(report, sysname, "plan currencies", "remove or correct dynamics.journal.currency_codes / currency_code: "
             "plan lines are written in each company's ledger accounting currency", currencies)  # fmt: skip
    if j.target == "ledger_journal":

        def layers() -> str:
            have = writer.journal_name_layers()
            names = sorted({e.journal_name or j.journal_name for e in exports} or {j.journal_name})
            wrong = [f"{n!r} in {co}: {have.get((co.upper(), n), 'missing')}" for co in d.companies for n in names
                     if have.get((co.upper(), n)) != j.posting_layer]  # fmt: skip
            if wrong:
                raise ValueError(f"journal names must post to layer {j.posting_layer}: {'; '.join(wrong)}")
            return f"{', '.join(names)} post to {j.posting_layer} (not Current) in {', '.join(d.companies)}"

        _attempt(report, sysname, "journal name posting layer", "set the journal names' posting layer (General ledger > "
                 "Journal setup > Journal names) to dynamics.journal.posting_layer, a layer other than Current, so "
                 "posted plan values never become actuals", layers)  # fmt: skip
    else:

        def models_and_codes() -> str:
            from d365_anaplan.flows.journal import budget_target

            models, codes = writer.budget_models(), writer.budget_codes()
            problems, seen = [], []
            for e in exports:
                years = sorted(e.budget_models) or [0]
                for fy in years:
                    model, code, revision = budget_target(j, e, fy)
                    seen.append(f"{e.version}: {model} {code}/{revision or '-'}")
                    for co in d.companies:
                        c = co.upper()
                        if (c, model) not in models:
                            problems.append(f"budget model {model!r} missing in {co}")
                        if codes.get((c, code), ("",))[0] != "OriginalBudget":
                            problems.append(f"budget code {code!r} in {co}: {codes.get((c, code), ('missing',))[0]}, "
                                            "not Original budget")  # fmt: skip
                        if not revision:
                            problems.append(
                                f"export {e.export_action!r}: no revision_budget_code (changes need one)"
                            )
                        elif codes.get((c, revision), ("",))[0] != "Amendment":
                            problems.append(f"budget code {revision!r} in {co}: "
                                            f"{codes.get((c, revision), ('missing',))[0]}, not Revision")  # fmt: skip
            if problems:
                raise ValueError("; ".join(sorted(set(problems))[:10]))
            return "; ".join(seen)

        _attempt(report, sysname, "budget models and codes", "create the budget models and codes (Budgeting > Setup > "
                 "Budget models / Budget codes) in every company: an Original budget code for first loads and a "
                 "Revision code for changes, per export (dynamics.journal or mapping.plans.exports)",
                 models_and_codes)  # fmt: skip

        def budget_format() -> str:
            fmt = reader.budget_format()
            wanted = cfg.mapping.plans.dimensions
            if wanted is None:
                wanted = [dim.name for dim in cfg.mapping.dimensions]
            missing = [w for w in wanted if w not in fmt.segments]
            if missing:
                raise ValueError(f"active budget format {fmt.name!r} has segments {list(fmt.segments)}; "
                                 f"plan dimensions {missing} are not in it")  # fmt: skip
            return f"{fmt.name!r}: {fmt.delimiter.join(fmt.segments)}"

        _attempt(report, sysname, "budget register dimension format", "activate a Budget register dimensions format "
                 "(General ledger > Chart of accounts > Dimensions > Financial dimension configuration for integrating "
                 "applications) starting with MainAccount and holding the plan dimensions", budget_format)  # fmt: skip

    if j.target == "budget_register":

        def revenue_sign() -> str:
            from d365_anaplan.steps.plan_sign import verify_revenue_sign

            with _problems_as_failure():  # what PlanJournals verifies before writing, word for word
                return verify_revenue_sign(cfg, writer)

        _attempt(report, sysname, "budget revenue sign (raw entity)", "set dynamics.journal.budget_revenue_read_sign "
                 "to what F&O shows (compared with BudgetTransactionLineBiEntities, which stores revenue "
                 "sign-flipped)", revenue_sign)  # fmt: skip

    def pending() -> str:
        entries = [
            e
            for ex in exports
            for co in d.companies
            for e in writer.entries(co, export_tag(cfg.name, ex.export_action))
        ]
        waiting = [e for e in entries if e.pending]
        if not entries:
            return "no plan entries written yet"
        what = "completion (Update budget balances)" if j.target == "budget_register" else "posting"
        if waiting:
            shown = ", ".join(f"{e.company} {e.number}" for e in waiting[:10])
            return f"{len(waiting)} of {len(entries)} entries pending {what}: {shown}"
        return f"{len(entries)} entries, none pending {what}"

    _attempt(
        report,
        sysname,
        "plan entries status",
        "read access to the budget register / journal headers",
        pending,
    )


def _check_gl_window(cfg: Any, reader: Any, report: Report, sysname: str, months: list[str]) -> None:
    """The GL route over the months the actuals run would read: what the run would refuse before its first
    line (a filter the route cannot apply, year-end entries it cannot tell apart), with the run's message."""
    from datetime import date

    first, last = min(months), max(months)
    start = date(int(first[:4]), int(first[5:7]), 1)
    end = date(int(last[:4]) + (last[5:7] == "12"), int(last[5:7]) % 12 + 1, 1)
    _attempt(report, sysname, f"GL route over {first}..{last}",
             "publish the column the message names on the GL entity (or the data project's mapping), or use "
             "dynamics.gl_route: bi", lambda: reader.check_window(start, end))  # fmt: skip


def _check_ledger(cfg: Any, reader: Any, report: Report, sysname: str) -> None:
    """Ledgers and fiscal calendars of the companies, then real GL lines as the run will split them."""
    from datetime import UTC, date, datetime

    from d365_anaplan.dynamics.reader import DynamicsReader

    def ledgers() -> str:
        return "; ".join(reader.describe_ledgers())

    if not _attempt(report, sysname, "ledgers and fiscal calendars",
                    "set up a ledger with a fiscal calendar for every company in dynamics.companies and let the "
                    "app's user read Ledgers, FiscalPeriods and FiscalCalendarPeriodBiEntities", ledgers):  # fmt: skip
        return

    def sample() -> str:
        today = datetime.now(UTC).date()
        index = today.year * 12 + today.month - 1 - 3
        start = date(index // 12, index % 12 + 1, 1)
        shown = []
        for company in cfg.dynamics.companies:
            one = DynamicsReader(reader.client, companies=[company], gl_route=cfg.dynamics.gl_route,
                                 published_gl_entity_set=cfg.dynamics.published_gl_entity_set, options=cfg.ledger)  # fmt: skip
            shown += one.sample_split(start, today, limit=2)
        first = cfg.close_calendar.first_period
        if not shown and first:  # nothing recent: the first period the calendar knows
            start = date(int(first[:4]), int(first[5:7]), 1)
            end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
            for company in cfg.dynamics.companies:
                one = DynamicsReader(reader.client, companies=[company], gl_route=cfg.dynamics.gl_route,
                                     published_gl_entity_set=cfg.dynamics.published_gl_entity_set, options=cfg.ledger)  # fmt: skip
                shown += one.sample_split(start, end, limit=2)
        if not shown:
            return f"no posted lines since {start.isoformat()} to sample"
        wanted = [d.name for d in cfg.mapping.dimensions]
        parts = []
        for g, how in shown:
            dims = " ".join(f"{n}={g.dimensions.get(n) or '-'}" for n in wanted)
            parts.append(f"{g.company} {g.accounting_date} {g.account} {dims} {g.amount} {g.amount_currency} "
                         f"[{g.period_type or 'period type unknown'} {g.fiscal_year}/{g.fiscal_period}] "
                         f"split from {how}")  # fmt: skip
        return "; ".join(parts)

    _attempt(report, sysname, "GL lines split into columns",
             "if values land in the wrong columns, publish LedgerDimensionValuesJson on the GL line entity (named "
             "values), or set ledger.account_structures to each account structure's segment order (General "
             "ledger > Chart of accounts > Structures), or ledger.display_value_order: format if display values "
             "follow the ledger integration format", sample)  # fmt: skip


def check_mappings(cfg: Any, report: Report, maps: Any) -> None:
    """What needs both systems: the actuals account scope over F&O's main accounts, and value-map coverage of
    the F&O codes a map passes through (the verdicts the actuals run reaches with the same functions)."""
    from d365_anaplan.errors import BadInputData, ConfigError
    from d365_anaplan.steps.mapping import (
        SCOPE_REMEDY,
        VALUE_MAP_REMEDY,
        actuals_scope,
        coverage_dimensions,
        coverage_fo_codes,
        coverage_problems,
        load_value_maps,
    )

    m = cfg.mapping
    conn, client = report.clients.get("dynamics"), report.clients.get("anaplan")
    if m.scopes.actuals.unrestricted and not coverage_dimensions(cfg):
        return
    if conn is None or client is None:
        report.add("both", "account scope and value-map coverage", SKIP, "needs both systems")
        return

    def scope() -> str:
        types = {a.account.upper(): a.account_type for a in conn.reader.main_accounts()}
        return f"selects {len(actuals_scope(cfg, types).accounts())} of {len(types)} F&O main accounts"

    if not m.scopes.actuals.unrestricted:
        _attempt(report, "both", "account scope (actuals)", SCOPE_REMEDY, scope)
    if not coverage_dimensions(cfg):
        return

    def coverage() -> str:
        try:
            vm = load_value_maps(cfg, maps)
        except ConfigError as exc:
            raise BadInputData("; ".join(exc.problems)) from None
        dims = {d.name: d for d in m.dimensions}
        members = {n: {i.code or i.name for i in client.list_items(str(dims[n].list_name))}
                   for n in coverage_dimensions(cfg)}  # fmt: skip
        problems = coverage_problems(cfg, vm, members, coverage_fo_codes(cfg, conn.reader))
        if problems:
            raise BadInputData("; ".join(problems))
        return f"F&O codes of {', '.join(coverage_dimensions(cfg))} reach members of their Anaplan lists"

    _attempt(report, "both", "value-map coverage (F&O codes)", VALUE_MAP_REMEDY, coverage)


def run(args: argparse.Namespace) -> int:
    c.quiet_handlers(args.verbose)
    cfg = c.load_config(args)
    report = Report()
    print(f"checking connection {cfg.name!r} (read-only)…", flush=True)
    from pathlib import Path

    from d365_anaplan.steps.mapping import MapSource

    maps = MapSource(base_dir=Path(args.config).resolve().parent)  # CSV maps: relative to the config file
    from devkit.commands.deployed import StackError

    try:
        stored = stored_fingerprints(c.state_dir(args), cfg.name, args)
    except StackError as exc:
        print(f"d365-anaplan check: {exc}", file=sys.stderr)
        return c.EXIT_USAGE
    from d365_anaplan.errors import BadInputData
    from devkit.commands.run import periods_of

    try:
        window = (
            periods_of(
                argparse.Namespace(
                    period_from=getattr(args, "period_from", None), period_to=getattr(args, "period_to", None)
                )
            )
            or {}
        )
        periods = run_windows(cfg, c.state_dir(args), window.get("from"), window.get("to"), args)
    except (ValueError, BadInputData) as exc:  # the gate refuses the range as the run would
        print(f"d365-anaplan check: {exc}", file=sys.stderr)
        return c.EXIT_USAGE
    if args.only in (None, "anaplan"):
        check_anaplan(cfg, report, maps, fingerprints=stored, periods=periods)
    if args.only in (None, "dynamics"):
        check_dynamics(cfg, report, fingerprints=stored, periods=periods)
    if args.only is None:
        check_mappings(cfg, report, maps)
    rows = [[ch.status, ch.system, ch.name, ch.detail] for ch in report.checks]
    c.table(rows, ["result", "system", "check", "detail"])
    warned = [ch for ch in report.checks if ch.status == WARN]  # drift: the run would stop on it
    if report.failed or warned:
        print("\nremedies:")
        for ch in report.failed + warned:
            print(f"  - {ch.system} {ch.name}: {ch.remedy}")
    passed = sum(1 for ch in report.checks if ch.status == PASS)
    print(f"\n{passed} passed, {len(report.failed)} failed, {len(warned)} warned, "
          f"{sum(1 for ch in report.checks if ch.status == SKIP)} skipped")  # fmt: skip
    codes: list[int] = [x.EXIT_FAILED] if report.failed or warned else []
    for systems, code, what in ((report.misconfigured, x.EXIT_USAGE, "credentials not resolved"),
                                (report.unreachable, x.EXIT_UNREACHABLE, "unreachable"),
                                (report.refused, x.EXIT_REFUSED, "credentials refused")):  # fmt: skip
        if systems:
            print(f"{what}: {', '.join(sorted(set(systems)))}", file=sys.stderr)
            codes.append(code)
    return x.worst(codes)

"""The Anaplan metadata pre-check shared by ``d365-anaplan check`` and the runs (issue 12, item 4).

Everything the model's metadata can reveal about a run's verdict, decided by the same code the run uses:

* every import the flow uploads to: the file the connector will write (its header, built from the
  configuration exactly as the run builds it) is compared with the import's ``headerNames`` by
  :func:`~d365_anaplan.anaplan.client.check_header`, the check the upload itself applies;
* every plan export: its ``headerNames`` (``exportMetadata``) are parsed by the plan export reader the run
  uses, so a missing column fails with the run's message;
* the actuals read-back export: the columns reconciliation needs;
* every list the alignment check reads;
* the value maps (:mod:`d365_anaplan.steps.mapping`): CSV maps readable and consistent, every mapped member
  present in the Anaplan lists the connector does not load itself (actuals), every member plans reverse
  unambiguous (plans).

``check`` prints one row per :class:`Finding`; a run calls :func:`require` before it reads anything from
F&O, so a misnamed import or a column the file will not carry stops the run in seconds with the same
message and remedy.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from d365_anaplan.anaplan.client import check_header
from d365_anaplan.errors import (
    AnaplanHeaderMismatch,
    AnaplanNotFound,
    BadInputData,
    ConfigError,
    ConnectorError,
)
from d365_anaplan.flows.actuals_file import actuals_header
from d365_anaplan.flows.plans import parse_plan_export
from d365_anaplan.steps.mapping import (
    VALUE_MAP_REMEDY,
    MapSource,
    bucket_source,
    coverage_dimensions,
    coverage_problems,
    load_value_maps,
    plan_reverse_problems,
)
from d365_anaplan.vocabulary import Flow

if TYPE_CHECKING:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.anaplan.models import ImportMetadata
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.steps.context import StepContext


IMPORT_REMEDY = (
    "make the connector's file and the import agree (columns are matched by name): set the column names in "
    "mapping.* (mapping.actuals.version_column: null for no version column, constant_columns for fixed "
    "values) or ask the model builder to change the import's source columns; the action name must be the "
    "import's name or id"
)
EXPORT_REMEDY = (
    "ask the model builder to add the missing columns to the export (tabular, one row per company/account/"
    "period) or set the column names in mapping.plans.* to the export's headers; the action name must be the "
    "export's name or id"
)
READBACK_REMEDY = (
    "mapping.actuals.verify_export must name an export of the actuals module with the company, account, period "
    "and amount columns of the actuals file"
)
LIST_REMEDY = "set mapping.*.list_name to the Anaplan list that holds these members"


@dataclass(frozen=True)
class PlannedFile:
    """A file the connector uploads to ``action``: what it holds and its header, in order."""

    action: str
    what: str
    columns: list[str]


@dataclass(frozen=True)
class Finding:
    """One pre-check verdict: ``ok`` or the failure's ``detail`` (the run's message) and ``remedy``."""

    name: str
    ok: bool
    detail: str
    remedy: str = ""
    error: type[ConnectorError] = ConnectorError


def planned_files(cfg: ConnectionConfig) -> list[PlannedFile]:
    """The files an actuals run uploads, with the header each carries (as the run's steps write them)."""
    m = cfg.mapping
    opts = cfg.ledger
    attributes = [
        c for c in (opts.account_type_column, opts.account_category_column, opts.account_parent_column) if c
    ]
    files = [PlannedFile(m.accounts.import_action, "main accounts",
                         [m.accounts.code_column, m.accounts.name_column, *attributes])]  # fmt: skip
    if m.companies is not None:
        files.append(PlannedFile(m.companies.import_action, "legal entities",
                                 [m.companies.code_column, m.companies.name_column]))  # fmt: skip
    files += [PlannedFile(d.list_import, f"{d.name} values", [m.accounts.code_column, m.accounts.name_column])
              for d in m.dimensions if d.list_import]  # fmt: skip
    files.append(PlannedFile(m.actuals.import_action, "actuals",
                             actuals_header(m.actuals, m.dimensions, None, opts.currency_column)))  # fmt: skip
    return files


def _header_line(columns: list[str], meta: ImportMetadata | None = None) -> bytes:
    """The header row as the run's CSV writer would write it, in the import's separator."""
    source = meta.source if meta is not None else None
    sep = (source.column_separator if source else None) or ","
    sep = "\t" if sep in ("\\t", "Tab") else sep
    quote = (source.text_delimiter if source else None) or '"'
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep[0], quotechar=quote[0], lineterminator="\n").writerow(columns)
    return buf.getvalue().encode("utf-8")


def import_headers(client: AnaplanClient, action: str) -> list[str] | None:
    """The import's ``headerNames`` (None when the model does not report them)."""
    meta = client.import_metadata(client.find_import(action).id)
    return list(meta.source.header_names) if meta.source and meta.source.header_names else None


def export_headers(client: AnaplanClient, export_id: str) -> list[str]:
    """The export's ``headerNames`` (anaplan-shapes.md §1)."""
    return client.export_header_names(export_id)


def _judge(name: str, remedy: str, fn: Callable[[], str]) -> Finding:
    try:
        detail = fn()
    except (AnaplanNotFound, AnaplanHeaderMismatch, BadInputData) as exc:
        return Finding(name, False, str(exc), remedy, type(exc))
    return Finding(name, True, detail)


def _imports(cfg: ConnectionConfig, client: AnaplanClient) -> list[Finding]:
    out = []
    for planned in planned_files(cfg):

        def one(p: PlannedFile = planned) -> str:
            info = client.find_import(p.action)
            meta = client.import_metadata(info.id)
            order = meta.source.header_names if meta.source and meta.source.header_names else None
            columns = p.columns
            if p.what == "actuals":  # written in the import's order when the names match (as the run does)
                m = cfg.mapping
                columns = actuals_header(m.actuals, m.dimensions, None, cfg.ledger.currency_column, order)
            try:
                check_header(_header_line(columns, meta), meta, info.name)
            except AnaplanHeaderMismatch as exc:
                raise AnaplanHeaderMismatch(f"{exc} (the connector's file: {columns})") from None
            headers = meta.source.header_names if meta.source else []
            return f"{info.id}, columns {headers or '(not reported; file: ' + str(p.columns) + ')'}"

        out.append(_judge(f"import {planned.action!r} ({planned.what})", IMPORT_REMEDY, one))
    return out


def _lists(cfg: ConnectionConfig, client: AnaplanClient) -> list[Finding]:
    m = cfg.mapping
    lists = [("accounts", m.accounts.list_name)] + [(d.name, d.list_name) for d in m.dimensions]
    out = []
    for what, list_name in lists:
        if not list_name:
            continue

        def one(list_name: str = list_name) -> str:
            return f"id {client.find_list(list_name).id}"

        out.append(_judge(f"list {list_name!r} ({what})", LIST_REMEDY, one))
    return out


def _plan_exports(cfg: ConnectionConfig, client: AnaplanClient) -> list[Finding]:
    m = cfg.mapping
    wanted = m.plans.dimensions
    dims = [d for d in m.dimensions if wanted is None or d.name in wanted]
    out = []
    for export in m.plans.exports:

        def one(export: Any = export) -> str:
            info = client.find_export(export.export_action)
            headers = export_headers(client, info.id)
            if not headers:
                return f"{info.id}: headers not reported (checked when the run reads the file)"
            list(parse_plan_export([_header_line(headers)], export=export, plans=m.plans, dimensions=dims,
                                   companies=cfg.dynamics.companies, calendar=cfg.close_calendar,
                                   period_format=export.period_format or m.actuals.period_format,
                                   allow_empty=True))  # fmt: skip
            return f"{info.id}, columns {headers}"

        out.append(_judge(f"export {export.export_action!r} ({export.version} plan)", EXPORT_REMEDY, one))
    return out


def _readback(cfg: ConnectionConfig, client: AnaplanClient) -> list[Finding]:
    a = cfg.mapping.actuals
    if not a.verify_export:
        return []

    def one() -> str:
        info = client.find_export(str(a.verify_export))
        headers = export_headers(client, info.id)
        needed = [a.company_column, a.account_column, a.period_column, a.amount_column]
        missing = [c for c in needed if headers and c not in headers]
        if missing:
            raise BadInputData(
                f"actuals read-back {a.verify_export!r}: columns {missing} are missing from {headers}"
            )
        return f"{info.id}, columns {headers or '(not reported)'}"

    return [_judge(f"export {a.verify_export!r} (actuals read-back)", READBACK_REMEDY, one)]


def _value_maps(
    cfg: ConnectionConfig, client: AnaplanClient, flow: Flow | None, source: MapSource | None
) -> list[Finding]:
    """The value maps: readable and consistent; mapped members exist in the lists they land in (actuals);
    every member plans reverse leads to one F&O code (plans)."""
    if not cfg.mapping.value_maps:
        return []
    try:
        maps = load_value_maps(cfg, source or MapSource())
    except (BadInputData, ConfigError) as exc:
        detail = "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
        return [Finding("value maps", False, detail, VALUE_MAP_REMEDY, BadInputData)]
    try:  # every configured company must map (unmapped: fail refuses the rows of one that does not)
        for company in cfg.dynamics.companies:
            maps.company.apply(company, where="dynamics.companies")
    except BadInputData as exc:
        return [Finding("value maps", False, str(exc), VALUE_MAP_REMEDY, BadInputData)]
    out = [Finding("value maps", True, ", ".join(f"{n}: {len(maps.get(n).forward)} code(s)"
                                                 for n in cfg.mapping.value_maps))]  # fmt: skip
    if flow in (None, "actuals"):
        dims = {d.name: d for d in cfg.mapping.dimensions}
        for name in coverage_dimensions(cfg):

            def one(name: str = name) -> str:
                list_name = str(dims[name].list_name)
                members = {i.code or i.name for i in client.list_items(list_name)}
                problems = coverage_problems(cfg, maps, {name: members}, {})
                if problems:
                    raise BadInputData("; ".join(problems))
                return f"every member of mapping.value_maps.{name} is in the list {list_name!r}"

            out.append(_judge(f"value map {name!r} (members)", VALUE_MAP_REMEDY, one))
    if flow in (None, "plans"):
        problems = plan_reverse_problems(cfg, maps)
        out.append(Finding("value maps reversed for plans", not problems,
                           "; ".join(problems) or "every member leads to one F&O code",
                           VALUE_MAP_REMEDY if problems else "", BadInputData))  # fmt: skip
    return out


def preflight(
    cfg: ConnectionConfig,
    client: AnaplanClient,
    flow: Flow | None = None,
    maps: MapSource | None = None,
    periods: Mapping[str, Sequence[str]] | None = None,
) -> list[Finding]:
    """Every metadata verdict for ``flow`` (both flows when None), in the order ``check`` prints them.
    ``maps``: where CSV value maps are read (default: relative to the working directory); ``periods``: flow ->
    the periods the run writes (``YYYY-MM``, the close gate's)."""
    from d365_anaplan.steps.model_calendar import calendar_finding
    from d365_anaplan.steps.time_range import time_range_findings

    findings: list[Finding] = [calendar_finding(cfg, client)]  # both flows label periods by the fiscal year
    findings += time_range_findings(cfg, client, flow, periods)
    if flow in (None, "actuals"):
        findings += _imports(cfg, client)
        findings += _lists(cfg, client)
        findings += _readback(cfg, client)
    if flow in (None, "plans"):
        findings += _plan_exports(cfg, client)
    findings += _value_maps(cfg, client, flow, maps)
    return findings


def require(
    cfg: ConnectionConfig,
    client: AnaplanClient,
    flow: Flow,
    maps: MapSource | None = None,
    periods: Sequence[str] | None = None,
) -> list[Finding]:
    """Run the pre-check for ``flow`` (``periods``: the run's, ``YYYY-MM``); raise the first failure's error
    naming every failure and its remedy."""
    findings = preflight(cfg, client, flow, maps, {flow: periods} if periods is not None else None)
    failed = [f for f in findings if not f.ok]
    if failed:
        text = "; ".join(f"{f.name}: {f.detail} (remedy: {f.remedy})" for f in failed)
        raise failed[0].error(f"metadata pre-check failed before any data was read: {text}")
    return findings


def metadata_precheck(
    ctx: StepContext, flow: Flow, accept_drift: bool = False, periods: Sequence[str] | None = None
) -> dict[str, Any]:
    """Raise the first failure's error (its message lists every failure with its remedy); then compare the
    metadata fingerprint with the last successful run's (``MetadataDrift`` unless ``accept_drift``) and keep
    it for this run's close; record what passed."""
    from d365_anaplan.steps.drift import check_drift

    findings = require(ctx.cfg, ctx.anaplan, flow, bucket_source(ctx), periods)
    accepted = check_drift(ctx, flow, accept_drift)
    ctx.ledger.record_step(ctx.run_id, "MetadataPrecheck", "SUCCEEDED",
                           {"flow": flow, "checked": [f.name for f in findings], "accepted_drift": accepted})  # fmt: skip
    return {"checked": len(findings)}

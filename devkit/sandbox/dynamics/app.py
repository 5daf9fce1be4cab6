"""The F&O sandbox: an Entra look-alike and an F&O OData host on one HTTPS server (dev only).

Built from dynamics-fo.md, not from what our client sends: paging (§2.1, at most 10,000 rows per page,
``$skiptoken`` next links, ``Prefer: odata.maxpagesize`` honoured and echoed in ``Preference-Applied``),
``$filter`` as F&O accepts it (``in``/``has`` rejected), ``$select``, ``$count``, ``$top``, ``$skip``,
``cross-company`` (without it only the default company's rows), token checks (§1.3: ``aud`` exactly the
environment URL, tenant, ``oid``, app registered in F&O), journal writes with F&O's checks and error JSON
(§2.5, §3, §5), atomic ``$batch`` changesets (at most 5,000 operations), resource-based 429 with
``Retry-After`` under a load budget (§4.1), plus fault injection and request counters for tests.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from devkit.sandbox.dynamics import books as books_mod
from devkit.sandbox.dynamics import budget, dmf, seed
from devkit.sandbox.dynamics.entities import ENUMS, NS, EntityDef, csdl, entity_defs
from devkit.sandbox.dynamics.entra import Entra, EntraApp
from devkit.sandbox.dynamics.load import InFlight, Pressure
from devkit.sandbox.dynamics.main_accounts import main_account_posting
from devkit.sandbox.dynamics.query import Node, QueryError, bounds, compile_filter, parse_filter
from devkit.sandbox.server import Request, Response

MAX_PAGE = 10_000
MAX_BATCH_OPS = 5_000
RESOURCE_429 = (
    "This request could not be processed at this time due to system experiencing high resource utilization."
)
WRITE_EXC = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
ODATA_EXC = "Microsoft.OData.ODataException"

Row = dict[str, Any]


@dataclass
class SandboxConfig:
    tenant_id: str = "5f4c3b2a-1d0e-4f9a-8b7c-6d5e4f3a2b1c"
    client_id: str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    client_secret: str = "sandbox-only-secret-3f9c"  # noqa: S105 - a throwaway credential of the local sandbox
    client_certificates: list[bytes] = field(default_factory=list)
    registered_in_fo: bool = (
        True  # the app is listed under System administration > Microsoft Entra applications
    )
    gl_lines: int = 2_000
    months: int = 12
    start: date = date(2025, 1, 1)
    gl_seed: int = 42
    publish_gl_entity: bool = False
    bi_entities: bool = True
    integration_key: bool = True
    ledger_format_active: bool = True
    token_lifetime: int = 3599
    load_budget: int | None = None  # requests per load_window seconds before resource-based 429s
    load_window: float = 1.0
    default_company: str = seed.DEFAULT_COMPANY
    budget_entity_sign: str = "as_entered"  # or "stored": see budget.py (UNCONFIRMED in F&O)
    # ledgers and fiscal calendars (books.py): per company "monthly" or "445"; special vouchers (closing,
    # opening, intercompany, other posting layers, budget appropriation); LedgerAccount display order:
    # "format" (the integration format) or "structure" (each account structure's own order)
    fiscal_calendars: dict[str, str] = field(default_factory=dict)
    books: bool = False
    ledger_account_order: str = "format"
    ledger_dimension_json: bool = (
        True  # GeneralJournalAccountEntryBiEntities publishes LedgerDimensionValuesJson
    )


@dataclass
class Fault:
    kind: str  # "status" | "slow" | "drop" | "expire_token"
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    path_contains: str = "/data/"
    method: str | None = None


class WriteError(Exception):
    def __init__(self, entity: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.entity = entity
        self.message = message
        self.field_name = field_name


class HttpError(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


# --- JSON with exact decimals ------------------------------------------------------------------------------

_DEC_RE = re.compile(r'"\\u0000(-?[0-9]+(?:\.[0-9]+)?)\\u0000"')


def _prep(value: Any) -> Any:
    if type(value) is Decimal:
        return f"\x00{value:f}\x00"
    if isinstance(value, dict):
        return {
            k: (f"\x00{v:f}\x00" if type(v) is Decimal else v if type(v) in _FLAT else _prep(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_prep(v) for v in value]
    return value


_FLAT = (str, int, bool, type(None))
_ZERO = Decimal("0.00")


def dumps(payload: Any) -> bytes:
    """JSON with ``Decimal`` as exact numbers (F&O sends Edm.Decimal as JSON numbers)."""
    text = json.dumps(_prep(payload), ensure_ascii=False, separators=(",", ":"))
    return _DEC_RE.sub(lambda m: m.group(1), text).encode("utf-8")


ODATA_HEADERS = {
    "Content-Type": "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8",
    "OData-Version": "4.0",
}


def odata_json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, dumps(payload), {**ODATA_HEADERS, **(headers or {})})


def fo_error(status: int, message: str, inner: str, inner_type: str) -> Response:
    """F&O's error JSON (dynamics-fo.md §5.1): empty ``code``, the useful text in ``innererror.message``."""
    payload = {
        "error": {
            "code": "",
            "message": message,
            "innererror": {
                "message": inner,
                "type": inner_type,
                "stacktrace": f"   at {inner_type.rsplit('.', 1)[0]}.Sandbox()",
            },
        }
    }
    return odata_json(status, payload)


def query_error(detail: str) -> Response:
    return fo_error(400, f"The query specified in the URI is not valid. {detail}", detail, ODATA_EXC)


def write_error(err: WriteError) -> Response:
    infolog = f"Error: {err.message}"
    if err.field_name:
        infolog += f"; Warning: validateField failed on field '{err.entity}Entity.{err.field_name}'."
    inner = f"Write failed for table row of type '{err.entity}Entity'. Infolog: {infolog}"
    return fo_error(500, "An error has occurred.", inner, WRITE_EXC)


def _dto(d: date, hour: int = 0) -> str:
    return f"{d.isoformat()}T{hour:02d}:00:00Z"


# --- the sandbox -------------------------------------------------------------------------------------------


class DynamicsSandbox:
    def __init__(
        self, config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = cfg = config or SandboxConfig()
        self.clock = clock
        self._base_url = "https://127.0.0.1"
        self.lock = threading.RLock()
        self.counters: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self._load: deque[float] = deque()
        self.in_flight = InFlight()  # /data requests served at once (load.py)
        self.pressure: Pressure | None = None  # environment-wide resource pressure, armed by tests
        self.defs = entity_defs(
            publish_gl_entity=cfg.publish_gl_entity,
            integration_key=cfg.integration_key,
            bi_entities=cfg.bi_entities,
            ledger_dimension_json=cfg.ledger_dimension_json,
        )
        budget.install_enums()
        self.defs.update(budget.entity_defs())
        self.defs[dmf.ACTION_SET] = dmf.ENTITY_DEF
        self.metadata_xml = csdl(self.defs)
        self.gl = seed.GLGenerator(
            total_lines=cfg.gl_lines, months=cfg.months, start=cfg.start, seed=cfg.gl_seed
        )
        self.books = books_mod.Books(self.gl, calendars=dict(cfg.fiscal_calendars), extras=cfg.books)
        app = EntraApp(cfg.client_id, cfg.client_secret, list(cfg.client_certificates))
        self.entra = Entra(
            tenant_id=cfg.tenant_id,
            apps=[app],
            resources=lambda: [self.environment_url],
            base_url=lambda: self._base_url,
            token_lifetime=cfg.token_lifetime,
            clock=clock,
        )
        self.registered_clients = {cfg.client_id} if cfg.registered_in_fo else set()
        self.static: dict[str, list[Row]] = self._static_tables()
        self.journal_headers: dict[tuple[str, str], Row] = {}
        self.journal_lines: dict[tuple[str, str], list[Row]] = {}
        self.budget_headers: dict[tuple[str, str], Row] = {}
        self.budget_lines: dict[tuple[str, str], list[Row]] = {}
        self.sequences: Counter[str] = Counter()
        self.batch_jobs: dict[int, Row] = {
            seed.POSTING_BATCH_JOB_ID: {
                "BatchJobRecId": seed.POSTING_BATCH_JOB_ID,
                "JobDescription": "Post Anaplan journals",
                "Status": "Hold",
            }
        }
        self.posting_log: list[str] = []
        self._created: list[tuple[str, tuple[str, str], Row]] | None = None
        self.blob_store = dmf.BlobStore(clock)  # the package API's storage host (dmf.py)
        self.packages = dmf.PackageService(
            self._package_rows,
            list(seed.COMPANIES),
            self.blob_store,
            lambda c, rows: budget.import_rows(self, c, rows),
        )

    # -- binding ------------------------------------------------------------------------------------------

    def bind(self, base_url: str) -> DynamicsSandbox:
        self._base_url = base_url.rstrip("/")
        self.blob_store.bind("https://localhost:" + self._base_url.rsplit(":", 1)[1])  # another host
        return self

    @property
    def environment_url(self) -> str:
        return self._base_url.lower()

    @property
    def authority_host(self) -> str:
        return self._base_url

    # -- test hooks -----------------------------------------------------------------------------------------

    def inject(self, kind: str = "status", **kwargs: Any) -> Fault:
        fault = Fault(kind, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def expire_tokens(self) -> None:
        self.entra.expire_all()

    def count(self, prefix: str = "") -> int:
        return sum(v for k, v in self.counters.items() if k.startswith(prefix))

    # -- seed tables ----------------------------------------------------------------------------------------

    def _static_tables(self) -> dict[str, list[Row]]:
        accounts = [
            {
                "ChartOfAccounts": seed.CHART_OF_ACCOUNTS,
                "MainAccountId": a.account,
                "Name": a.name,
                "MainAccountType": a.account_type,
                "MainAccountCategory": a.category,
                "AccountCategoryDescription": a.category.title(),
                "IsSuspended": "Yes" if a.account in seed.SUSPENDED_ACCOUNTS else "No",
                "ActiveFrom": "1900-01-01T00:00:00Z",
                "ActiveTo": "1900-01-01T00:00:00Z",
                "DoNotAllowManualEntry": "No",
                **main_account_posting(a),
                "MainAccountRecId": a.recid,
                "ChartOfAccountsRecId": seed.CHART_OF_ACCOUNTS_RECID,
                "ParentMainAccountId": "",
                "DefaultCurrency": "",
            }
            for a in seed.MAIN_ACCOUNTS
        ]
        attributes = [
            {
                "DimensionName": "MainAccount",
                "ReportColumnName": "MainAccount",
                "UseValuesFrom": "Main account",
                "DimensionValueMask": "",
                "CopyValuesOnCreate": "No",
            }
        ] + [
            {
                "DimensionName": d,
                "ReportColumnName": d,
                "UseValuesFrom": "< Custom dimension >",
                "DimensionValueMask": "",
                "CopyValuesOnCreate": "No",
            }
            for d in seed.DIMENSIONS
        ]
        values = [
            {
                "FinancialDimension": d,
                "LegalEntityId": "",
                "DimensionValue": v,
                "Description": desc,
                "IsSuspended": "No",
                "IsBlockedForManualEntry": "No",
                "IsTotal": "No",
                "ActiveFrom": "1900-01-01T00:00:00Z",
                "ActiveTo": "1900-01-01T00:00:00Z",
                "GroupDimension": "",
                "Owner": "",
            }
            for d in seed.DIMENSIONS
            for v, desc in seed.used_dimension_values(d)
        ]
        fmt = "-".join(seed.LEDGER_FORMAT)
        formats = [
            {
                "DimensionFormatName": seed.LEDGER_FORMAT_NAME,
                "DimensionFormatType": "DataEntityLedgerDimensionFormat",
                "FinancialDimensionFormat": fmt,
                "IsActive": "Yes" if self.config.ledger_format_active else "No",
            },
            {
                "DimensionFormatName": "LedgerFormatOld",
                "DimensionFormatType": "DataEntityLedgerDimensionFormat",
                "FinancialDimensionFormat": "MainAccount-Department-CostCenter",
                "IsActive": "No",
            },
            {
                "DimensionFormatName": seed.DEFAULT_FORMAT_NAME,
                "DimensionFormatType": "DataEntityDefaultDimensionFormat",
                "FinancialDimensionFormat": "-".join(seed.DIMENSIONS),
                "IsActive": "Yes",
            },
            {
                "DimensionFormatName": seed.BUDGET_FORMAT_NAME,
                "DimensionFormatType": "DataEntityBudgetDimensionFormat",
                # its own segment order: a client reusing ledger strings for budgets is caught
                "FinancialDimensionFormat": "-".join(("MainAccount", *reversed(seed.DIMENSIONS))),
                "IsActive": "Yes",
            },
        ]
        return {
            "MainAccounts": accounts,
            "DimensionAttributes": attributes,
            "FinancialDimensionValues": values,
            "LegalEntities": [{"LegalEntityId": c, "Name": seed.COMPANY_NAMES[c]} for c in seed.COMPANIES],
            "JournalNames": [
                {"dataAreaId": c.lower(), "Name": n, "Description": d, "JournalType": t}
                for c in seed.COMPANIES
                for n, d, t in seed.JOURNAL_NAMES
            ],
            "DimensionIntegrationFormats": formats,
            "DimensionParameters": [{"Key": 0, "DimensionSegmentDelimiter": seed.DELIMITER_ENUM}],
            **budget.static_tables(),
            **self.books.calendar_tables(),
        }

    # -- GL rows (generated on demand) --------------------------------------------------------------------

    def _header_row(self, v: int) -> Row:
        if v >= self.gl.voucher_count:
            return self.books.header_row(self.books.vouchers[v - self.gl.voucher_count])
        h = self.gl.voucher(v)
        d = h.accounting_date
        period = self.books.operating_period(h.company, d)
        return {
            "JournalNumber": h.journal_number,
            "FiscalCalendarYear": period.year_recid,
            "Ledger": seed.LEDGER_RECIDS[h.company],
            "AccountingDate": _dto(d),
            "DocumentDate": _dto(d),
            "DocumentNumber": "",
            "JournalCategory": "GeneralJournal",
            "PostingLayer": "Current",
            "SubledgerVoucher": h.voucher,
            "SubledgerVoucherDataAreaId": h.company.lower(),
            "LedgerPostingJournal": h.journal_number,
            "LedgerPostingJournalDataAreaId": h.company.lower(),
            "FiscalCalendarPeriod": period.recid,
            "SourceKey": h.recid,
            "CreatedOn": _dto(d, 8),
            "AcknowledgementDate": _dto(d),
        }

    def _voucher_lines(self, v: int) -> tuple[Row, list[tuple[Any, ...]]]:
        """Voucher ``v`` (generated or special): its header facts and lines as tuples
        (position, account, account recid, business unit, cost center, department, cents, reporting cents,
        text, posting type)."""
        gl = self.gl
        if v >= gl.voucher_count:
            sv = self.books.vouchers[v - gl.voucher_count]
            head = {"company": sv.company, "voucher": sv.voucher, "date": sv.accounting_date,
                    "journal": f"S{sv.index:07d}", "layer": sv.posting_layer, "recid": seed.HEADER_RECID_BASE + v,
                    "period": self.books.period_of(sv.company, sv.accounting_date, sv.period_type).recid}  # fmt: skip
            lines = []
            for line, pos, rep in self.books.line_rows(sv):
                acc = seed.main_account(line.account)
                assert acc is not None, line.account
                lines.append((pos, line.account, acc.recid, line.business_unit, line.cost_center, line.department,
                              line.cents, rep, line.text, line.posting_type))  # fmt: skip
            return head, lines
        h = gl.voucher(v)
        seeds = gl.voucher_lines(v)
        rep_cents = books_mod.reporting_cents(h.company, [line.cents for line in seeds])
        head = {"company": h.company, "voucher": h.voucher, "date": h.accounting_date, "journal": h.journal_number,
                "layer": "Current", "recid": h.recid,
                "period": self.books.operating_period(h.company, h.accounting_date).recid}  # fmt: skip
        return head, [
            (line.position, line.account.account, line.account.recid, line.business_unit, line.cost_center,
             line.department, line.cents, rep, line.text, "LedgerJournal")
            for line, rep in zip(seeds, rep_cents, strict=True)
        ]  # fmt: skip

    def _display(self, acc: str, bu: str, cc: str, dep: str) -> str:
        """The LedgerAccount display value: the integration format's order, or (option "structure") the order
        of the account's own structure: balance sheet MainAccount-BusinessUnit, P&L
        MainAccount-CostCenter-Department-BusinessUnit."""
        if self.config.ledger_account_order == "structure":
            return books_mod.structure_display(acc, bu, cc, dep)
        return f"{acc}-{bu}-{cc}-{dep}"

    def _combination_rows(self) -> list[Row]:
        """The ledger dimension combinations of every posted line (built when asked; special vouchers included)."""
        used = (
            (line[1], line[3], line[4], line[5])
            for v in range(self.gl.voucher_count + len(self.books.snapshot()))
            for line in self._voucher_lines(v)[1]
        )
        return books_mod.combination_rows(used, self._display)

    def _line_rows(self, v: int, needed: frozenset[str] | None = None) -> list[Row]:
        """Rows of voucher ``v``; with ``needed`` only those properties (plus the internal ones) are built."""
        if needed is not None and not needed <= _CHEAP_LINE_FIELDS:
            needed = None
        head, lines = self._voucher_lines(v)
        company = head["company"]
        currency = seed.ACCOUNTING_CURRENCY[company]
        out: list[Row] = []
        date_text = _dto(head["date"])
        for pos, acc, acc_recid, bu, cc, dep, cents, rep, text, posting_type in lines:
            amount = Decimal(cents).scaleb(-2)
            parts = [f'{{"Name":"MainAccount","Value":"{acc}"}}']
            if bu:
                parts.append(f'{{"Name":"BusinessUnit","Value":"{bu}"}}')
            if cc:
                parts.append(f'{{"Name":"CostCenter","Value":"{cc}"}}')
            if dep:
                parts.append(f'{{"Name":"Department","Value":"{dep}"}}')
            row: Row = {
                "SourceKey": seed.LINE_RECID_BASE + pos,
                "GeneralJournalEntry": head["recid"],
                "MainAccount": acc_recid,
                "LedgerAccount": self._display(acc, bu, cc, dep),
                "LedgerDimensionValuesJson": "[" + ",".join(parts) + "]",
                "TransactionCurrencyCode": currency,
                "AccountingCurrencyAmount": amount,
                "IsCredit": "Yes" if cents < 0 else "No",
                "Text": text,
            }
            if not self.config.ledger_dimension_json:
                del row["LedgerDimensionValuesJson"]
            if needed is None:
                row.update({
                    "TransactionCurrencyAmount": amount,
                    "ReportingCurrencyAmount": Decimal(rep).scaleb(-2),
                    "PostingType": posting_type,
                    "IsCorrection": "No",
                    "Quantity": _ZERO,
                    "FinTag": 0,
                    "PaymentReference": "",
                    "HistoricalExchangeRateDate": "1900-01-01T00:00:00Z",
                    "SysRecVersion": 1,
                    # for the published entity
                    "_voucher": head["voucher"],
                    "_company": company,
                    "_date": date_text,
                    "_journal": head["journal"],
                    "_layer": head["layer"],
                    "_period": head["period"],
                })  # fmt: skip
            out.append(row)
        return out

    def _package_rows(self, company: str) -> list[Row]:
        """Every posted line of ``company`` as the "General journal account entry" entity has it."""
        wanted = [v for v in range(self.gl.voucher_count) if self.gl.voucher(v).company == company]
        wanted += [sv.index for sv in self.books.snapshot() if sv.company == company]
        return [self._published_row(r) for v in wanted for r in self._line_rows(v)]

    @staticmethod
    def _published_row(r: Row) -> Row:
        return {
            "GeneralJournalAccountEntryRecId": r["SourceKey"],
            "JournalNumber": r["_journal"],
            "Voucher": r["_voucher"],
            "AccountingDate": r["_date"],
            "PostingLayer": r["_layer"],
            "LedgerAccount": r["LedgerAccount"],
            "AccountDisplayValue": r["LedgerAccount"],
            "TransactionCurrencyCode": r["TransactionCurrencyCode"],
            "TransactionCurrencyAmount": r["TransactionCurrencyAmount"],
            "AccountingCurrencyAmount": r["AccountingCurrencyAmount"],
            "ReportingCurrencyAmount": r["ReportingCurrencyAmount"],
            "Description": r["Text"],
            "PostingType": r["PostingType"],
            "IsCredit": r["IsCredit"],
            "IsCorrection": "No",
            "LedgerName": r["_company"],
            "DataArea": r["_company"].lower(),
            "FiscalCalendarPeriod": r["_period"],
        }

    def _narrow_by_line_key(self, node: Any, field_name: str, lo_v: int, hi_v: int) -> tuple[int, int]:
        """Voucher range [lo_v, hi_v) narrowed by a filter's bounds on a line's record key."""
        if node is None:
            return lo_v, hi_v
        klo, khi, _, _ = bounds(node, field_name)
        gl = self.gl
        if isinstance(klo, int):
            lo_v = max(lo_v, gl.voucher_of_line(max(0, klo - seed.LINE_RECID_BASE)))
        if isinstance(khi, int):
            hi_v = min(hi_v, gl.voucher_of_line(max(0, khi - seed.LINE_RECID_BASE)) + 1)
        return lo_v, hi_v

    def _voucher_range(
        self, node: Node | None, date_field: str, key_field: str, key_base: int
    ) -> tuple[int, int]:
        lo_v, hi_v = 0, self.gl.voucher_count
        if node is None:
            return lo_v, hi_v
        lo, hi, _, _ = bounds(node, date_field)
        if isinstance(lo, datetime):
            lo_v = max(lo_v, self.gl.first_voucher_on_or_after(lo.date()))
        if isinstance(hi, datetime):
            hi_v = min(hi_v, self.gl.first_voucher_on_or_after(hi.date() + timedelta(days=1)))
        klo, khi, _, _ = bounds(node, key_field)
        if isinstance(klo, int):
            lo_v = max(lo_v, klo - key_base)
        if isinstance(khi, int):
            hi_v = min(hi_v, khi - key_base + 1)
        return max(0, lo_v), max(0, hi_v)

    def _gl_scan(
        self, set_name: str, node: Node | None, start: int, needed: frozenset[str] | None = None
    ) -> Iterator[tuple[int, Row]]:
        """(position, row) from ``start`` within the seek range the filter allows."""
        gl = self.gl
        if set_name == "GeneralJournalEntryBiEntities":
            lo, hi = self._voucher_range(node, "AccountingDate", "SourceKey", seed.HEADER_RECID_BASE)
            for v in range(max(lo, start), hi):
                yield v, self._header_row(v)
            for sv in self.books.snapshot():  # special vouchers follow the generated ones
                if sv.index >= start:
                    yield sv.index, self._header_row(sv.index)
            return
        if set_name == "GeneralJournalAccountEntryBiEntities":
            lo_v, hi_v = self._voucher_range(node, "__none__", "GeneralJournalEntry", seed.HEADER_RECID_BASE)
            lo_v, hi_v = self._narrow_by_line_key(node, "SourceKey", lo_v, hi_v)
            transform: Callable[[Row], Row] | None = None
        else:  # published entity
            lo_v, hi_v = self._voucher_range(node, "AccountingDate", "__none__", 0)
            lo_v, hi_v = self._narrow_by_line_key(node, "GeneralJournalAccountEntryRecId", lo_v, hi_v)
            transform = self._published_row
        v = max(lo_v, gl.voucher_of_line(start) if start < gl.line_count else gl.voucher_count)
        while v < min(hi_v, gl.voucher_count):
            for r in self._line_rows(v, needed if transform is None else None):
                pos = r["SourceKey"] - seed.LINE_RECID_BASE
                if pos >= start:
                    yield pos, (transform(r) if transform else r)
            v += 1
        for (
            sv
        ) in self.books.snapshot():  # special vouchers follow the generated ones (few; the filter decides)
            for r in self._line_rows(sv.index, needed if transform is None else None):
                pos = r["SourceKey"] - seed.LINE_RECID_BASE
                if pos >= start:
                    yield pos, (transform(r) if transform else r)

    # -- HTTP entry point -------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        if self.blob_store.handles(req):
            with self.lock:
                return self.blob_store.handle(req)
        with self.lock:
            self.counters[f"{req.method} {self._route_name(req.path)}"] += 1
            fault = self._take_fault(req)
        if fault is not None:
            if fault.kind == "drop":
                return Response(0, drop_connection=True)
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind == "expire_token":
                self.expire_tokens()
            elif fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                if fault.status == 429:
                    return Response(
                        429,
                        dumps({"error": {"code": "", "message": RESOURCE_429}}),
                        {**ODATA_HEADERS, **headers},
                    )
                return Response(fault.status, b"", headers)
        if self.entra.handles(req):
            return self.entra.handle(req)
        if req.path == "/data" or req.path.startswith("/data/"):
            return self.in_flight.serve(lambda: self._data_request(req))
        return Response.json(404, {"error": {"code": "NotFound", "message": f"No route for {req.path}"}})

    def press(self, *, after: int, seconds: float, path_contains: str = "/data/") -> Pressure:
        """Put the environment under resource pressure after ``after`` more /data requests (load.py)."""
        self.pressure = Pressure(after=after, seconds=seconds, path_contains=path_contains)
        return self.pressure

    def _data_request(self, req: Request) -> Response:
        wait = self.pressure.check(req.path) if self.pressure is not None else None
        if wait is not None:
            with self.lock:
                self.counters["429"] += 1
            return Response(
                429,
                dumps({"error": {"code": "", "message": RESOURCE_429}}),
                {**ODATA_HEADERS, "Retry-After": str(wait)},
            )
        throttled = self._load_check()
        if throttled is not None:
            return throttled
        denied = self._authorize(req)
        if denied is not None:
            return denied
        try:
            return self._data(req)
        except HttpError as exc:
            return exc.response
        except QueryError as exc:
            return query_error(str(exc))

    @staticmethod
    def _route_name(path: str) -> str:
        if path.startswith("/data/"):
            rest = path[len("/data/") :]
            return "/data/" + re.split(r"[(/]", rest, maxsplit=1)[0]
        if path.endswith("/oauth2/v2.0/token"):
            return "/oauth2/token"
        if path.endswith("openid-configuration"):
            return "/openid-configuration"
        return path

    def _take_fault(self, req: Request) -> Fault | None:
        for fault in self.faults:
            if (
                fault.times > 0
                and fault.path_contains in req.path
                and (fault.method is None or fault.method == req.method)
            ):
                fault.times -= 1
                return fault
        return None

    def _load_check(self) -> Response | None:
        budget = self.config.load_budget
        if budget is None:
            return None
        now = self.clock()
        with self.lock:
            while self._load and now - self._load[0] >= self.config.load_window:
                self._load.popleft()
            if len(self._load) >= budget:
                wait = max(1, math.ceil(self.config.load_window - (now - self._load[0])))
                self.counters["429"] += 1
                return Response(
                    429,
                    dumps({"error": {"code": "", "message": RESOURCE_429}}),
                    {**ODATA_HEADERS, "Retry-After": str(wait)},
                )
            self._load.append(now)
        return None

    def _authorize(self, req: Request) -> Response | None:
        auth = req.header("authorization") or ""
        if not auth.startswith("Bearer "):
            return Response(
                401,
                b"",
                {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="No bearer token"'},
            )
        token = auth[len("Bearer ") :]
        reason = self.entra.validate(token, self.environment_url)
        if reason is None and self.entra.client_of(token) not in self.registered_clients:
            reason = "the application is not registered in Microsoft Entra applications"
        if reason is not None:
            self.counters["401"] += 1
            return Response(
                401, b"", {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'}
            )
        return None

    # -- /data ------------------------------------------------------------------------------------------------

    def _data(self, req: Request) -> Response:
        rest = unquote(req.path[len("/data") :].lstrip("/"))
        if rest == "":
            return odata_json(
                200,
                {
                    "@odata.context": f"{self.environment_url}/data/$metadata",
                    "value": [{"name": n, "kind": "EntitySet", "url": n} for n in self.defs],
                },
            )
        if rest == "$metadata":
            return Response(
                200,
                self.metadata_xml.encode("utf-8"),
                {"Content-Type": "application/xml", "OData-Version": "4.0"},
            )
        if rest == "$batch":
            if req.method != "POST":
                raise HttpError(
                    fo_error(405, "The HTTP method is not allowed.", "Use POST for $batch.", ODATA_EXC)
                )
            return self._batch(req)
        m = re.fullmatch(
            r"([A-Za-z0-9_]+)(\((.*)\))?(/\$count|/Microsoft\.Dynamics\.DataEntities\.[A-Za-z]+)?", rest
        )
        if not m:
            raise HttpError(
                fo_error(
                    404,
                    f"No HTTP resource was found that matches the request URI '{req.path}'.",
                    "",
                    ODATA_EXC,
                )
            )
        set_name, key_text, suffix = m.group(1), m.group(3), m.group(4) or ""
        defn = self.defs.get(set_name)
        if defn is None:
            raise HttpError(
                fo_error(
                    404,
                    f"No HTTP resource was found that matches the request URI '{self.environment_url}/data/{set_name}'.",
                    f"Resource not found for the segment '{set_name}'.",
                    ODATA_EXC,
                )
            )
        if suffix.startswith("/Microsoft.Dynamics.DataEntities."):
            return self._action(defn, suffix.rsplit(".", 1)[1], req)
        if req.method == "GET":
            if key_text is not None:
                return self._get_single(defn, key_text, req)
            return self._get_collection(defn, req, count_only=suffix == "/$count")
        if req.method == "POST" and key_text is None:
            body = self._json_body(req, defn)
            try:
                with self.lock:
                    row = self._create(defn, body)
            except WriteError as exc:
                return write_error(exc)
            keys = ",".join(f"{k}={_key_literal(row[k])}" for k in defn.keys)
            payload = {
                "@odata.context": f"{self.environment_url}/data/$metadata#{set_name}/$entity",
                "@odata.etag": _etag(row),
                **row,
            }
            return odata_json(201, payload, {"Location": f"{self.environment_url}/data/{set_name}({keys})"})
        raise HttpError(
            fo_error(
                405,
                "The HTTP method is not allowed for this resource in the sandbox.",
                f"{req.method} {set_name}",
                ODATA_EXC,
            )
        )

    def _json_body(self, req: Request, defn: EntityDef) -> Row:
        try:
            body = json.loads(req.body.decode("utf-8"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(
                fo_error(400, "The request body is not valid JSON.", f"Invalid JSON: {exc}", ODATA_EXC)
            ) from None
        if not isinstance(body, dict):
            raise HttpError(
                fo_error(400, "The request body must be a JSON object.", "An entry was expected.", ODATA_EXC)
            )
        for k in body:
            if k.startswith("@odata."):
                continue
            if k not in defn.props:
                detail = f"The property '{k}' does not exist on type '{NS}.{defn.type_name}'. Make sure to only use property names that are defined by the type."
                raise HttpError(fo_error(400, detail, detail, ODATA_EXC))
        return {k: v for k, v in body.items() if not k.startswith("@odata.")}

    # -- reads ------------------------------------------------------------------------------------------------

    def _rows(self, defn: EntityDef) -> list[Row] | None:
        name = defn.set_name
        if name in self.static:
            return self.static[name]
        if name == "LedgerJournalHeaders":
            return list(self.journal_headers.values())
        if name == "LedgerJournalLines":
            return [r for rows in self.journal_lines.values() for r in rows]
        if name == "BudgetRegisterEntryHeaders":
            return list(self.budget_headers.values())
        if name == "BudgetRegisterEntryLines":
            return budget.line_rows(self)
        if name in budget.BI_SETS:
            return budget.bi_rows(self, name)
        if name == "BatchJobs":
            return list(self.batch_jobs.values())
        if name == "DimensionCombinations":
            return self._combination_rows()
        return None  # generated GL set

    def _get_single(self, defn: EntityDef, key_text: str, req: Request) -> Response:
        keys = _parse_keys(key_text, defn)
        with self.lock:
            rows = self._rows(defn)
        if rows is None:
            rows = [
                r for _, r in self._gl_scan(defn.set_name, None, 0)
            ]  # pragma: no cover - not used by clients
        for row in rows:
            if all(_same(row.get(k), v) for k, v in keys.items()):
                select = self._select(defn, req.query_value("$select"))
                body = {
                    "@odata.context": f"{self.environment_url}/data/$metadata#{defn.set_name}/$entity",
                    "@odata.etag": _etag(row),
                    **_project(row, select),
                }
                return odata_json(200, body)
        raise HttpError(
            fo_error(
                404,
                "No resource matches the key.",
                f"Entity of type {defn.type_name} with key {key_text} was not found.",
                ODATA_EXC,
            )
        )

    def _select(self, defn: EntityDef, text: str | None) -> list[str] | None:
        if text is None or text.strip() in ("", "*"):
            return None
        out = []
        for name in (s.strip() for s in text.split(",")):
            if name not in defn.props:
                raise QueryError(f"Could not find a property named '{name}' on type '{NS}.{defn.type_name}'.")
            out.append(name)
        return out

    def _get_collection(self, defn: EntityDef, req: Request, *, count_only: bool) -> Response:
        q = dict(req.query)
        for option in q:
            if option.startswith("$") and option not in (
                "$filter",
                "$select",
                "$top",
                "$skip",
                "$count",
                "$orderby",
                "$skiptoken",
                "$format",
            ):
                if option == "$expand":
                    raise QueryError("The sandbox does not serve $expand.")
                raise QueryError(f"The query parameter '{option}' is not supported.")
        node = parse_filter(q["$filter"]) if "$filter" in q else None
        enum_types = dict(ENUMS)
        pred = compile_filter(node, defn.props, defn.type_name, enum_types) if node is not None else None
        select = self._select(defn, q.get("$select"))
        top = _int_option(q, "$top")
        skip = _int_option(q, "$skip") or 0
        cross = q.get("cross-company", "").lower() == "true"
        company = self.config.default_company.lower()
        scoped = defn.company_scoped and not cross

        def visible(r: Row) -> bool:
            if scoped and str(r.get("dataAreaId", "")).lower() != company:
                return False
            return pred is None or pred(r)

        rows = self._rows(defn)
        if rows is not None:
            with self.lock:
                rows = list(rows)
            if "$orderby" in q:
                rows = _order(rows, q["$orderby"], defn)
        elif "$orderby" in q and q["$orderby"].strip().split()[0] not in (
            "SourceKey",
            "GeneralJournalEntry",
            "GeneralJournalAccountEntryRecId",
        ):
            raise QueryError(
                f"The sandbox serves {defn.set_name} in key order only; $orderby={q['$orderby']} is not supported."
            )
        elif q.get("$orderby", "").split()[-1:] == ["desc"]:  # descending key order: the scan, reversed
            rows = [r for _, r in self._gl_scan(defn.set_name, node, 0)][::-1]
        materialised = rows
        needed = frozenset(select) | _props_of(node) if select is not None else None

        def source_from(s: int) -> Iterator[tuple[int, Row]]:
            if materialised is not None:
                return ((i, r) for i, r in enumerate(materialised) if i >= s)
            return self._gl_scan(defn.set_name, node, s, needed)

        source = source_from(0)
        if count_only:
            n = sum(1 for _, r in source if visible(r))
            return Response(200, str(n).encode(), {"Content-Type": "text/plain", "OData-Version": "4.0"})
        prefer = req.header("prefer") or ""
        pm = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        page_size = min(MAX_PAGE, int(pm.group(1))) if pm and int(pm.group(1)) > 0 else MAX_PAGE
        start, returned = 0, 0
        token = q.get("$skiptoken")
        if token is not None:
            tm = re.fullmatch(r"(\d+)\.(\d+)", token)
            if not tm:
                raise QueryError(f"The $skiptoken '{token}' is not valid.")
            start, returned = int(tm.group(1)), int(tm.group(2))
            skip = 0
        limit = page_size if top is None else min(page_size, top - returned)
        value: list[Row] = []
        next_pos: int | None = None
        it = source_from(start) if token is not None else source
        skipped = 0
        for pos, r in it:
            if not visible(r):
                continue
            if skipped < skip:
                skipped += 1
                continue
            if len(value) >= limit:
                next_pos = pos
                break
            value.append(r)
        if top is not None and returned + len(value) >= top:
            next_pos = None
        payload: dict[str, Any] = {
            "@odata.context": f"{self.environment_url}/data/$metadata#{defn.set_name}"
            + (f"({','.join(select)})" if select else "")
        }
        if q.get("$count", "").lower() == "true":
            payload["@odata.count"] = sum(1 for _, r in source_from(0) if visible(r))
        with_etag = rows is not None
        payload["value"] = [
            ({"@odata.etag": _etag(r)} if with_etag else {}) | _project(r, select) for r in value
        ]
        if next_pos is not None:
            params = [(k, v) for k, v in req.query if k != "$skiptoken"] + [
                ("$skiptoken", f"{next_pos}.{returned + len(value)}")
            ]
            payload["@odata.nextLink"] = f"{self.environment_url}/data/{defn.set_name}?" + urlencode(
                params, quote_via=quote, safe="$'(),:*/"
            )
        headers = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if pm else {}
        return odata_json(200, payload, headers)

    # -- writes -----------------------------------------------------------------------------------------------

    def _company(self, body: Row, entity: str, field_name: str = "dataAreaId") -> str:
        company = str(body.get(field_name) or self.config.default_company).upper()
        if company not in seed.COMPANIES:
            raise WriteError(
                entity,
                f"The value '{body.get(field_name)}' in field 'Company' is not found in the related table 'Legal entities'.",
                field_name,
            )
        return company

    def _create(self, defn: EntityDef, body: Row) -> Row:
        name = defn.set_name
        if name == "LedgerJournalHeaders":
            return self._create_journal_header(body)
        if name == "LedgerJournalLines":
            return self._create_journal_line(body)
        if name == "BudgetRegisterEntryHeaders":
            return budget.create_header(self, body)
        if name == "BudgetRegisterEntryLines":
            return budget.create_line(self, body)
        raise HttpError(fo_error(405, f"The sandbox does not accept writes to {name}.", name, ODATA_EXC))

    def _text_field(
        self,
        body: Row,
        entity: str,
        name: str,
        max_len: int,
        *,
        required: bool = False,
        label: str | None = None,
    ) -> str:
        value = body.get(name)
        if value is None or value == "":
            if required:
                raise WriteError(entity, f"Field '{label or name}' must be filled in.", name)
            return ""
        if not isinstance(value, str):
            raise HttpError(
                fo_error(
                    400,
                    f"Cannot convert a primitive value to the expected type 'Edm.String' for property '{name}'.",
                    f"Cannot convert the literal '{value}' to the expected type 'Edm.String'.",
                    ODATA_EXC,
                )
            )
        if len(value) > max_len:
            raise WriteError(
                entity, f"The value in field '{label or name}' is longer than {max_len} characters.", name
            )
        return value

    def _decimal_field(self, body: Row, name: str) -> Decimal:
        value = body.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise HttpError(
                fo_error(
                    400,
                    f"Cannot convert a primitive value to the expected type 'Edm.Decimal' for property '{name}'.",
                    f"Cannot convert the literal '{value}' to the expected type 'Edm.Decimal'.",
                    ODATA_EXC,
                )
            )
        return Decimal(value)

    def _date_field(self, body: Row, entity: str, name: str, label: str) -> str:
        value = body.get(name)
        if value in (None, ""):
            raise WriteError(entity, f"Field '{label}' must be filled in.", name)
        if not isinstance(value, str):
            raise _not_a_datetime(value)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise ValueError("no offset")
        except ValueError:
            raise _not_a_datetime(value) from None
        return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _enum_field(self, body: Row, name: str, enum: str, default: str) -> str:
        value = body.get(name, default)
        if value not in ENUMS[enum]:
            raise HttpError(
                fo_error(
                    400,
                    f"The string '{value}' is not a valid enumerated type constant for '{NS}.{enum}'.",
                    f"The string '{value}' is not a valid enumerated type constant for '{NS}.{enum}'.",
                    ODATA_EXC,
                )
            )
        return str(value)

    def _create_journal_header(self, body: Row) -> Row:
        entity = "LedgerJournalHeader"
        company = self._company(body, entity)
        journal_name = self._text_field(body, entity, "JournalName", 10, required=True, label="Name")
        names = {r["Name"] for r in self.static["JournalNames"] if r["dataAreaId"] == company.lower()}
        if journal_name not in names:
            raise WriteError(
                entity,
                f"The value '{journal_name}' in field 'Name' is not found in the related table 'Journal names'.",
                "JournalName",
            )
        self.sequences[f"jour-{company}"] += 1
        number = str(body.get("JournalBatchNumber") or f"{company}-{self.sequences[f'jour-{company}']:06d}")
        if (company, number) in self.journal_headers:
            raise WriteError(
                entity,
                f"Cannot create a record in Journal table (LedgerJournalTable). Journal batch number: {number}. The record already exists.",
            )
        row: Row = {
            "dataAreaId": company.lower(),
            "JournalBatchNumber": number,
            "JournalName": journal_name,
            "Description": self._text_field(body, entity, "Description", 60),
            "PostingLayer": self._enum_field(
                body,
                "PostingLayer",
                "CurrentOperationsTax",
                budget.journal_layer(self, company, journal_name),
            ),
            "IsPosted": "No",
            "JournalTotalDebit": Decimal("0.00"),
            "JournalTotalCredit": Decimal("0.00"),
            "AccountingCurrency": seed.ACCOUNTING_CURRENCY[company],
        }
        if self.config.integration_key:
            row["IntegrationKey"] = self._text_field(body, entity, "IntegrationKey", 100)
        self.journal_headers[(company, number)] = row
        self.journal_lines[(company, number)] = []
        self._remember("journal_header", (company, number), row)
        return row

    def _check_display(self, entity: str, field_name: str, value: str, *, budget: bool = False) -> str:
        """Validate a display value against the active format; surplus segments are dropped silently (§3)."""
        fmt_type = "DataEntityBudgetDimensionFormat" if budget else "DataEntityLedgerDimensionFormat"
        active = [
            r
            for r in self.static["DimensionIntegrationFormats"]
            if r["DimensionFormatType"] == fmt_type and r["IsActive"] == "Yes"
        ]
        if not active:
            raise WriteError(
                entity,
                f"No active {'budget register' if budget else 'ledger'} dimension format exists for integrating applications.",
                field_name,
            )
        segments = active[0]["FinancialDimensionFormat"].split("-")
        parts = value.split(seed.DELIMITER)[: len(segments)]  # extra segments silently dropped
        account = parts[0].strip() if parts else ""
        acc = seed.main_account(account)
        if acc is None:
            raise WriteError(
                entity,
                f"The value '{account}' in field 'Main account' is not found in the related table 'Main accounts'.",
                field_name,
            )
        if account in seed.SUSPENDED_ACCOUNTS:
            raise WriteError(entity, f"Dimension value is suspended: main account {account}.", field_name)
        for seg, val in zip(segments[1:], parts[1:], strict=False):
            if val and val not in {v for v, _ in seed.dimension_values(seg)}:
                raise WriteError(
                    entity,
                    f"Value '{val}' for dimension '{seg}' is not a valid dimension value in account structure.",
                    field_name,
                )
        return seed.DELIMITER.join(parts)

    def _create_journal_line(self, body: Row) -> Row:
        entity = "LedgerJournalLine"
        company = self._company(body, entity)
        number = self._text_field(
            body, entity, "JournalBatchNumber", 20, required=True, label="Journal batch number"
        )
        header = self.journal_headers.get((company, number))
        if header is None:
            raise WriteError(
                entity,
                f"The value '{number}' in field 'Journal batch number' is not found in the related table 'Journal table'.",
                "JournalBatchNumber",
            )
        if header["IsPosted"] == "Yes":
            raise WriteError(
                entity, f"Journal {number} is posted; lines cannot be added or changed.", "JournalBatchNumber"
            )
        trans_date = self._date_field(body, entity, "TransDate", "Date")
        voucher = self._text_field(body, entity, "Voucher", 20, required=True, label="Voucher")
        currency = self._text_field(body, entity, "CurrencyCode", 3, required=True, label="Currency")
        if currency not in seed.CURRENCIES:
            raise WriteError(
                entity,
                f"The value '{currency}' in field 'Currency' is not found in the related table 'Currency'.",
                "CurrencyCode",
            )
        account_type = self._enum_field(body, "AccountType", "LedgerJournalACType", "Ledger")
        display = self._text_field(body, entity, "AccountDisplayValue", 500, required=True, label="Account")
        if account_type == "Ledger":
            display = self._check_display(entity, "AccountDisplayValue", display)
        offset = self._text_field(body, entity, "OffsetAccountDisplayValue", 500)
        if offset:
            offset = self._check_display(entity, "OffsetAccountDisplayValue", offset)
        debit, credit = self._decimal_field(body, "DebitAmount"), self._decimal_field(body, "CreditAmount")
        if debit < 0 or credit < 0 or (debit == 0) == (credit == 0):
            raise WriteError(
                entity,
                "Enter either a debit amount or a credit amount, not both and not neither; amounts are positive.",
                "DebitAmount",
            )
        for existing in self.journal_lines[(company, number)]:
            if existing["Voucher"] == voucher and existing["TransDate"][:10] != trans_date[:10]:
                raise WriteError(
                    entity,
                    f"Voucher {voucher} already has lines dated {existing['TransDate'][:10]}; a voucher has one date.",
                    "TransDate",
                )
        lines = self.journal_lines[(company, number)]
        line_number = Decimal(len(lines) + 1)
        row: Row = {
            k: body.get(k, "")
            for k in (
                "DefaultDimensionDisplayValue",
                "OffsetDefaultDimensionDisplayValue",
                "FinTagDisplayValue",
                "Document",
                "Invoice",
                "PostingProfile",
                "SalesTaxGroup",
            )
        }
        row.update(
            {
                "dataAreaId": company.lower(),
                "JournalBatchNumber": number,
                "LineNumber": line_number,
                "AccountType": account_type,
                "AccountDisplayValue": display,
                "OffsetAccountType": self._enum_field(
                    body, "OffsetAccountType", "LedgerJournalACType", "Ledger"
                ),
                "OffsetAccountDisplayValue": offset,
                "TransDate": trans_date,
                "Voucher": voucher,
                "Text": self._text_field(body, entity, "Text", 60),
                "DebitAmount": debit,
                "CreditAmount": credit,
                "CurrencyCode": currency,
                "ExchRate": Decimal("100"),
                "ExchRateSecond": Decimal("0"),
                "ReportingCurrencyExchRate": Decimal("100"),
                "Quantity": Decimal("0"),
                "DocumentDate": "1900-01-01T00:00:00Z",
                "Company": company.lower(),
                "OffsetCompany": company.lower() if offset else "",
            }
        )
        lines.append(row)
        header["JournalTotalDebit"] += debit
        header["JournalTotalCredit"] += credit
        self._remember("journal_line", (company, number), row)
        return row

    # -- actions ---------------------------------------------------------------------------------------------

    def _action(self, defn: EntityDef, action: str, req: Request) -> Response:
        if req.method != "POST":
            raise HttpError(fo_error(405, "Actions are invoked with POST.", action, ODATA_EXC))
        if defn.set_name == dmf.ACTION_SET:
            body = self._json_body_any(req)
            with self.lock:
                return self.packages.action(action, body)
        if defn.set_name != "BatchJobs" or action != "SetBatchJobToWaiting":
            raise HttpError(
                fo_error(404, f"The action '{action}' is not bound to '{defn.set_name}'.", action, ODATA_EXC)
            )
        body = self._json_body_any(req)
        job_id = body.get("batchJobId")
        with self.lock:
            job = self.batch_jobs.get(job_id) if isinstance(job_id, int) else None
            if job is None:
                return fo_error(
                    400,
                    "An error has occurred.",
                    f"Batch job {job_id} was not found.",
                    "Microsoft.Dynamics.Ax.Xpp.ErrorException",
                )
            job["Status"] = "Waiting"
            self._run_posting_job()
            job["Status"] = "Finished"
        return Response(204, b"", {"OData-Version": "4.0"})

    def _json_body_any(self, req: Request) -> Row:
        try:
            body = json.loads(req.body.decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(
                fo_error(400, "The request body is not valid JSON.", "Invalid JSON.", ODATA_EXC)
            ) from None
        if not isinstance(body, dict):
            raise HttpError(
                fo_error(400, "The request body must be a JSON object.", "An object was expected.", ODATA_EXC)
            )
        return body

    def _run_posting_job(self) -> None:
        """Post every unposted journal whose vouchers balance (debits = credits, or an offset account)."""
        for key, header in self.journal_headers.items():
            if header["IsPosted"] == "Yes":
                continue
            lines = self.journal_lines.get(key, [])
            if not lines:
                continue
            sums: dict[str, Decimal] = {}
            for line in lines:
                if line["OffsetAccountDisplayValue"]:
                    continue
                sums[line["Voucher"]] = (
                    sums.get(line["Voucher"], Decimal(0)) + line["DebitAmount"] - line["CreditAmount"]
                )
            bad = [v for v, s in sums.items() if s != 0]
            if bad:
                self.posting_log.append(f"{key[1]}: voucher {bad[0]} is not balanced; journal not posted")
                continue
            header["IsPosted"] = "Yes"
            self.posting_log.append(f"{key[1]}: posted")

    # -- $batch ---------------------------------------------------------------------------------------------

    def _batch(self, req: Request) -> Response:
        ctype = req.header("content-type") or ""
        bm = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/mixed") or not bm:
            raise HttpError(
                fo_error(400, "The $batch request must be multipart/mixed with a boundary.", ctype, ODATA_EXC)
            )
        try:
            parts = _split(req.body, bm.group(1))
            units: list[tuple[bool, list[tuple[dict[str, str], str, str, dict[str, str], bytes]]]] = []
            for headers, payload in parts:
                pct = headers.get("content-type", "")
                if pct.lower().startswith("multipart/mixed"):
                    inner_b = re.search(r'boundary="?([^";]+)"?', pct)
                    if not inner_b:
                        raise ValueError("changeset without boundary")
                    units.append(
                        (True, [(h, *_http_request(p)) for h, p in _split(payload, inner_b.group(1))])
                    )
                else:
                    units.append((False, [(headers, *_http_request(payload))]))
        except ValueError as exc:
            raise HttpError(fo_error(400, "The $batch request is malformed.", str(exc), ODATA_EXC)) from None
        total = sum(len(u) for _, u in units)
        if total > MAX_BATCH_OPS:
            raise HttpError(
                fo_error(
                    400,
                    f"The number of operations in the batch ({total}) exceeds the limit of {MAX_BATCH_OPS}.",
                    f"A batch request can have at most {MAX_BATCH_OPS} operations.",
                    ODATA_EXC,
                )
            )
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[bytes] = []
        for is_changeset, unit in units:
            out.append(f"--{boundary}\r\n".encode())
            out.append(self._run_changeset(unit, is_changeset))
        out.append(f"--{boundary}--\r\n".encode())
        return Response(
            200,
            b"".join(out),
            {"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"},
        )

    def _run_changeset(
        self, unit: list[tuple[dict[str, str], str, str, dict[str, str], bytes]], changeset: bool
    ) -> bytes:
        """Run a changeset atomically: on the first failure every row it created is removed again."""
        with self.lock:
            self._created = []
            results: list[tuple[str | None, Response]] = []
            for part_headers, method, target, _h, body in unit:
                cid = part_headers.get("content-id")
                set_name = urlsplit(target).path.rstrip("/").rsplit("/", 1)[-1]
                defn = self.defs.get(set_name)
                if method != "POST" or defn is None:
                    resp = fo_error(
                        400,
                        "The sandbox's $batch accepts POST to entity sets only.",
                        f"{method} {target}",
                        ODATA_EXC,
                    )
                else:
                    try:
                        row = self._create(defn, self._json_body(Request("POST", "", [], {}, body), defn))
                        resp = odata_json(
                            201,
                            {
                                "@odata.context": f"{self.environment_url}/data/$metadata#{set_name}/$entity",
                                "@odata.etag": _etag(row),
                                **row,
                            },
                        )
                    except WriteError as exc:
                        resp = write_error(exc)
                    except HttpError as exc:
                        resp = exc.response
                if resp.status >= 300:
                    self._rollback(self._created)
                    self._created = None
                    return _http_part(cid, resp)
                results.append((cid, resp))
            self._created = None
        if not changeset:
            return _http_part(results[0][0], results[0][1])
        inner = f"changesetresponse_{uuid.uuid4()}"
        chunks = [f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode()]
        for cid, resp in results:
            chunks.append(f"--{inner}\r\n".encode())
            chunks.append(_http_part(cid, resp, with_type=True))
        chunks.append(f"--{inner}--\r\n".encode())
        return b"".join(chunks)

    def _rollback(self, created: list[tuple[str, tuple[str, str], Row]] | None) -> None:
        """Undo the rows of a failed changeset (number sequences stay consumed, as in F&O)."""
        for kind, key, row in reversed(created or []):
            if kind == "journal_header":
                self.journal_headers.pop(key, None)
                self.journal_lines.pop(key, None)
            elif kind == "journal_line":
                self.journal_lines[key].remove(row)
                header = self.journal_headers[key]
                header["JournalTotalDebit"] -= row["DebitAmount"]
                header["JournalTotalCredit"] -= row["CreditAmount"]
            elif kind == "budget_header":
                self.budget_headers.pop(key, None)
                self.budget_lines.pop(key, None)
            elif kind == "budget_line":
                self.budget_lines[key].remove(row)
                bh = self.budget_headers[key]
                total = "ExpenseBudgetTotal" if row["AmountType"] == "Expense" else "RevenueBudgetTotal"
                bh[total] -= row["TransactionCurrencyAmount"]

    def _remember(self, kind: str, key: tuple[str, str], row: Row) -> None:
        if self._created is not None:
            self._created.append((kind, key, row))


# --- helpers ---------------------------------------------------------------------------------------------


_CHEAP_LINE_FIELDS = frozenset(
    {
        "SourceKey",
        "GeneralJournalEntry",
        "MainAccount",
        "LedgerAccount",
        "LedgerDimensionValuesJson",
        "TransactionCurrencyCode",
        "AccountingCurrencyAmount",
        "IsCredit",
        "Text",
    }
)


def _props_of(node: Node | None) -> frozenset[str]:
    if node is None:
        return frozenset()
    if node.kind == "prop":
        return frozenset({node.value})
    out: frozenset[str] = frozenset()
    for child in (node.left, node.right):
        if isinstance(child, Node):
            out |= _props_of(child)
    return out


def _not_a_datetime(value: object) -> HttpError:
    """F&O's answer to a write whose DateTimeOffset field does not parse (dynamics-fo.md §5.1 error shape)."""
    text = f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
    return HttpError(fo_error(400, text, text, ODATA_EXC))


def _etag(row: Row) -> str:
    return 'W/"' + str(abs(hash(tuple(sorted((k, str(v)) for k, v in row.items())))) % 10**12) + '"'


def _project(row: Row, select: list[str] | None) -> Row:
    if select is None:
        return {k: v for k, v in row.items() if not k.startswith("_")}
    return {k: row.get(k) for k in select}


def _int_option(q: dict[str, str], name: str) -> int | None:
    if name not in q:
        return None
    try:
        value = int(q[name])
    except ValueError:
        raise QueryError(
            f"Invalid value '{q[name]}' for {name} query option found. The {name} query option requires a non-negative integer value."
        ) from None
    if value < 0:
        raise QueryError(
            f"Invalid value '{q[name]}' for {name} query option found. The {name} query option requires a non-negative integer value."
        )
    return value


def _order(rows: list[Row], text: str, defn: EntityDef) -> list[Row]:
    keys: list[tuple[str, bool]] = []
    for item in text.split(","):
        parts = item.split()
        if (
            not parts
            or parts[0] not in defn.props
            or len(parts) > 2
            or (len(parts) == 2 and parts[1] not in ("asc", "desc"))
        ):
            raise QueryError(
                f"Could not find a property named '{parts[0] if parts else ''}' on type '{NS}.{defn.type_name}'."
            )
        keys.append((parts[0], len(parts) == 2 and parts[1] == "desc"))
    out = list(rows)
    for name, desc in reversed(keys):

        def sort_key(r: Row, n: str = name) -> tuple[bool, Any]:
            return (r.get(n) is None, str(r.get(n)).casefold() if isinstance(r.get(n), str) else r.get(n))

        out.sort(
            key=sort_key,
            reverse=desc,
        )
    return out


def _key_literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + quote(value.replace("'", "''"), safe="") + "'"
    return str(value)


def _parse_keys(text: str, defn: EntityDef) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in re.finditer(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^']|'')*'|[^,]+)\s*(,|$)", text):
        name, raw = m.group(1), m.group(2)
        if name not in defn.props:
            raise QueryError(f"The key property '{name}' does not exist on type '{NS}.{defn.type_name}'.")
        if raw.startswith("'"):
            out[name] = raw[1:-1].replace("''", "'")
        else:
            try:
                out[name] = Decimal(raw)
            except InvalidOperation:
                raise QueryError(f"Bad key value {raw!r}.") from None
    if set(out) != set(defn.keys):
        raise QueryError(
            f"The number of keys specified in the URI does not match number of key properties for the resource '{NS}.{defn.type_name}'."
        )
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    try:
        return Decimal(a) == Decimal(b)
    except (InvalidOperation, TypeError, ValueError):
        return bool(a == b)


def _split(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    delim = b"--" + boundary.encode()
    chunks = body.split(delim)
    if len(chunks) < 3:
        raise ValueError("the body does not contain the boundary")
    out = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, rest = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no header block")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        out.append((headers, rest.removesuffix(b"\r\n")))
    return out


def _http_request(payload: bytes) -> tuple[str, str, dict[str, str], bytes]:
    head, _sep, body = payload.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    first = lines[0].split()
    if len(first) < 2:
        raise ValueError(f"bad request line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return first[0], first[1], headers, body


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


def _http_part(cid: str | None, resp: Response, *, with_type: bool = True) -> bytes:
    body = resp.body if isinstance(resp.body, bytes) else b"".join(resp.body)
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if cid:
        head += f"Content-ID: {cid}\r\n"
    head += f"\r\nHTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Status')}\r\n"
    for k, v in resp.headers.items():
        if k.lower() in ("content-type", "odata-version", "location"):
            head += f"{k}: {v}\r\n"
    return head.encode() + b"\r\n" + body + b"\r\n"


def parse_query_string(target: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(target).query, keep_blank_values=True)

"""Writing approved plan values to F&O (dynamics-fo.md §2.5-§2.7, §3, §5).

Ledger journals: one ``LedgerJournalHeaders`` record per (run, company) carrying a deterministic
idempotency key (in ``Description``, and in ``IntegrationKey`` when ``$metadata`` has it). The key is
looked up before creating, so an unposted journal left by an earlier attempt is resumed, never
duplicated. Lines go to ``LedgerJournalLines`` through ``$batch``: one voucher per changeset (a voucher
lands whole), at most 5,000 operations per batch; every line carries a per-line key at the start of
``Text`` and lines already present are not written again. ``AccountDisplayValue`` is built by position
from the active ledger dimension format; more segments than the format has are refused (F&O would drop
them silently). F&O's per-line errors (``innererror.message``) are captured per line.

Budget register entries (``BudgetRegisterEntryHeaders``/``Lines``, the default target) are keyed the same
way (the key starts the header's ``ReasonComment``); each line's ``AmountType`` comes from its main account's
type (Revenue for revenue accounts, Expense otherwise) and revenue is written positive: a plan credit of
-100 on a revenue account is a +100 Revenue line (dynamics-budget-fiscal.md A2). :meth:`JournalWriter.held`
reads back every line this connector holds in F&O (headers whose description starts with an export's tag) in
ledger sign, whichever sign ``BudgetRegisterEntryLines`` shows revenue in
(``dynamics.journal.budget_revenue_read_sign``). Posting ledger journals and completing budget register
entries are the customer's steps in F&O; :meth:`JournalWriter.entries` reports their status.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.config import JournalSettings
from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.batch import (
    MAX_BATCH_OPERATIONS,
)
from d365_anaplan.dynamics.dimensions import DimensionFormat
from d365_anaplan.dynamics.journal_batch import JournalBatches, LinesSender, PreparedLine
from d365_anaplan.dynamics.journal_records import (
    BUDGET_HEADERS,
    BUDGET_LINES,
    CURRENCY_CODE,
    HEADERS,
    LINES,
    TEXT_MAX,
    VOUCHER_MAX,
    EntryHeader,
    JournalLineInput,
    JournalWriteResult,
    check_amount,
)
from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.dynamics.odata_shapes import Query
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import (
    BadInputData,
    DynamicsBadResponse,
    DynamicsUnavailable,
)

log = logging.getLogger(__name__)


class JournalWriter(JournalBatches):
    """Writes ledger journals and budget register entries for one environment."""

    def __init__(
        self,
        client: ODataClient,
        reader: DynamicsReader,
        settings: JournalSettings,
        *,
        known_accounts: Iterable[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        write_attempts: int = 3,
    ) -> None:
        self.client = client
        self.reader = reader
        self.settings = settings
        self.known_accounts = frozenset(known_accounts) if known_accounts is not None else None
        self.sleep = sleep
        self.write_attempts = write_attempts
        self.batch_size = min(settings.lines_per_batch, MAX_BATCH_OPERATIONS)
        self._account_types: dict[str, str] | None = None

    # -- validation and line bodies ----------------------------------------------------------------------

    def _default_currency(self, company: str) -> str:
        """The currency of a line written without one: the configured one, else the company's ledger accounting
        currency. (PlanJournals gives every plan line its currency, resolved and checked against the ledger by
        :func:`~d365_anaplan.flows.plan_currency.plan_currencies`.)"""
        return self.settings.currency_for(company) or self.reader.books().ledger(company).accounting_currency

    def _prepare(
        self, company: str, lines: Sequence[JournalLineInput], fmt: DimensionFormat
    ) -> dict[str, list[PreparedLine]]:
        if not lines:
            raise BadInputData(f"journal for {company}: no lines to write")
        vouchers: dict[str, list[PreparedLine]] = {}
        voucher_dates: dict[str, date] = {}
        voucher_sums: dict[str, Decimal] = {}
        voucher_offsets: dict[str, bool] = {}
        occurrences: Counter[str] = Counter()
        unknown: list[str] = []
        for i, line in enumerate(lines, start=1):
            what = line.source or f"journal line {i}"
            amount = check_amount(line.amount, what)
            if not isinstance(line.trans_date, date):
                raise BadInputData(f"{what}: trans_date {line.trans_date!r} is not a date")
            voucher = (line.voucher or "").strip()
            if not voucher or len(voucher) > VOUCHER_MAX or any(ord(c) < 0x20 for c in voucher):
                raise BadInputData(
                    f"{what}: voucher {line.voucher!r} must be 1-{VOUCHER_MAX} printable characters"
                )
            currency = (line.currency or self._default_currency(company)).strip().upper()
            if not CURRENCY_CODE.match(currency):
                raise BadInputData(f"{what}: currency {line.currency!r} is not a 3-letter ISO code")
            if not isinstance(line.account, str) or not line.account.strip():
                raise BadInputData(f"{what}: the main account is empty")
            if self.known_accounts is not None and line.account.strip() not in self.known_accounts:
                unknown.append(f"{line.account!r} ({what})")
                continue
            display = fmt.build(line.account, line.dimensions, what=what)
            previous = voucher_dates.setdefault(voucher, line.trans_date)
            if previous != line.trans_date:
                raise BadInputData(
                    f"{what}: voucher {voucher} has lines dated {previous} and {line.trans_date}; a voucher has one date"
                )
            voucher_sums[voucher] = voucher_sums.get(voucher, Decimal(0)) + amount
            voucher_offsets[voucher] = voucher_offsets.get(voucher, False) or bool(line.offset_account)
            fingerprint = "|".join(
                (company, voucher, line.trans_date.isoformat(), display, format(amount, "f"), currency)
            )
            occurrences[fingerprint] += 1
            digest = (
                hashlib.sha256(f"{fingerprint}|{occurrences[fingerprint]}".encode()).hexdigest()[:12].upper()
            )
            key = f"L{digest}"
            memo = " ".join(line.text.split())
            text = f"{key} {memo}".strip()[:TEXT_MAX]
            body: dict[str, Any] = {
                "dataAreaId": company.lower(),
                "AccountType": "Ledger",
                "AccountDisplayValue": display,
                "TransDate": f"{line.trans_date.isoformat()}T12:00:00Z",
                "Voucher": voucher,
                "CurrencyCode": currency,
                "DebitAmount": amount if amount > 0 else Decimal("0"),
                "CreditAmount": -amount if amount < 0 else Decimal("0"),
                "Text": text,
            }
            if line.offset_account:
                body["OffsetAccountType"] = "Ledger"
                body["OffsetAccountDisplayValue"] = fmt.build(
                    line.offset_account, line.offset_dimensions, what=f"{what} (offset)"
                )
            vouchers.setdefault(voucher, []).append(PreparedLine(key, voucher, body, line.source))
        if unknown:
            shown = ", ".join(unknown[:10])
            raise BadInputData(
                f"journal for {company}: {len(unknown)} line(s) use main accounts unknown in F&O: {shown}"
            )
        unbalanced = [f"{v} ({s:+})" for v, s in voucher_sums.items() if s != 0 and not voucher_offsets[v]]
        if unbalanced:
            raise BadInputData(
                f"journal for {company}: voucher(s) not balanced (debits != credits) and without offset account: "
                f"{', '.join(unbalanced[:10])}; F&O does not post unbalanced vouchers"
            )
        big = [v for v, ls in vouchers.items() if len(ls) > self.batch_size]
        if big:
            raise BadInputData(
                f"journal for {company}: voucher {big[0]} has more lines than one batch holds ({self.batch_size})"
            )
        return vouchers

    # -- header ------------------------------------------------------------------------------------------

    def _find_header(self, entity_set: str, company: str, header: EntryHeader) -> dict[str, Any] | None:
        disc = self.reader.discover()
        if entity_set == HEADERS:
            use_key = disc.has_integration_key
            field_name, value = (
                ("IntegrationKey", header.key) if use_key else ("Description", header.description)
            )
            select = ("dataAreaId", "JournalBatchNumber", "Description", "IsPosted")
        else:
            field_name, value = "ReasonComment", header.description
            select = ("dataAreaId", "EntryNumber", "ReasonComment", "Status")
        flt = F.and_(F.eq("dataAreaId", company.lower()), F.eq(field_name, value))
        rows = list(self.client.iter_rows(Query(entity_set, filter=flt, select=select)))
        if len(rows) > 1:
            # Should never happen; prefer an open one so nothing is duplicated.
            rows.sort(key=lambda r: (r.get("IsPosted") == "Yes" or r.get("Status") == "Completed", str(r)))
        return rows[0] if rows else None

    def _create_with_lookup(
        self, create: Callable[[], dict[str, Any]], find: Callable[[], dict[str, Any] | None]
    ) -> tuple[dict[str, Any], bool]:
        """Create a header; on an unknown outcome look it up before trying again. Returns (row, resumed)."""
        for attempt in range(self.write_attempts):
            existing = find()
            if existing is not None:
                return existing, attempt == 0
            try:
                return create(), False
            except DynamicsUnavailable:
                if attempt + 1 >= self.write_attempts:
                    raise
                self.sleep(2.0 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- entry point -----------------------------------------------------------------------------------------

    def write(
        self,
        company: str,
        lines: Sequence[JournalLineInput],
        header: EntryHeader,
        *,
        dry_run: bool = False,
        lines_via: LinesSender | None = None,
    ) -> JournalWriteResult:
        """The one way plan values are written (flow, replay of rejected lines, dry runs): to the configured
        target (``dynamics.journal.target``), creating or resuming the entry ``header.key`` names and writing
        only the lines it does not hold yet. ``dry_run``: every line is validated and its body built (amount
        type, sign, display value), nothing is sent; ``lines_planned`` says how many would be written."""
        if not lines:
            raise BadInputData(f"{header.key} ({company}): no lines to write")
        if self.settings.target == "budget_register":
            return self.write_budget_register(
                company,
                lines,
                key=header.key,
                description=header.description,
                model=header.budget_model,
                code=header.budget_code,
                default_date=min(line.trans_date for line in lines),
                dry_run=dry_run,
                lines_via=lines_via,
            )
        return self.write_ledger_journal(
            company,
            lines,
            key=header.key,
            journal_name=header.journal_name,
            description=header.description,
            dry_run=dry_run,
        )

    # -- ledger journal -------------------------------------------------------------------------------------

    def write_ledger_journal(
        self,
        company: str,
        lines: Sequence[JournalLineInput],
        *,
        key: str,
        journal_name: str | None = None,
        description: str | None = None,
        dry_run: bool = False,
    ) -> JournalWriteResult:
        """Create (or resume) the journal identified by ``key`` for ``company`` and write ``lines``. The
        header carries the configured posting layer (never Current for plan values)."""
        company = company.strip().upper()
        name = journal_name or self.settings.journal_name
        header_text = description or f"Anaplan {key}"
        fmt = self.reader.ledger_format()
        vouchers = self._prepare(company, lines, fmt)
        if dry_run:
            return JournalWriteResult(company, key, "", lines_planned=sum(len(v) for v in vouchers.values()))
        disc = self.reader.discover()
        spec = EntryHeader(key, header_text, journal_name=name)

        def find() -> dict[str, Any] | None:
            return self._find_header(HEADERS, company, spec)

        def create() -> dict[str, Any]:
            body: dict[str, Any] = {
                "dataAreaId": company.lower(),
                "JournalName": name,
                "Description": header_text,
            }
            if self.settings.posting_layer:
                body["PostingLayer"] = self.settings.posting_layer
            if disc.has_integration_key:
                body["IntegrationKey"] = key
            return self.client.post(HEADERS, body, what=f"POST {HEADERS} ({company}, {name})")

        header, resumed = self._create_with_lookup(create, find)
        number = str(header.get("JournalBatchNumber") or "")
        if not number:
            raise DynamicsBadResponse(f"POST {HEADERS} ({company}): the response has no JournalBatchNumber")
        result = JournalWriteResult(company, key, number, resumed=resumed)
        if header.get("IsPosted") == "Yes":
            # The same run already landed and was posted: nothing to write, nothing to duplicate.
            result.already_posted = True
            result.lines_skipped = sum(len(v) for v in vouchers.values())
            return result
        for lst in vouchers.values():
            for p in lst:
                p.body["JournalBatchNumber"] = number
        self._write_lines(
            result,
            LINES,
            vouchers,
            self._existing_line_keys(LINES, company, "JournalBatchNumber", number, "Text"),
        )
        return result

    # -- budget register ----------------------------------------------------------------------------------

    def account_types(self) -> dict[str, str]:
        """Main account -> ``MainAccountType`` (read once per writer)."""
        if self._account_types is None:
            self._account_types = {a.account: a.account_type for a in self.reader.main_accounts()}
        return self._account_types

    def amount_type(self, account: str, *, what: str) -> str:
        """``AmountType`` of a budget line: Revenue for revenue main accounts, Expense for every other
        (F&O's "defaulting of amount type", dynamics-budget-fiscal.md A2 #4)."""
        types = self.account_types()
        if account not in types:
            raise BadInputData(f"{what}: main account {account!r} is unknown in F&O")
        return "Revenue" if types[account] == "Revenue" else "Expense"

    def write_budget_register(
        self,
        company: str,
        lines: Sequence[JournalLineInput],
        *,
        key: str,
        default_date: date,
        description: str | None = None,
        model: str | None = None,
        code: str | None = None,
        dry_run: bool = False,
        lines_via: LinesSender | None = None,
    ) -> JournalWriteResult:
        """Budget register entry (header + lines) keyed like a journal. ``lines`` carry ledger-signed
        amounts; each is written with the ``AmountType`` of its main account and revenue sign-flipped
        (a credit of -100 on a revenue account is +100 Revenue). The header's budget type comes from the
        budget code in F&O, so it is not sent."""
        company = company.strip().upper()
        model = model or self.settings.budget_model
        code = code or self.settings.budget_code
        if not model or not code:
            raise BadInputData(
                "budget register: set dynamics.journal.budget_model and budget_code (or the export's own)"
            )
        header_text = description or f"Anaplan {key}"
        fmt = self.reader.budget_format()
        vouchers: dict[str, list[PreparedLine]] = {}
        seen: Counter[str] = Counter()
        for i, line in enumerate(lines, start=1):
            what = line.source or f"budget line {i}"
            amount = check_amount(line.amount, what)
            currency = (line.currency or self._default_currency(company)).strip().upper()
            if not CURRENCY_CODE.match(currency):
                raise BadInputData(f"{what}: currency {line.currency!r} is not a 3-letter ISO code")
            if self.known_accounts is not None and line.account.strip() not in self.known_accounts:
                raise BadInputData(f"{what}: main account {line.account!r} is unknown in F&O")
            amount_type = self.amount_type(line.account.strip(), what=what)
            entered = -amount if amount_type == "Revenue" else amount
            display = fmt.build(line.account, line.dimensions, what=what)
            fp = "|".join(
                (company, line.voucher, line.trans_date.isoformat(), display, format(amount, "f"), currency)
            )
            seen[fp] += 1
            lk = "L" + hashlib.sha256(f"{fp}|{seen[fp]}".encode()).hexdigest()[:12].upper()
            body: dict[str, Any] = {
                "dataAreaId": company.lower(),
                "LegalEntityId": company.lower(),
                "DimensionDisplayValue": display,
                "EntryDate": f"{line.trans_date.isoformat()}T12:00:00Z",
                "CurrencyCode": currency,
                "TransactionCurrencyAmount": entered,
                "AmountType": amount_type,
                "Comment": f"{lk} {' '.join(line.text.split())}".strip()[:TEXT_MAX],
            }
            # Each budget line is its own unit (no voucher balancing in a budget register entry).
            vouchers[lk] = [PreparedLine(lk, line.voucher or lk, body, line.source)]
        if dry_run:
            return JournalWriteResult(company, key, "", lines_planned=len(vouchers))
        spec = EntryHeader(key, header_text, budget_model=model, budget_code=code)

        def find() -> dict[str, Any] | None:
            return self._find_header(BUDGET_HEADERS, company, spec)

        def create() -> dict[str, Any]:
            body = {
                "dataAreaId": company.lower(),
                "LegalEntityId": company.lower(),
                "BudgetModelId": model,
                "BudgetCode": code,
                "DefaultDate": f"{default_date.isoformat()}T12:00:00Z",
                "ReasonComment": header_text,
            }
            return self.client.post(
                BUDGET_HEADERS, body, what=f"POST {BUDGET_HEADERS} ({company}, {model}/{code})"
            )

        header, resumed = self._create_with_lookup(create, find)
        number = str(header.get("EntryNumber") or "")
        if not number:
            raise DynamicsBadResponse(f"POST {BUDGET_HEADERS} ({company}): the response has no EntryNumber")
        result = JournalWriteResult(
            company, key, number, resumed=resumed, status=str(header.get("Status") or "")
        )
        if header.get("Status") == "Completed":
            # Completed entries are never edited (F&O refuses it); what landed before stays the truth.
            result.already_posted = True
            result.lines_skipped = len(vouchers)
            return result
        for lst in vouchers.values():
            for p in lst:
                p.body["EntryNumber"] = number
        present = self._existing_line_keys(BUDGET_LINES, company, "EntryNumber", number, "Comment")
        if lines_via is not None:  # another transport sends the lines (a data-management package)
            lines_via(result, vouchers, present)
        else:
            self._write_lines(result, BUDGET_LINES, vouchers, present)
        return result

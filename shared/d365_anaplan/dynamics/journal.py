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
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.config import JournalSettings
from d365_anaplan.errors import (
    BadInputData,
    DynamicsBadResponse,
    DynamicsUnavailable,
    DynamicsValidationError,
)

from . import filters as F
from .batch import MAX_BATCH_OPERATIONS, ChangesetResponse, Operation, decode_batch, encode_batch
from .dimensions import DimensionFormat
from .odata import ODataClient, Query, dumps_exact, parse_error
from .reader import DynamicsReader

log = logging.getLogger(__name__)

HEADERS = "LedgerJournalHeaders"
LINES = "LedgerJournalLines"
BUDGET_HEADERS = "BudgetRegisterEntryHeaders"
BUDGET_LINES = "BudgetRegisterEntryLines"
TEXT_MAX = 60
VOUCHER_MAX = 20
MAX_DECIMALS = 6  # amount EDTs can be extended to at most 6 decimals (§7)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_KEY_PREFIX = "AP"
HELD_NUMBERS_IN_FILTER = 40  # read-back filters name our entries up to this many, else the window only
OFFSET_MEMO = "Anaplan offset"  # line texts of balancing lines start with it (left out of read-backs)


@dataclass(frozen=True)
class JournalLineInput:
    """One line to write; ``amount`` is signed (debit positive, credit negative)."""

    account: str
    dimensions: Mapping[str, str]
    trans_date: date
    amount: Decimal
    voucher: str
    currency: str | None = None
    text: str = ""
    offset_account: str | None = None
    offset_dimensions: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # where the line came from (e.g. "plan.csv line 12"), for error messages


@dataclass(frozen=True)
class LineError:
    line_key: str
    voucher: str
    message: str
    source: str = ""


@dataclass(frozen=True)
class EntryHeader:
    """What identifies and describes one journal or budget register entry."""

    key: str  # idempotency key; the description starts with it
    description: str  # readable header text (<= 60), e.g. "APK3QZ-7F2M9XAB Budget FY2025 2025-01..03 run ..."
    journal_name: str | None = None  # ledger journals
    budget_model: str | None = None  # budget register
    budget_code: str | None = None


@dataclass(frozen=True)
class HeldLine:
    """A line this connector holds in F&O, in ledger sign (debit/expense positive, credit/revenue negative)."""

    company: str
    number: str  # JournalBatchNumber or EntryNumber
    account: str
    dimensions: Mapping[str, str]
    period: date  # first day of the line's month
    amount: Decimal
    memo: str


@dataclass(frozen=True)
class EntryStatus:
    company: str
    number: str
    description: str
    status: str  # budget register: Draft/Completed; ledger journal: Posted/Unposted
    workflow_status: str = ""

    @property
    def pending(self) -> bool:
        return self.status in ("Draft", "Unposted")


@dataclass
class JournalWriteResult:
    company: str
    idempotency_key: str
    journal_batch_number: str
    resumed: bool = False
    already_posted: bool = False
    lines_written: int = 0
    lines_skipped: int = 0  # already present from an earlier attempt
    lines_planned: int = 0  # dry run: lines validated and built, not sent
    vouchers_written: int = 0
    vouchers_failed: int = 0
    batches: int = 0
    errors: list[LineError] = field(default_factory=list)
    status: str = ""  # budget register: the entry's Status (Draft until completed in F&O)

    def raise_for_errors(self) -> None:
        if self.errors:
            first = self.errors[0]
            raise DynamicsValidationError(
                f"{self.journal_batch_number or 'journal'} ({self.company}): {len(self.errors)} line(s) rejected by F&O; "
                f"first: line {first.line_key} voucher {first.voucher}{' (' + first.source + ')' if first.source else ''}: {first.message}"
            )


def idempotency_key(*parts: str) -> str:
    """A deterministic key (``AP`` + 18 hex digits) for a journal: e.g. (connection, run id, company, journal name)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:18].upper()
    return _KEY_PREFIX + digest


def _check_amount(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise BadInputData(
            f"{what}: amount {value!r} must be a Decimal (got {type(value).__name__}); floats and text are refused"
        )
    amount = Decimal(value)
    if not amount.is_finite():
        raise BadInputData(f"{what}: amount {value!r} is not a finite number")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMALS:
        raise BadInputData(f"{what}: amount {amount} has more than {MAX_DECIMALS} decimals")
    if amount == 0:
        raise BadInputData(f"{what}: amount is zero; F&O journal lines need a debit or a credit")
    return amount


@dataclass(frozen=True)
class _Prepared:
    key: str
    voucher: str
    body: dict[str, Any]
    source: str


class JournalWriter:
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

    def _prepare(
        self, company: str, lines: Sequence[JournalLineInput], fmt: DimensionFormat
    ) -> dict[str, list[_Prepared]]:
        if not lines:
            raise BadInputData(f"journal for {company}: no lines to write")
        vouchers: dict[str, list[_Prepared]] = {}
        voucher_dates: dict[str, date] = {}
        voucher_sums: dict[str, Decimal] = {}
        voucher_offsets: dict[str, bool] = {}
        occurrences: Counter[str] = Counter()
        unknown: list[str] = []
        for i, line in enumerate(lines, start=1):
            what = line.source or f"journal line {i}"
            amount = _check_amount(line.amount, what)
            if not isinstance(line.trans_date, date):
                raise BadInputData(f"{what}: trans_date {line.trans_date!r} is not a date")
            voucher = (line.voucher or "").strip()
            if not voucher or len(voucher) > VOUCHER_MAX or any(ord(c) < 0x20 for c in voucher):
                raise BadInputData(
                    f"{what}: voucher {line.voucher!r} must be 1-{VOUCHER_MAX} printable characters"
                )
            currency = (line.currency or self.settings.currency_code).strip().upper()
            if not _CURRENCY.match(currency):
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
            vouchers.setdefault(voucher, []).append(_Prepared(key, voucher, body, line.source))
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
        self, company: str, lines: Sequence[JournalLineInput], header: EntryHeader, *, dry_run: bool = False
    ) -> JournalWriteResult:
        """The one way plan values are written (flow, replay of rejected lines, dry runs): to the configured
        target (``dynamics.journal.target``), creating or resuming the entry ``header.key`` names and writing
        only the lines it does not hold yet. ``dry_run``: every line is validated and its body built (amount
        type, sign, display value), nothing is sent; ``lines_planned`` says how many would be written."""
        if not lines:
            raise BadInputData(f"{header.key} ({company}): no lines to write")
        if self.settings.target == "budget_register":
            return self.write_budget_register(
                company, lines, key=header.key, description=header.description,
                model=header.budget_model, code=header.budget_code,
                default_date=min(line.trans_date for line in lines), dry_run=dry_run,
            )  # fmt: skip
        return self.write_ledger_journal(
            company, lines, key=header.key, journal_name=header.journal_name, description=header.description,
            dry_run=dry_run,
        )  # fmt: skip

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

    def _existing_line_keys(
        self, entity_set: str, company: str, number_field: str, number: str, text_field: str
    ) -> set[str]:
        flt = F.and_(F.eq("dataAreaId", company.lower()), F.eq(number_field, number))
        keys: set[str] = set()
        for row in self.client.iter_rows(Query(entity_set, filter=flt, select=(text_field,))):
            text = row.get(text_field)
            if isinstance(text, str) and text.startswith("L"):
                keys.add(text.split(" ", 1)[0])
        return keys

    def _write_lines(
        self,
        result: JournalWriteResult,
        entity_set: str,
        vouchers: dict[str, list[_Prepared]],
        present: set[str],
    ) -> None:
        pending: list[list[_Prepared]] = []
        for lst in vouchers.values():
            todo = [p for p in lst if p.key not in present]
            result.lines_skipped += len(lst) - len(todo)
            if todo:
                pending.append(todo)
        batch: list[list[_Prepared]] = []
        size = 0
        for cs in pending:
            if batch and size + len(cs) > self.batch_size:
                self._send(result, entity_set, batch)
                batch, size = [], 0
            batch.append(cs)
            size += len(cs)
        if batch:
            self._send(result, entity_set, batch)

    def _send(self, result: JournalWriteResult, entity_set: str, changesets: list[list[_Prepared]]) -> None:
        ops = [
            [Operation("POST", entity_set, p.body, str(n)) for n, p in enumerate(cs, start=1)]
            for cs in changesets
        ]
        content_type, body = encode_batch(self.client.base, ops, dumps_exact)
        what = f"$batch {entity_set} ({result.journal_batch_number}, {sum(len(c) for c in changesets)} lines)"
        for attempt in range(self.write_attempts):
            try:
                resp = self.client.request(
                    "POST",
                    f"{self.client.base}/$batch",
                    what=what,
                    headers={"Content-Type": content_type},
                    data=body,
                    ok=(200, 202),
                    idempotent=False,
                )
                break
            except DynamicsUnavailable:
                if attempt + 1 >= self.write_attempts:
                    raise
                # Unknown outcome: find out which vouchers landed and send only the rest.
                self.sleep(2.0 * (attempt + 1))
                number_field = "JournalBatchNumber" if entity_set == LINES else "EntryNumber"
                text_field = "Text" if entity_set == LINES else "Comment"
                present = self._existing_line_keys(
                    entity_set, result.company, number_field, result.journal_batch_number, text_field
                )
                changesets = [[p for p in cs if p.key not in present] for cs in changesets]
                result.lines_skipped += sum(1 for cs in ops for _ in cs) - sum(len(cs) for cs in changesets)
                changesets = [cs for cs in changesets if cs]
                if not changesets:
                    result.batches += 1
                    return
                ops = [
                    [Operation("POST", entity_set, p.body, str(n)) for n, p in enumerate(cs, start=1)]
                    for cs in changesets
                ]
                content_type, body = encode_batch(self.client.base, ops, dumps_exact)
        result.batches += 1
        responses = decode_batch(resp.headers.get("Content-Type", ""), resp.content)
        if len(responses) != len(changesets):
            raise DynamicsBadResponse(f"{what}: {len(changesets)} changesets sent, {len(responses)} answered")
        for cs, answer in zip(changesets, responses, strict=True):
            self._record(result, cs, answer)

    def _record(self, result: JournalWriteResult, cs: list[_Prepared], answer: ChangesetResponse) -> None:
        if answer.ok:
            result.lines_written += len(cs)
            result.vouchers_written += 1
            return
        result.vouchers_failed += 1
        failed = next((p for p in answer.parts if p.status >= 300), answer.parts[0])
        err = parse_error(failed.status, failed.body)
        culprit: int | None = None
        if failed.content_id and failed.content_id.isdigit() and 1 <= int(failed.content_id) <= len(cs):
            culprit = int(failed.content_id) - 1
        for i, p in enumerate(cs):
            if culprit is None or i == culprit:
                message = err.text()
            else:
                message = (
                    f"not written: voucher {p.voucher} rolled back because line {cs[culprit].key} failed"
                )
            result.errors.append(LineError(p.key, p.voucher, message, p.source))
        log.warning("F&O rejected voucher %s: %s", cs[0].voucher, err.text()[:300])

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
        vouchers: dict[str, list[_Prepared]] = {}
        seen: Counter[str] = Counter()
        for i, line in enumerate(lines, start=1):
            what = line.source or f"budget line {i}"
            amount = _check_amount(line.amount, what)
            currency = (line.currency or self.settings.currency_code).strip().upper()
            if not _CURRENCY.match(currency):
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
            vouchers[lk] = [_Prepared(lk, line.voucher or lk, body, line.source)]
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
        self._write_lines(result, BUDGET_LINES, vouchers, present)
        return result

    # -- what F&O holds from this connector ----------------------------------------------------------------

    def _our_headers(self, company: str, tag: str) -> dict[str, dict[str, Any]]:
        if self.settings.target == "budget_register":
            entity, number, text = BUDGET_HEADERS, "EntryNumber", "ReasonComment"
            select: tuple[str, ...] = (
                number,
                text,
                "Status",
                "WorkflowStatus",
                "BudgetModelId",
                "BudgetCode",
            )
        else:
            entity, number, text = HEADERS, "JournalBatchNumber", "Description"
            select = (number, text, "IsPosted", "PostingLayer")
        flt = F.and_(F.eq("dataAreaId", company.lower()), F.startswith(text, f"{tag}-"))
        return {
            str(r[number]): r
            for r in self.client.iter_rows(Query(entity, filter=flt, select=select))
            if str(r.get(text) or "").startswith(f"{tag}-")
        }

    def entries(self, company: str, tag: str) -> list[EntryStatus]:
        """Every journal / budget register entry of one export tag in ``company`` with its status."""
        out = []
        for number, r in sorted(self._our_headers(company, tag).items()):
            if self.settings.target == "budget_register":
                status, wf, text = (
                    str(r.get("Status") or ""),
                    str(r.get("WorkflowStatus") or ""),
                    "ReasonComment",
                )
            else:
                status, wf, text = ("Posted" if r.get("IsPosted") == "Yes" else "Unposted"), "", "Description"
            out.append(EntryStatus(company.upper(), number, str(r.get(text) or ""), status, wf))
        return out

    def held(self, company: str, tag: str, first: date, last: date) -> list[HeldLine]:
        """Lines of this connector (entries whose description starts with ``tag``) dated in the months
        ``first``..``last``, read back from F&O, in ledger sign. Offset lines are left out."""
        company = company.strip().upper()
        headers = self._our_headers(company, tag)
        if not headers:
            return []
        start = first.replace(day=1)
        end = date(last.year + (last.month == 12), last.month % 12 + 1, 1)
        budget = self.settings.target == "budget_register"
        if budget:
            fmt = self.reader.budget_format()
            names = ("EntryNumber", "DimensionDisplayValue", "EntryDate", "TransactionCurrencyAmount",
                     "AmountType", "Comment")  # fmt: skip
            date_field, entity = "EntryDate", BUDGET_LINES
        else:
            fmt = self.reader.ledger_format()
            names = ("JournalBatchNumber", "AccountDisplayValue", "TransDate", "DebitAmount", "CreditAmount",
                     "Text")  # fmt: skip
            date_field, entity = "TransDate", LINES
        conditions = [F.eq("dataAreaId", company.lower()), F.ge(date_field, start), F.lt(date_field, end)]
        if len(headers) <= HELD_NUMBERS_IN_FILTER:  # narrow to our entries while the filter stays short
            conditions.append(F.any_of(names[0], sorted(headers)))
        flt = F.and_(*conditions)
        out = []
        for row in self.client.iter_rows(Query(entity, filter=flt, select=names)):
            number = str(row.get(names[0]) or "")
            if number not in headers:
                continue
            memo = str(row.get(names[5]) or "")
            text = memo.split(" ", 1)[1] if " " in memo else ""
            if text.startswith(OFFSET_MEMO):
                continue
            what = f"{entity} {number} line {memo[:14]!r}"
            account, dims = fmt.parse_value(str(row.get(names[1]) or ""), what=what)
            when = date.fromisoformat(str(row[names[2]])[:10]).replace(day=1)
            if budget:
                amount = Decimal(str(row.get(names[3]) or 0))
                if (
                    row.get("AmountType") == "Revenue"
                    and self.settings.budget_revenue_read_sign == "as_entered"
                ):
                    amount = -amount
            else:
                amount = Decimal(str(row.get(names[3]) or 0)) - Decimal(str(row.get(names[4]) or 0))
            out.append(HeldLine(company, number, account, dims, when, amount, text))
        return out

    # -- setup the targets need (read by `check`) ----------------------------------------------------------

    def journal_name_layers(self) -> dict[tuple[str, str], str]:
        """(company, journal name) -> the journal name's ``PostingLayer``."""
        q = Query("JournalNames", filter=F.any_of("dataAreaId", [c.lower() for c in self.reader.companies]),
                  select=("dataAreaId", "Name", "PostingLayer"))  # fmt: skip
        return {
            (str(r.get("dataAreaId") or "").upper(), str(r.get("Name") or "")): str(
                r.get("PostingLayer") or ""
            )
            for r in self.client.iter_rows(q)
        }

    def budget_models(self) -> set[tuple[str, str]]:
        """(company, budget model) pairs of ``BudgetModels``."""
        q = Query("BudgetModels", filter=F.any_of("dataAreaId", [c.lower() for c in self.reader.companies]),
                  select=("dataAreaId", "BudgetModel"))  # fmt: skip
        return {
            (str(r.get("dataAreaId") or "").upper(), str(r.get("BudgetModel") or ""))
            for r in self.client.iter_rows(q)
        }

    def budget_codes(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(company, budget code) -> (``BudgetTransactionType``, ``WorkflowId``)."""
        q = Query("BudgetCodes", filter=F.any_of("dataAreaId", [c.lower() for c in self.reader.companies]),
                  select=("dataAreaId", "BudgetCode", "BudgetTransactionType", "WorkflowId"))  # fmt: skip
        return {
            (str(r.get("dataAreaId") or "").upper(), str(r.get("BudgetCode") or "")): (
                str(r.get("BudgetTransactionType") or ""), str(r.get("WorkflowId") or ""),
            )
            for r in self.client.iter_rows(q)
        }  # fmt: skip

    def budget_catalogue(self) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """Budget models (id -> name) and budget codes (code -> (``BudgetTransactionType``, description)) of
        the configured companies, for people choosing them (``map propose``)."""
        companies = [c.lower() for c in self.reader.companies]
        models: dict[str, str] = {}
        q = Query("BudgetModels", filter=F.any_of("dataAreaId", companies), select=("BudgetModel", "Name"))
        for r in self.client.iter_rows(q):
            models.setdefault(str(r.get("BudgetModel") or ""), str(r.get("Name") or ""))
        codes: dict[str, tuple[str, str]] = {}
        q = Query("BudgetCodes", filter=F.any_of("dataAreaId", companies),
                  select=("BudgetCode", "BudgetTransactionType", "Description"))  # fmt: skip
        for r in self.client.iter_rows(q):
            codes.setdefault(str(r.get("BudgetCode") or ""),
                             (str(r.get("BudgetTransactionType") or ""), str(r.get("Description") or "")))  # fmt: skip
        return models, codes

    def observed_revenue_sign(self, company: str, tag: str) -> tuple[str, str] | None:
        """How ``BudgetRegisterEntryLines`` shows revenue, found by comparing one of this connector's revenue
        lines with the stored value in ``BudgetTransactionLineBiEntities`` (stored sign-flipped, A2 #1-2):
        ``("as_entered" | "stored", what was compared)``, or None when no revenue line exists yet."""
        headers = self._our_headers(company, tag)
        if not headers:
            return None
        flt = F.and_(
            F.eq("dataAreaId", company.lower()),
            F.eq("AmountType", F.EnumValue("BudgetType", "Revenue")),
            F.any_of("EntryNumber", sorted(headers)[:20]),
        )
        select = ("EntryNumber", "EntryDate", "TransactionCurrencyAmount")
        line = next(iter(self.client.iter_rows(Query(BUDGET_LINES, filter=flt, select=select, top=1))), None)
        if line is None:
            return None
        number, amount = str(line["EntryNumber"]), Decimal(str(line["TransactionCurrencyAmount"]))
        raw_heads = list(self.client.iter_rows(Query(
            "BudgetTransactionHeaderBiEntities", filter=F.eq("TransactionNumber", number), select=("SourceKey",),
            cross_company=False,
        )))  # fmt: skip
        for head in raw_heads:
            raw = self.client.iter_rows(Query(
                "BudgetTransactionLineBiEntities",
                filter=F.and_(F.eq("BudgetTransactionHeader", int(head["SourceKey"])),
                              F.eq("BudgetType", F.EnumValue("BudgetType", "Revenue"))),
                select=("TransactionCurrencyAmount",), cross_company=False,
            ))  # fmt: skip
            for r in raw:
                stored = Decimal(str(r["TransactionCurrencyAmount"]))
                if abs(stored) == abs(amount) and amount != 0:
                    what = f"entry {number}: entity {amount}, stored {stored}"
                    return ("stored" if stored == amount else "as_entered"), what
        return None

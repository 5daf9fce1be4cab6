"""Writing approved plan values to F&O (dynamics-fo.md §2.5-§2.7, §3, §5).

Ledger journals: one ``LedgerJournalHeaders`` record per (run, company) carrying a deterministic
idempotency key (in ``Description``, and in ``IntegrationKey`` when ``$metadata`` has it). The key is
looked up before creating, so an unposted journal left by an earlier attempt is resumed, never
duplicated. Lines go to ``LedgerJournalLines`` through ``$batch``: one voucher per changeset (a voucher
lands whole), at most 5,000 operations per batch; every line carries a per-line key at the start of
``Text`` and lines already present are not written again. ``AccountDisplayValue`` is built by position
from the active ledger dimension format; more segments than the format has are refused (F&O would drop
them silently). F&O's per-line errors (``innererror.message``) are captured per line.

Budget register entries (``BudgetRegisterEntryHeaders``/``Lines``) are the alternative target; posting a
journal is optional and works by re-queueing a customer-configured batch job
(``BatchJobs/Microsoft.Dynamics.DataEntities.SetBatchJobToWaiting``) and reading back ``IsPosted``.
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
from urllib.parse import quote

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
POST_ACTION = "BatchJobs/Microsoft.Dynamics.DataEntities.SetBatchJobToWaiting"
TEXT_MAX = 60
VOUCHER_MAX = 20
MAX_DECIMALS = 6  # amount EDTs can be extended to at most 6 decimals (§7)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_KEY_PREFIX = "AP"


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


@dataclass
class JournalWriteResult:
    company: str
    idempotency_key: str
    journal_batch_number: str
    resumed: bool = False
    already_posted: bool = False
    lines_written: int = 0
    lines_skipped: int = 0  # already present from an earlier attempt
    vouchers_written: int = 0
    vouchers_failed: int = 0
    batches: int = 0
    errors: list[LineError] = field(default_factory=list)
    posted: bool | None = None

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

    def _find_header(
        self,
        entity_set: str,
        company: str,
        key: str,
        key_field: str,
        description_field: str,
        number_field: str,
    ) -> dict[str, Any] | None:
        disc = self.reader.discover()
        use_key = entity_set == HEADERS and disc.has_integration_key
        flt = F.and_(
            F.eq("dataAreaId", company.lower()),
            F.eq(key_field if use_key else description_field, key if use_key else f"Anaplan {key}"),
        )
        select = ["dataAreaId", number_field, description_field]
        if entity_set == HEADERS:
            select.append("IsPosted")
        rows = list(self.client.iter_rows(Query(entity_set, filter=flt, select=tuple(select))))
        if len(rows) > 1:
            # Should never happen; prefer an unposted one so nothing is duplicated.
            rows.sort(key=lambda r: (r.get("IsPosted") == "Yes", str(r.get(number_field))))
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
        *,
        key: str,
        journal_name: str | None = None,
        post: bool | None = None,
    ) -> JournalWriteResult:
        """Write to the configured target (``dynamics.journal.target``). Ledger journals are posted when
        ``post`` is True, or when it is None and a posting batch job is configured."""
        if self.settings.target == "budget_register":
            if not lines:
                raise BadInputData(f"budget register for {company}: no lines to write")
            return self.write_budget_register(
                company, lines, key=key, default_date=min(line.trans_date for line in lines)
            )
        do_post = self.settings.posting_batch_job_id is not None if post is None else post
        return self.write_ledger_journal(company, lines, key=key, journal_name=journal_name, post=do_post)

    # -- ledger journal -------------------------------------------------------------------------------------

    def write_ledger_journal(
        self,
        company: str,
        lines: Sequence[JournalLineInput],
        *,
        key: str,
        journal_name: str | None = None,
        post: bool = False,
    ) -> JournalWriteResult:
        """Create (or resume) the journal identified by ``key`` for ``company`` and write ``lines``."""
        company = company.strip().upper()
        name = journal_name or self.settings.journal_name
        fmt = self.reader.ledger_format()
        vouchers = self._prepare(company, lines, fmt)
        disc = self.reader.discover()

        def find() -> dict[str, Any] | None:
            return self._find_header(
                HEADERS, company, key, "IntegrationKey", "Description", "JournalBatchNumber"
            )

        def create() -> dict[str, Any]:
            body: dict[str, Any] = {
                "dataAreaId": company.lower(),
                "JournalName": name,
                "Description": f"Anaplan {key}",
            }
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
        if post:
            result.posted = self.post_journal(company, number)
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

    # -- posting ---------------------------------------------------------------------------------------------

    def post_journal(
        self, company: str, journal_batch_number: str, *, poll_attempts: int = 10, poll_interval: float = 5.0
    ) -> bool:
        """Re-queue the configured posting batch job and wait (bounded) until the journal shows IsPosted."""
        job = self.settings.posting_batch_job_id
        if job is None:
            raise BadInputData("posting: dynamics.journal.posting_batch_job_id is not configured")
        self.client.action(POST_ACTION, {"batchJobId": job}, what=f"SetBatchJobToWaiting({job})")
        keys = f"dataAreaId={F.literal(company.lower())},JournalBatchNumber={F.literal(journal_batch_number)}"
        path = f"{HEADERS}({quote(keys, safe="'=,")})"
        for attempt in range(poll_attempts):
            row = self.client.get_json(
                path,
                what=f"GET {HEADERS} {journal_batch_number}",
                params=[("$select", "IsPosted"), ("cross-company", "true")],
            )
            if isinstance(row, dict) and row.get("IsPosted") == "Yes":
                return True
            if attempt + 1 < poll_attempts:
                self.sleep(poll_interval)
        return False

    # -- budget register ----------------------------------------------------------------------------------

    def write_budget_register(
        self,
        company: str,
        lines: Sequence[JournalLineInput],
        *,
        key: str,
        default_date: date,
    ) -> JournalWriteResult:
        """Budget register entry (header + lines) keyed like a journal; amounts are signed, AmountType
        Expense for positive and Revenue for negative values."""
        company = company.strip().upper()
        if not self.settings.budget_model or not self.settings.budget_code:
            raise BadInputData(
                "budget register: dynamics.journal.budget_model and budget_code must be configured"
            )
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
            display = fmt.build(line.account, line.dimensions, what=what)
            fp = "|".join((company, line.trans_date.isoformat(), display, format(amount, "f"), currency))
            seen[fp] += 1
            lk = "L" + hashlib.sha256(f"{fp}|{seen[fp]}".encode()).hexdigest()[:12].upper()
            body: dict[str, Any] = {
                "dataAreaId": company.lower(),
                "LegalEntityId": company.lower(),
                "DimensionDisplayValue": display,
                "EntryDate": f"{line.trans_date.isoformat()}T12:00:00Z",
                "CurrencyCode": currency,
                "TransactionCurrencyAmount": amount,
                "AmountType": "Expense" if amount > 0 else "Revenue",
                "Comment": f"{lk} {' '.join(line.text.split())}".strip()[:TEXT_MAX],
            }
            # Each budget line is its own unit (no voucher balancing in a budget register entry).
            vouchers[lk] = [_Prepared(lk, line.voucher or lk, body, line.source)]

        def find() -> dict[str, Any] | None:
            return self._find_header(
                BUDGET_HEADERS, company, key, "ReasonComment", "ReasonComment", "EntryNumber"
            )

        def create() -> dict[str, Any]:
            body = {
                "dataAreaId": company.lower(),
                "LegalEntityId": company.lower(),
                "BudgetModelId": self.settings.budget_model,
                "BudgetCode": self.settings.budget_code,
                "DefaultDate": f"{default_date.isoformat()}T12:00:00Z",
                "ReasonComment": f"Anaplan {key}",
            }
            return self.client.post(BUDGET_HEADERS, body, what=f"POST {BUDGET_HEADERS} ({company})")

        header, resumed = self._create_with_lookup(create, find)
        number = str(header.get("EntryNumber") or "")
        if not number:
            raise DynamicsBadResponse(f"POST {BUDGET_HEADERS} ({company}): the response has no EntryNumber")
        result = JournalWriteResult(company, key, number, resumed=resumed)
        for lst in vouchers.values():
            for p in lst:
                p.body["EntryNumber"] = number
        present = self._existing_line_keys(BUDGET_LINES, company, "EntryNumber", number, "Comment")
        self._write_lines(result, BUDGET_LINES, vouchers, present)
        return result

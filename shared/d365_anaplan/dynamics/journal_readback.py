"""What F&O holds from this connector: its budget register entries and ledger journals (status, lines in ledger
sign, journal name layers, budget models and codes, the sign revenue reads back in).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.config import JournalSettings
from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.journal_records import (
    BUDGET_HEADERS,
    BUDGET_LINES,
    HEADERS,
    HELD_NUMBERS_IN_FILTER,
    LINES,
    OFFSET_MEMO,
    EntryStatus,
    HeldLine,
)
from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.dynamics.odata_shapes import Query
from d365_anaplan.dynamics.reader import DynamicsReader


class JournalReadback:
    """Read-backs of :class:`~d365_anaplan.dynamics.journal.JournalWriter` (its base): what F&O holds from this
    connector, through the writer's client, reader and settings."""

    client: ODataClient
    reader: DynamicsReader
    settings: JournalSettings

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
            names = (
                "EntryNumber",
                "DimensionDisplayValue",
                "EntryDate",
                "TransactionCurrencyAmount",
                "AmountType",
                "Comment",
            )
            date_field, entity = "EntryDate", BUDGET_LINES
        else:
            fmt = self.reader.ledger_format()
            names = (
                "JournalBatchNumber",
                "AccountDisplayValue",
                "TransDate",
                "DebitAmount",
                "CreditAmount",
                "Text",
            )
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
        q = Query(
            "JournalNames",
            filter=F.any_of("dataAreaId", [c.lower() for c in self.reader.companies]),
            select=("dataAreaId", "Name", "PostingLayer"),
        )
        return {
            (str(r.get("dataAreaId") or "").upper(), str(r.get("Name") or "")): str(
                r.get("PostingLayer") or ""
            )
            for r in self.client.iter_rows(q)
        }

    def budget_models(self) -> set[tuple[str, str]]:
        """(company, budget model) pairs of ``BudgetModels``."""
        q = Query(
            "BudgetModels",
            filter=F.any_of("dataAreaId", [c.lower() for c in self.reader.companies]),
            select=("dataAreaId", "BudgetModel"),
        )
        return {
            (str(r.get("dataAreaId") or "").upper(), str(r.get("BudgetModel") or ""))
            for r in self.client.iter_rows(q)
        }

    def budget_codes(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(company, budget code) -> (``BudgetTransactionType``, ``WorkflowId``)."""
        q = Query(
            "BudgetCodes",
            filter=F.any_of("dataAreaId", [c.lower() for c in self.reader.companies]),
            select=("dataAreaId", "BudgetCode", "BudgetTransactionType", "WorkflowId"),
        )
        return {
            (str(r.get("dataAreaId") or "").upper(), str(r.get("BudgetCode") or "")): (
                str(r.get("BudgetTransactionType") or ""),
                str(r.get("WorkflowId") or ""),
            )
            for r in self.client.iter_rows(q)
        }

    def budget_catalogue(self) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """Budget models (id -> name) and budget codes (code -> (``BudgetTransactionType``, description)) of
        the configured companies, for people choosing them (``map propose``)."""
        companies = [c.lower() for c in self.reader.companies]
        models: dict[str, str] = {}
        q = Query("BudgetModels", filter=F.any_of("dataAreaId", companies), select=("BudgetModel", "Name"))
        for r in self.client.iter_rows(q):
            models.setdefault(str(r.get("BudgetModel") or ""), str(r.get("Name") or ""))
        codes: dict[str, tuple[str, str]] = {}
        q = Query(
            "BudgetCodes",
            filter=F.any_of("dataAreaId", companies),
            select=("BudgetCode", "BudgetTransactionType", "Description"),
        )
        for r in self.client.iter_rows(q):
            codes.setdefault(
                str(r.get("BudgetCode") or ""),
                (str(r.get("BudgetTransactionType") or ""), str(r.get("Description") or "")),
            )
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
        raw_heads = list(
            self.client.iter_rows(
                Query(
                    "BudgetTransactionHeaderBiEntities",
                    filter=F.eq("TransactionNumber", number),
                    select=("SourceKey",),
                    cross_company=False,
                )
            )
        )
        for head in raw_heads:
            raw = self.client.iter_rows(
                Query(
                    "BudgetTransactionLineBiEntities",
                    filter=F.and_(
                        F.eq("BudgetTransactionHeader", int(head["SourceKey"])),
                        F.eq("BudgetType", F.EnumValue("BudgetType", "Revenue")),
                    ),
                    select=("TransactionCurrencyAmount",),
                    cross_company=False,
                )
            )
            for r in raw:
                stored = Decimal(str(r["TransactionCurrencyAmount"]))
                if abs(stored) == abs(amount) and amount != 0:
                    what = f"entry {number}: entity {amount}, stored {stored}"
                    return ("stored" if stored == amount else "as_entered"), what
        return None

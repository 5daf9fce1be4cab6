"""Budget register entries, budget models and codes, and journal names with posting layers in the F&O
sandbox (facts: ../shared/reference/dynamics-budget-fiscal.md A1-A5, B; dynamics-fo.md §2.3).

* ``BudgetModels`` / ``BudgetCodes`` per company; a code carries its budget type (``BudgetTransactionType``:
  OriginalBudget, Amendment = "Revision", Transfer, ...) and an optional workflow.
* ``BudgetRegisterEntryHeaders``: the model and the code must exist in the company; the header's
  ``BudgetType`` (enum ``BudgetTransactionType``, not Expense/Revenue) defaults from the budget code. Whether
  F&O blocks an override is UNCONFIRMED; the sandbox refuses a different value so a client never relies on
  one. ``EntryNumber`` comes from the number sequence; ``Status`` Draft, ``WorkflowStatus`` NotSubmitted.
* ``BudgetRegisterEntryLines``: the entry must exist and be Draft (completed entries can't be changed);
  ``DimensionDisplayValue`` is read in the active *budget register* dimension format (never the ledger one);
  ``AmountType`` (enum ``BudgetType``) must agree with the main account's type: Revenue for revenue accounts,
  Expense for every other (the F&O "defaulting of amount type" rule, A2 #4; the sandbox refuses a mismatch
  rather than defaulting, so a client has to get it right).
* Revenue sign (A2 #1-2): amounts are kept as entered. The AX 2012 table stores revenue sign-flipped; whether
  the D365 *entity* shows the entered or the stored sign is UNCONFIRMED, so ``SandboxConfig.budget_entity_sign``
  selects what ``BudgetRegisterEntryLines`` shows ("as_entered" or "stored").
* Completion (A1 #8-9): no OData action completes an entry; :func:`update_budget_balances` is the test hook
  standing for the user's "Update budget balances" (or a finished workflow).
* ``JournalNames`` carry a ``PostingLayer`` (enum ``CurrentOperationsTax``: Current, Operations, Tax,
  WarehouseCur_RU, CustomLayer1-7, None); a journal header's layer defaults from its journal name.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from devkit.sandbox.dynamics import seed
from devkit.sandbox.dynamics.entities import DEC, DTO, ENUMS, I64, EntityDef, S, _d

if TYPE_CHECKING:
    from devkit.sandbox.dynamics.app import DynamicsSandbox

Row = dict[str, Any]

# Enum members in metadata order (the numeric values of dynamics-budget-fiscal.md are noted beside).
BUDGET_ENUMS: dict[str, tuple[str, ...]] = {
    "BudgetTransactionType": (
        "Blank",  # 0
        "OriginalBudget",  # 1
        "Transfer",  # 2
        "Amendment",  # 3, shown as "Revision"
        "Encumbrance",
        "PreEncumbrance",
        "CarryForwardBudget",
        "Project",
        "FixedAsset",
        "SalesForecast",
        "PurchForecast",
        "Apportionment",  # 12
        "PreliminaryBudget",  # 13
    ),
    "BudgetModelType": ("Heading", "SubModel"),
    "CurrentOperationsTax": (
        "Current",
        "Operations",
        "Tax",
        "WarehouseCur_RU",  # 17
        *(f"CustomLayer{i}" for i in range(1, 8)),  # 18-24
        "None",  # 25
    ),
}

# Budget models and codes of every company: budget and forecast have their own models and codes.
MODELS: dict[str, str] = {
    "FY2025": "Budget 2025",
    "FY2026": "Budget 2026",
    "FC2025": "Rolling forecast 2025",
    "FC2026": "Rolling forecast 2026",
}
CODES: dict[str, tuple[str, str]] = {  # code -> (BudgetTransactionType, description)
    "Original": ("OriginalBudget", "Original budget"),
    "Revision": ("Amendment", "Budget revision"),
    "FcOrig": ("OriginalBudget", "Forecast, first load"),
    "FcRev": ("Amendment", "Forecast revision"),
    "Transfer": ("Transfer", "Budget transfer"),
}
# Journal name -> posting layer; "Budget" is the journal name plan values use (a custom layer).
JOURNAL_LAYERS: dict[str, str] = {
    "GenJrn": "Current",
    "Budget": "CustomLayer1",
    "Anaplan": "CustomLayer1",
    "Alloc": "Current",
}

BUDGET_MODELS_DEF = _d(
    "BudgetModels",
    "BudgetModel",
    ("dataAreaId", "BudgetModel", "SubModel"),
    {"dataAreaId": S, "BudgetModel": S, "SubModel": S, "Name": S, "Type": "BudgetModelType"},
)
BUDGET_CODES_DEF = _d(
    "BudgetCodes",
    "BudgetCode",
    ("dataAreaId", "BudgetCode"),
    {
        "dataAreaId": S,
        "BudgetCode": S,
        "Description": S,
        "BudgetTransactionType": "BudgetTransactionType",
        "WorkflowId": S,
    },
)
HEADERS_DEF = _d(
    "BudgetRegisterEntryHeaders",
    "BudgetRegisterEntryHeader",
    ("dataAreaId", "LegalEntityId", "EntryNumber"),
    {
        "dataAreaId": S,
        "LegalEntityId": S,
        "EntryNumber": S,
        "BudgetModelId": S,
        "BudgetCode": S,
        "DefaultDate": DTO,
        "BudgetType": "BudgetTransactionType",
        "Status": "BudgetTransactionStatus",
        "WorkflowStatus": S,
        "ReasonCode": S,
        "ReasonComment": S,
        "OneTimeRevision": "NoYes",
        "ExpenseBudgetTotal": DEC,
        "RevenueBudgetTotal": DEC,
    },
)
JOURNAL_NAMES_DEF = _d(
    "JournalNames",
    "JournalName",
    ("dataAreaId", "Name"),
    {
        "dataAreaId": S,
        "Name": S,
        "Description": S,
        "JournalType": "LedgerJournalType",
        "PostingLayer": "CurrentOperationsTax",
    },
)


# Raw read-back of the stored table values (dynamics-budget-fiscal.md A1 #10): revenue sign-flipped (A2 #1).
BI_HEADERS_DEF = _d(
    "BudgetTransactionHeaderBiEntities",
    "BudgetTransactionHeaderBiEntity",
    ("SourceKey",),
    {"SourceKey": I64, "TransactionNumber": S, "PrimaryLedger": I64, "TransactionStatus": "BudgetTransactionStatus",
     "BudgetTransactionType": "BudgetTransactionType", "BudgetModelId": S, "BudgetSubModelId": S},
)  # fmt: skip
BI_LINES_DEF = _d(
    "BudgetTransactionLineBiEntities",
    "BudgetTransactionLineBiEntity",
    ("SourceKey",),
    {"SourceKey": I64, "BudgetTransactionHeader": I64, "TransactionDate": DTO, "BudgetType": "BudgetType",
     "TransactionCurrencyAmount": DEC, "AccountingCurrencyAmount": DEC, "LedgerDimensionValuesJson": S},
)  # fmt: skip
BI_SETS = (BI_HEADERS_DEF.set_name, BI_LINES_DEF.set_name)


def _recid(*parts: str) -> int:
    return 5637000000 + int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:8], 16)


def bi_rows(sb: DynamicsSandbox, set_name: str) -> list[Row]:
    """The BI entities' rows: the stored values of the budget register tables."""
    out: list[Row] = []
    for (company, number), h in sb.budget_headers.items():
        head = _recid("h", company, number)
        if set_name == BI_HEADERS_DEF.set_name:
            out.append({"SourceKey": head, "TransactionNumber": number, "PrimaryLedger": _recid("ledger", company),
                        "TransactionStatus": h["Status"], "BudgetTransactionType": h["BudgetType"],
                        "BudgetModelId": h["BudgetModelId"], "BudgetSubModelId": h["BudgetModelId"]})  # fmt: skip
            continue
        for line in sb.budget_lines.get((company, number), []):
            parts = str(line["DimensionDisplayValue"]).split(seed.DELIMITER)
            out.append({
                "SourceKey": _recid("l", company, number, str(line["LineNumber"])), "BudgetTransactionHeader": head,
                "TransactionDate": line["EntryDate"], "BudgetType": line["AmountType"],
                "TransactionCurrencyAmount": stored_amount(line),
                "AccountingCurrencyAmount": -line["AccountingCurrencyAmount"] if line["AmountType"] == "Revenue"
                else line["AccountingCurrencyAmount"],
                "LedgerDimensionValuesJson": json.dumps({"MainAccount": parts[0]}),
            })  # fmt: skip
    return out


def install_enums() -> None:
    """Add the budget enums (and the full posting-layer enum) to the sandbox's ``$metadata`` enums."""
    ENUMS.update(BUDGET_ENUMS)


def entity_defs() -> dict[str, EntityDef]:
    """Entity sets this module serves or corrects (they replace same-named ones)."""
    defs = (BUDGET_MODELS_DEF, BUDGET_CODES_DEF, HEADERS_DEF, JOURNAL_NAMES_DEF, BI_HEADERS_DEF, BI_LINES_DEF)
    return {d.set_name: d for d in defs}


def static_tables() -> dict[str, list[Row]]:
    return {
        "BudgetModels": [
            {"dataAreaId": c.lower(), "BudgetModel": m, "SubModel": m, "Name": n, "Type": "Heading"}
            for c in seed.COMPANIES
            for m, n in MODELS.items()
        ],
        "BudgetCodes": [
            {
                "dataAreaId": c.lower(),
                "BudgetCode": code,
                "Description": desc,
                "BudgetTransactionType": kind,
                "WorkflowId": "",
            }
            for c in seed.COMPANIES
            for code, (kind, desc) in CODES.items()
        ],
        "JournalNames": [
            {
                "dataAreaId": c.lower(),
                "Name": n,
                "Description": d,
                "JournalType": t,
                "PostingLayer": JOURNAL_LAYERS.get(n, "Current"),
            }
            for c in seed.COMPANIES
            for n, d, t in seed.JOURNAL_NAMES
        ],
    }


def journal_layer(sb: DynamicsSandbox, company: str, journal_name: str) -> str:
    for r in sb.static["JournalNames"]:
        if r["dataAreaId"] == company.lower() and r["Name"] == journal_name:
            return str(r.get("PostingLayer") or "Current")
    return "Current"


def create_header(sb: DynamicsSandbox, body: Row) -> Row:
    from devkit.sandbox.dynamics.app import WriteError

    entity = "BudgetRegisterEntryHeader"
    company = sb._company(body, entity)
    if body.get("LegalEntityId") and str(body["LegalEntityId"]).upper() != company:
        raise WriteError(entity, "LegalEntityId must match dataAreaId.", "LegalEntityId")
    model = sb._text_field(body, entity, "BudgetModelId", 10, required=True, label="Budget model")
    models = {r["BudgetModel"] for r in sb.static["BudgetModels"] if r["dataAreaId"] == company.lower()}
    if model not in models:
        raise WriteError(
            entity,
            f"The value '{model}' in field 'Budget model' is not found in the related table 'Budget models'.",
            "BudgetModelId",
        )
    code = sb._text_field(body, entity, "BudgetCode", 10, required=True, label="Budget code")
    codes = {r["BudgetCode"]: r for r in sb.static["BudgetCodes"] if r["dataAreaId"] == company.lower()}
    if code not in codes:
        raise WriteError(
            entity,
            f"The value '{code}' in field 'Budget code' is not found in the related table 'Budget codes'.",
            "BudgetCode",
        )
    budget_type = str(codes[code]["BudgetTransactionType"])
    given = body.get("BudgetType")
    if given not in (None, "", budget_type):
        raise WriteError(
            entity,
            f"Budget type '{given}' does not match budget code '{code}' ({budget_type}).",
            "BudgetType",
        )
    default_date = sb._date_field(body, entity, "DefaultDate", "Date")
    sb.sequences[f"bre-{company}"] += 1
    number = f"BRE{sb.sequences[f'bre-{company}']:06d}"
    row: Row = {
        "dataAreaId": company.lower(),
        "LegalEntityId": company.lower(),
        "EntryNumber": number,
        "BudgetModelId": model,
        "BudgetCode": code,
        "DefaultDate": default_date,
        "BudgetType": budget_type,
        "Status": "Draft",
        "WorkflowStatus": "NotSubmitted",
        "ReasonCode": "",
        "ReasonComment": sb._text_field(body, entity, "ReasonComment", 60),
        "OneTimeRevision": "No",
        "ExpenseBudgetTotal": Decimal("0.00"),
        "RevenueBudgetTotal": Decimal("0.00"),
    }
    sb.budget_headers[(company, number)] = row
    sb.budget_lines[(company, number)] = []
    sb._remember("budget_header", (company, number), row)
    return row


def create_line(sb: DynamicsSandbox, body: Row) -> Row:
    from devkit.sandbox.dynamics.app import WriteError

    entity = "BudgetRegisterEntryLine"
    company = sb._company(body, entity)
    number = sb._text_field(body, entity, "EntryNumber", 20, required=True, label="Entry number")
    header = sb.budget_headers.get((company, number))
    if header is None:
        raise WriteError(
            entity,
            f"The value '{number}' in field 'Entry number' is not found in the related table 'Budget register entries'.",
            "EntryNumber",
        )
    if header["Status"] != "Draft":
        raise WriteError(
            entity, f"Budget register entry {number} is completed; lines cannot be added.", "EntryNumber"
        )
    display = sb._check_display(
        entity,
        "DimensionDisplayValue",
        sb._text_field(body, entity, "DimensionDisplayValue", 500, required=True, label="Dimension"),
        budget=True,
    )
    entry_date = sb._date_field(body, entity, "EntryDate", "Date")
    currency = sb._text_field(body, entity, "CurrencyCode", 3, required=True, label="Currency")
    if currency not in seed.CURRENCIES:
        raise WriteError(
            entity,
            f"The value '{currency}' in field 'Currency' is not found in the related table 'Currency'.",
            "CurrencyCode",
        )
    amount = sb._decimal_field(body, "TransactionCurrencyAmount")
    if amount == 0:
        raise WriteError(entity, "Field 'Amount' must be filled in.", "TransactionCurrencyAmount")
    amount_type = sb._enum_field(body, "AmountType", "BudgetType", "Expense")
    account = seed.main_account(display.split(seed.DELIMITER)[0])
    wanted = "Revenue" if account is not None and account.account_type == "Revenue" else "Expense"
    if amount_type != wanted:
        raise WriteError(
            entity,
            f"Amount type '{amount_type}' is not valid for main account {display.split(seed.DELIMITER)[0]} "
            f"(account type {account.account_type if account else '?'}); use '{wanted}'.",
            "AmountType",
        )
    lines = sb.budget_lines[(company, number)]
    row: Row = {
        "dataAreaId": company.lower(),
        "LegalEntityId": company.lower(),
        "EntryNumber": number,
        "LineNumber": Decimal(len(lines) + 1),
        "DimensionDisplayValue": display,
        "DimensionAccountStructure": "Manufacturing P&L",
        "EntryDate": entry_date,
        "CurrencyCode": currency,
        "TransactionCurrencyAmount": amount,
        "AccountingCurrencyAmount": amount,
        "AmountType": amount_type,
        "Quantity": Decimal("0"),
        "Price": Decimal("0"),
        "Comment": sb._text_field(body, entity, "Comment", 60),
        "IncludeInCashFlowForecast": "No",
        "BudgetCheckResult": "",
    }
    lines.append(row)
    header["ExpenseBudgetTotal" if amount_type == "Expense" else "RevenueBudgetTotal"] += amount
    sb._remember("budget_line", (company, number), row)
    return row


def line_rows(sb: DynamicsSandbox) -> list[Row]:
    """``BudgetRegisterEntryLines`` as the entity shows them (revenue sign per ``budget_entity_sign``)."""
    rows = [r for rows in sb.budget_lines.values() for r in rows]
    if sb.config.budget_entity_sign != "stored":
        return rows
    out = []
    for r in rows:
        if r["AmountType"] == "Revenue":
            r = {
                **r,
                "TransactionCurrencyAmount": -r["TransactionCurrencyAmount"],
                "AccountingCurrencyAmount": -r["AccountingCurrencyAmount"],
            }
        out.append(r)
    return out


def update_budget_balances(sb: DynamicsSandbox, company: str | None = None) -> list[str]:
    """The user's "Update budget balances": every Draft entry (of ``company``) becomes Completed."""
    done = []
    with sb.lock:
        for (co, number), header in sb.budget_headers.items():
            if header["Status"] == "Draft" and (company is None or co == company.upper()):
                header["Status"] = "Completed"
                done.append(number)
    return done


def stored_amount(row: Row) -> Decimal:
    """The amount as the table stores it (revenue sign-flipped, A2 #1): the ledger sign of the line."""
    amount = Decimal(row["TransactionCurrencyAmount"])
    return -amount if row["AmountType"] == "Revenue" else amount


def import_rows(sb: DynamicsSandbox, company: str, rows: list[dict[str, str]]) -> list[str]:
    """A "Budget account entries" package import (set-based): each row of the flat entity becomes a line of
    its entry through the checks of :func:`create_line`; one error text per refused row."""
    from devkit.sandbox.dynamics.app import HttpError, WriteError

    errors = []
    for n, raw in enumerate(rows, start=2):
        row = {k.strip().upper(): v for k, v in raw.items()}
        try:
            amount = Decimal(row.get("TRANSACTIONCURRENCYAMOUNT", ""))
        except ArithmeticError:
            errors.append(f"Line {n}: the value in field 'Amount' is not a number.")
            continue
        body: Row = {
            "dataAreaId": (row.get("LEGALENTITYID") or company).lower(),
            "EntryNumber": row.get("ENTRYNUMBER", ""),
            "DimensionDisplayValue": row.get("DIMENSIONDISPLAYVALUE", ""),
            "EntryDate": f"{row.get('ENTRYDATE', '')[:10]}T12:00:00Z",
            "CurrencyCode": row.get("CURRENCYCODE", ""),
            "TransactionCurrencyAmount": amount,
            "AmountType": row.get("AMOUNTTYPE", ""),
            "Comment": row.get("COMMENT", ""),
        }
        header = sb.budget_headers.get((str(body["dataAreaId"]).upper(), str(body["EntryNumber"])))
        model_code = (row.get("BUDGETMODELID"), row.get("BUDGETCODE"))
        if header is not None and (header["BudgetModelId"], header["BudgetCode"]) != model_code:
            errors.append(
                f"Line {n}: budget model/code {model_code} differ from entry {body['EntryNumber']}."
            )
            continue
        try:
            create_line(sb, body)
        except WriteError as exc:
            errors.append(f"Line {n}: {exc.message}")
        except HttpError:
            errors.append(f"Line {n}: a value does not have the field's type.")
    return errors

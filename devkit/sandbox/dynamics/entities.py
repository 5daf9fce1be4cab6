"""Entity sets the F&O sandbox publishes, with the property names and keys of dynamics-fo.md §2.3, and the
CSDL ``$metadata`` document built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

NS = "Microsoft.Dynamics.DataEntities"

S, I64, I32, DEC, DTO, BOOL = (
    "Edm.String",
    "Edm.Int64",
    "Edm.Int32",
    "Edm.Decimal",
    "Edm.DateTimeOffset",
    "Edm.Boolean",
)

ENUMS: dict[str, tuple[str, ...]] = {
    "NoYes": ("No", "Yes"),
    # MainAccounts.DebitCreditRequirement (dynamics-fo.md §2.3 names the field, not its enum: the AOT's
    # DebCredProposal, None/Debit/Credit, is UNCONFIRMED for the entity)
    "DebCredProposal": ("None", "Debit", "Credit"),
    "DimensionLedgerAccountType": (
        "ProfitAndLoss",
        "Revenue",
        "Expense",
        "BalanceSheet",
        "Asset",
        "Liability",
        "Equity",
        "Total",
        "Reporting",
        "Blank",
        "Common_CN",
    ),
    "DimensionHierarchyType": (
        "AccountStructure",
        "DataEntityLedgerDimensionFormat",
        "DataEntityDefaultDimensionFormat",
        "DataEntityBudgetDimensionFormat",
        "DataEntityBudgetPlanningDimensionFormat",
    ),
    "DimensionSegmentDelimiter": (
        "Hyphen",
        "Period",
        "Underscore",
        "Bar",
        "Tilde",
        "DoubleHyphen",
        "DoublePeriod",
        "DoubleUnderscore",
        "DoubleBar",
        "DoubleTilde",
    ),
    "LedgerPostingType": (
        "None",
        "LedgerJournal",
        "Cust",
        "Vend",
        "Bank",
        "Tax",
        "InventReceipt",
        "InventIssue",
        "PurchConsump",
        "SalesRevenue",
        "FixedAssetsDebit",
        "FixedAssetsCredit",
        "Budget",
    ),
    "CurrentOperationsTax": (
        "Current",
        "Operations",
        "Tax",
        "CustomLayer1",
        "CustomLayer2",
        "CustomLayer3",
        "CustomLayer4",
        "CustomLayer5",
        "CustomLayer6",
        "CustomLayer7",
        "None",
    ),
    "FiscalPeriodType": ("Opening", "Operating", "Closing"),
    "LedgerTransType": (
        "None",
        "GeneralJournal",
        "Sales",
        "Purch",
        "Invent",
        "Payment",
        "Bank",
        "FixedAssets",
        "Budget",
    ),
    "LedgerJournalACType": ("Ledger", "Cust", "Vend", "Project", "FixedAssets", "Bank"),
    "LedgerJournalType": ("Daily", "Budget", "Allocation", "Payment", "Approval"),
    "BudgetType": ("Expense", "Revenue"),
    "BudgetTransactionStatus": ("Draft", "Completed"),
    "BatchStatus": (
        "Hold",
        "Waiting",
        "Executing",
        "Error",
        "Finished",
        "Ready",
        "NotRun",
        "Cancelling",
        "Canceled",
        "Scheduled",
    ),
}


@dataclass(frozen=True)
class EntityDef:
    set_name: str
    type_name: str
    keys: tuple[str, ...]
    props: dict[str, str]  # name -> Edm type or enum type name
    company_scoped: bool = field(default=False)

    @property
    def enum_props(self) -> dict[str, str]:
        return {k: v for k, v in self.props.items() if v in ENUMS}


def _d(set_name: str, type_name: str, keys: tuple[str, ...], props: dict[str, str]) -> EntityDef:
    full = dict(props)
    return EntityDef(set_name, type_name, keys, full, company_scoped="dataAreaId" in full)


MAIN_ACCOUNTS = _d(
    "MainAccounts",
    "MainAccount",
    ("ChartOfAccounts", "MainAccountId"),
    {
        "ChartOfAccounts": S,
        "MainAccountId": S,
        "Name": S,
        "MainAccountType": "DimensionLedgerAccountType",
        "MainAccountCategory": S,
        "AccountCategoryDescription": S,
        "IsSuspended": "NoYes",
        "ActiveFrom": DTO,
        "ActiveTo": DTO,
        "DoNotAllowManualEntry": "NoYes",
        "DebitCreditRequirement": "DebCredProposal",
        "PostingType": "LedgerPostingType",
        "ValidatePostingType": "NoYes",  # enum type UNCONFIRMED (dynamics-fo.md names the field only)
        "MainAccountRecId": I64,
        "ChartOfAccountsRecId": I64,
        "ParentMainAccountId": S,
        "DefaultCurrency": S,
    },
)
DIMENSION_ATTRIBUTES = _d(
    "DimensionAttributes",
    "DimensionAttribute",
    ("DimensionName",),
    {
        "DimensionName": S,
        "ReportColumnName": S,
        "UseValuesFrom": S,
        "DimensionValueMask": S,
        "CopyValuesOnCreate": "NoYes",
    },
)
FINANCIAL_DIMENSION_VALUES = _d(
    "FinancialDimensionValues",
    "FinancialDimensionValue",
    ("FinancialDimension", "LegalEntityId", "DimensionValue"),
    {
        "FinancialDimension": S,
        "LegalEntityId": S,
        "DimensionValue": S,
        "Description": S,
        "IsSuspended": "NoYes",
        "IsBlockedForManualEntry": "NoYes",
        "IsTotal": "NoYes",
        "ActiveFrom": DTO,
        "ActiveTo": DTO,
        "GroupDimension": S,
        "Owner": S,
    },
)
LEGAL_ENTITIES = _d("LegalEntities", "LegalEntity", ("LegalEntityId",), {"LegalEntityId": S, "Name": S})
JOURNAL_NAMES = _d(
    "JournalNames",
    "JournalName",
    ("dataAreaId", "Name"),
    {"dataAreaId": S, "Name": S, "Description": S, "JournalType": "LedgerJournalType"},
)
DIMENSION_FORMATS = _d(
    "DimensionIntegrationFormats",
    "DimensionIntegrationFormat",
    ("DimensionFormatName", "DimensionFormatType"),
    {
        "DimensionFormatName": S,
        "DimensionFormatType": "DimensionHierarchyType",
        "FinancialDimensionFormat": S,
        "IsActive": "NoYes",
    },
)
DIMENSION_PARAMETERS = _d(
    "DimensionParameters",
    "DimensionParameter",
    ("Key",),
    {"Key": I32, "DimensionSegmentDelimiter": "DimensionSegmentDelimiter"},
)
GL_HEADERS = _d(
    "GeneralJournalEntryBiEntities",
    "GeneralJournalEntryBiEntity",
    ("JournalNumber", "FiscalCalendarYear", "Ledger"),
    {
        "JournalNumber": S,
        "FiscalCalendarYear": I64,
        "Ledger": I64,
        "AccountingDate": DTO,
        "DocumentDate": DTO,
        "DocumentNumber": S,
        "JournalCategory": "LedgerTransType",
        "PostingLayer": "CurrentOperationsTax",
        "SubledgerVoucher": S,
        "SubledgerVoucherDataAreaId": S,
        "LedgerPostingJournal": S,
        "LedgerPostingJournalDataAreaId": S,
        "FiscalCalendarPeriod": I64,
        "SourceKey": I64,
        "CreatedOn": DTO,
        "AcknowledgementDate": DTO,
    },
)
DIMENSION_COMBINATIONS = _d(
    "DimensionCombinations",
    "DimensionCombination",
    ("RecordId",),
    {"RecordId": I64, "DisplayValue": S, "MainAccount": S, "AccountStructure": S, "AccountValue": S},
)
GL_LINES = _d(
    "GeneralJournalAccountEntryBiEntities",
    "GeneralJournalAccountEntryBiEntity",
    ("SourceKey",),
    {
        "SourceKey": I64,
        "GeneralJournalEntry": I64,
        "MainAccount": I64,
        "LedgerAccount": S,
        "LedgerDimensionValuesJson": S,
        "TransactionCurrencyCode": S,
        "TransactionCurrencyAmount": DEC,
        "AccountingCurrencyAmount": DEC,
        "ReportingCurrencyAmount": DEC,
        "PostingType": "LedgerPostingType",
        "IsCredit": "NoYes",
        "IsCorrection": "NoYes",
        "Text": S,
        "Quantity": DEC,
        "FinTag": I64,
        "PaymentReference": S,
        "HistoricalExchangeRateDate": DTO,
        "SysRecVersion": I32,
    },
)
# Only when the "customer" published GeneralJournalAccountEntryEntity by extension (off by default, §0.1).
GL_PUBLISHED = _d(
    "GeneralJournalAccountEntries",
    "GeneralJournalAccountEntry",
    ("GeneralJournalAccountEntryRecId",),
    {
        "GeneralJournalAccountEntryRecId": I64,
        "JournalNumber": S,
        "Voucher": S,
        "AccountingDate": DTO,
        "PostingLayer": "CurrentOperationsTax",
        "LedgerAccount": S,
        "AccountDisplayValue": S,
        "TransactionCurrencyCode": S,
        "TransactionCurrencyAmount": DEC,
        "AccountingCurrencyAmount": DEC,
        "ReportingCurrencyAmount": DEC,
        "Description": S,
        "PostingType": "LedgerPostingType",
        "IsCredit": "NoYes",
        "IsCorrection": "NoYes",
        "LedgerName": S,
        "DataArea": S,
        "FiscalCalendarPeriod": I64,
    },
)
_HEADER_PROPS = {
    "dataAreaId": S,
    "JournalBatchNumber": S,
    "JournalName": S,
    "Description": S,
    "PostingLayer": "CurrentOperationsTax",
    "IsPosted": "NoYes",
    "JournalTotalDebit": DEC,
    "JournalTotalCredit": DEC,
    "AccountingCurrency": S,
}
LINE_PROPS = {
    "dataAreaId": S,
    "JournalBatchNumber": S,
    "LineNumber": DEC,
    "AccountType": "LedgerJournalACType",
    "AccountDisplayValue": S,
    "OffsetAccountType": "LedgerJournalACType",
    "OffsetAccountDisplayValue": S,
    "DefaultDimensionDisplayValue": S,
    "OffsetDefaultDimensionDisplayValue": S,
    "FinTagDisplayValue": S,
    "TransDate": DTO,
    "Voucher": S,
    "Text": S,
    "DebitAmount": DEC,
    "CreditAmount": DEC,
    "CurrencyCode": S,
    "ExchRate": DEC,
    "ExchRateSecond": DEC,
    "ReportingCurrencyExchRate": DEC,
    "Quantity": DEC,
    "Document": S,
    "DocumentDate": DTO,
    "Invoice": S,
    "PostingProfile": S,
    "SalesTaxGroup": S,
    "Company": S,
    "OffsetCompany": S,
}
JOURNAL_LINES = _d(
    "LedgerJournalLines", "LedgerJournalLine", ("dataAreaId", "JournalBatchNumber", "LineNumber"), LINE_PROPS
)
BUDGET_HEADERS = _d(
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
        "BudgetType": "BudgetType",
        "Status": "BudgetTransactionStatus",
        "WorkflowStatus": S,
        "ReasonCode": S,
        "ReasonComment": S,
        "OneTimeRevision": "NoYes",
        "ExpenseBudgetTotal": DEC,
        "RevenueBudgetTotal": DEC,
    },
)
BUDGET_LINES = _d(
    "BudgetRegisterEntryLines",
    "BudgetRegisterEntryLine",
    ("dataAreaId", "LegalEntityId", "EntryNumber", "LineNumber"),
    {
        "dataAreaId": S,
        "LegalEntityId": S,
        "EntryNumber": S,
        "LineNumber": DEC,
        "DimensionDisplayValue": S,
        "DimensionAccountStructure": S,
        "EntryDate": DTO,
        "CurrencyCode": S,
        "TransactionCurrencyAmount": DEC,
        "AccountingCurrencyAmount": DEC,
        "AmountType": "BudgetType",
        "Quantity": DEC,
        "Price": DEC,
        "Comment": S,
        "IncludeInCashFlowForecast": "NoYes",
        "BudgetCheckResult": S,
    },
)
BATCH_JOBS = _d(
    "BatchJobs",
    "BatchJob",
    ("BatchJobRecId",),
    {"BatchJobRecId": I64, "JobDescription": S, "Status": "BatchStatus"},
)


def journal_headers(with_integration_key: bool) -> EntityDef:
    props = dict(_HEADER_PROPS)
    if with_integration_key:
        props["IntegrationKey"] = S
    return _d("LedgerJournalHeaders", "LedgerJournalHeader", ("dataAreaId", "JournalBatchNumber"), props)


# Ledgers and fiscal calendars (dynamics-budget-fiscal.md §C1, §D4); rows come from books.py.
LEDGERS = _d(
    "Ledgers",
    "Ledger",
    ("LegalEntityId",),
    {
        "LegalEntityId": S,
        "Name": S,
        "Description": S,
        "LedgerRecId": I64,
        "ChartOfAccounts": S,
        "FiscalCalendar": S,
        "AccountingCurrency": S,
        "ReportingCurrency": S,
        "ExchangeRateType": S,
        "ReportingCurrencyExchangeRateType": S,
        "BudgetExchangeRateType": S,
        "IsBudgetControlEnabled": "NoYes",
    },
)
FISCAL_CALENDARS = _d(
    "FiscalCalendarsEntity", "FiscalCalendarEntity", ("CalendarId",), {"CalendarId": S, "Description": S}
)
FISCAL_YEARS = _d(
    "FiscalCalendarYears",
    "FiscalCalendarYear",
    ("Calendar", "FiscalYear"),
    {"Calendar": S, "FiscalYear": S, "StartDate": DTO, "EndDate": DTO},
)
FISCAL_PERIODS = _d(
    "FiscalPeriods",
    "FiscalPeriod",
    ("Calendar", "FiscalYear", "StartDate", "EndDate", "PeriodName"),
    {
        "Calendar": S,
        "FiscalYear": S,
        "StartDate": DTO,
        "EndDate": DTO,
        "PeriodName": S,
        "Type": "FiscalPeriodType",
        "ShortName": S,
        "Month": I32,
        "Quarter": I32,
        "Days": I32,
    },
)
FISCAL_PERIOD_BI = _d(
    "FiscalCalendarPeriodBiEntities",
    "FiscalCalendarPeriodBiEntity",
    ("Name",),
    {
        "Name": S,
        "SourceKey": I64,
        "FiscalCalendarYear": I64,
        "FiscalCalendar": I64,
        "Type": "FiscalPeriodType",
        "StartDate": DTO,
        "EndDate": DTO,
    },
)


def entity_defs(
    *,
    publish_gl_entity: bool,
    integration_key: bool,
    bi_entities: bool = True,
    ledger_dimension_json: bool = True,
) -> dict[str, EntityDef]:
    defs = [
        LEDGERS,
        FISCAL_CALENDARS,
        FISCAL_YEARS,
        FISCAL_PERIODS,
        MAIN_ACCOUNTS,
        DIMENSION_ATTRIBUTES,
        FINANCIAL_DIMENSION_VALUES,
        LEGAL_ENTITIES,
        JOURNAL_NAMES,
        DIMENSION_FORMATS,
        DIMENSION_PARAMETERS,
        DIMENSION_COMBINATIONS,
        journal_headers(integration_key),
        JOURNAL_LINES,
        BUDGET_HEADERS,
        BUDGET_LINES,
        BATCH_JOBS,
    ]
    if bi_entities:
        lines = GL_LINES
        if not ledger_dimension_json:  # an F&O version whose BI line entity has no LedgerDimensionValuesJson
            props = {k: v for k, v in GL_LINES.props.items() if k != "LedgerDimensionValuesJson"}
            lines = _d(GL_LINES.set_name, GL_LINES.type_name, GL_LINES.keys, props)
        defs += [GL_HEADERS, lines, FISCAL_PERIOD_BI]
    if publish_gl_entity:
        defs.append(GL_PUBLISHED)
    return {d.set_name: d for d in defs}


def csdl(defs: dict[str, EntityDef]) -> str:
    """The CSDL document (OData v4 edmx) for these entity sets, enum types and the batch-job action."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        f'<Schema Namespace="{NS}" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
    ]
    for name, members in ENUMS.items():
        out.append(f'<EnumType Name="{name}">')
        out.extend(f'<Member Name="{m}" Value="{i}"/>' for i, m in enumerate(members))
        out.append("</EnumType>")
    for d in defs.values():
        out.append(f'<EntityType Name="{d.type_name}">')
        out.append("<Key>" + "".join(f'<PropertyRef Name="{k}"/>' for k in d.keys) + "</Key>")
        for prop, t in d.props.items():
            full = f"{NS}.{t}" if t in ENUMS else t
            nullable = ' Nullable="false"' if prop in d.keys else ""
            scale = ' Scale="Variable"' if t == DEC else ""
            out.append(f"<Property Name={quoteattr(prop)} Type={quoteattr(full)}{nullable}{scale}/>")
        out.append("</EntityType>")
    if "BatchJobs" in defs:
        out.append(
            '<Action Name="SetBatchJobToWaiting" IsBound="true">'
            f'<Parameter Name="_bindingParameter" Type="Collection({NS}.BatchJob)"/>'
            '<Parameter Name="batchJobId" Type="Edm.Int64" Nullable="false"/></Action>'
        )
    out.append('<EntityContainer Name="Resources">')
    out.extend(f'<EntitySet Name="{d.set_name}" EntityType="{NS}.{d.type_name}"/>' for d in defs.values())
    out.append("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>")
    return "\n".join(out)

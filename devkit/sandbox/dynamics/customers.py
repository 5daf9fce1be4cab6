"""Other customers' F&O setups for the sandbox: legal entity ids, a chart of accounts with its own numbering
and account types, and dimension values, in place of the demo manufacturer of :mod:`.seed`.

F&O has one data shape for every customer (dynamics-fo.md): ``dataAreaId`` is a company id of up to four
characters (``USMF``, ``1000``), main account ids are free-form per chart of accounts, MainAccountType is the
``DimensionLedgerAccountType`` enum, dimension values are free-form codes. Only the contents differ, so a
customer is a set of seed tables; :func:`seeded` installs them for the sandboxes started inside it (the
sandbox reads the seed tables when it builds its data and while it generates GL) and restores the demo's
afterwards::

    with seeded(NORTHWIND):
        fo = dynamics_cli.start(SandboxConfig(default_company=NORTHWIND.companies[0], ...))

The special vouchers of ``SandboxConfig(books=True)`` (opening balances, intercompany charges) are written for
the demo's companies and accounts; a customer seed is used with ``books=False``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from devkit.sandbox.dynamics import books, seed
from devkit.sandbox.dynamics.seed import MainAccountSeed

AccountGroup = tuple[int, int, str, str, str]  # first code, how many (step 10), name stem, type, category


@dataclass(frozen=True)
class Customer:
    """One customer's F&O master data (the GL generator posts over it like over the demo's)."""

    name: str
    companies: tuple[str, ...]
    company_names: dict[str, str]
    accounting_currency: dict[str, str]
    account_groups: tuple[AccountGroup, ...]
    business_units: tuple[tuple[str, str], ...]
    cost_centers: tuple[tuple[str, str], ...]
    departments: tuple[tuple[str, str], ...]
    suspended_accounts: frozenset[str] = frozenset()
    recid_base: int = 22575420000

    def __post_init__(self) -> None:
        bad = [c for c in self.companies if not (1 <= len(c) <= 4 and c.isalnum() and c == c.upper())]
        if bad:
            raise ValueError(f"F&O company ids (dataAreaId) are 1-4 upper-case letters or digits, got {bad}")
        for values in (self.business_units, self.cost_centers, self.departments):
            if len(values) < 2:
                raise ValueError("each dimension needs at least one used value and one unused value")

    def main_accounts(self) -> tuple[MainAccountSeed, ...]:
        out: list[MainAccountSeed] = []
        recid = self.recid_base
        for first, count, stem, kind, category in self.account_groups:
            for i in range(count):
                recid += 1
                out.append(MainAccountSeed(str(first + 10 * i), f"{stem} {i + 1}", kind, category, recid))
        codes = [a.account for a in out]
        if len(set(codes)) != len(codes):
            raise ValueError(f"customer {self.name!r}: account groups overlap")
        return tuple(out)


# A distributor with numeric company ids, a four-digit chart (1xxx assets ... 8xxx financial costs) and
# cost centres that its planning model merges into fewer members.
NORTHWIND = Customer(
    name="northwind",
    companies=("1000", "2000"),
    company_names={"1000": "Northwind Traders Inc.", "2000": "Northwind Traders GmbH"},
    accounting_currency={"1000": "USD", "2000": "EUR"},
    account_groups=(
        (1000, 6, "Cash at bank", "Asset", "CASH"),
        (1200, 5, "Trade receivables", "Asset", "AR"),
        (1500, 4, "Equipment", "Asset", "FA"),
        (2000, 5, "Trade payables", "Liability", "AP"),
        (2400, 4, "Accruals", "Liability", "ACCRUED"),
        (3000, 2, "Share capital", "Equity", "EQUITY"),
        (4000, 6, "Product sales", "Revenue", "SALES"),
        (4500, 3, "Other operating income", "Revenue", "OTHERINC"),
        (5000, 5, "Cost of sales", "Expense", "COGS"),
        (6000, 6, "Personnel", "Expense", "PAYROLL"),
        (6500, 4, "Premises", "Expense", "OPEX"),
        (7000, 4, "Travel and vehicles", "Expense", "OPEX"),
        (8000, 3, "Interest", "Expense", "FIN"),
    ),
    business_units=(("BU1", "North"), ("BU2", "South"), ("BU9", "Closed region (unused)")),
    cost_centers=(
        ("CC100", "Administration"),
        ("CC110", "Finance"),
        ("CC200", "Sales field"),
        ("CC210", "Sales office"),
        ("CC300", "Warehouse"),
        ("CC310", "Transport"),
        ("CC900", "Project (unused)"),
    ),
    departments=(("D10", "Management"), ("D20", "Operations"), ("D30", "Commercial"), ("D99", "Reserved")),
    suspended_accounts=frozenset({"1050"}),
)

CUSTOMERS = {"northwind": NORTHWIND}  # ``d365-anaplan sandbox dynamics --customer NAME``


@contextmanager
def seeded(customer: Customer) -> Iterator[Customer]:
    """Install ``customer``'s tables as the sandbox seed; the demo's come back when the block ends."""
    accounts = customer.main_accounts()
    tables = {
        "BusinessUnit": customer.business_units,
        "CostCenter": customer.cost_centers,
        "Department": customer.departments,
    }
    replaced = {
        "COMPANIES": customer.companies,
        "COMPANY_NAMES": dict(customer.company_names),
        "ACCOUNTING_CURRENCY": dict(customer.accounting_currency),
        "DEFAULT_COMPANY": customer.companies[0],
        "BUSINESS_UNITS": customer.business_units,
        "COST_CENTERS": customer.cost_centers,
        "DEPARTMENTS": customer.departments,
        "_DIMENSION_TABLE": tables,
        "_UNUSED": dict.fromkeys(tables, 1),
        "MAIN_ACCOUNTS": accounts,
        "_BY_CODE": {a.account: a for a in accounts},
        "SUSPENDED_ACCOUNTS": customer.suspended_accounts,
        "LEDGER_RECIDS": {c: 5637146000 + i for i, c in enumerate(customer.companies, start=1)},
        "_PL_ACCOUNTS": tuple(a for a in accounts if not a.is_balance_sheet),
        "_BS_ACCOUNTS": tuple(
            a for a in accounts if a.is_balance_sheet and a.account not in customer.suspended_accounts
        ),
        "_USED_BU": list(customer.business_units[:-1]),
        "_USED_CC": list(customer.cost_centers[:-1]),
        "_USED_DEP": list(customer.departments[:-1]),
    }
    saved = {name: getattr(seed, name) for name in replaced}
    saved_ledgers = books.LEDGER_NAMES
    try:
        for name, value in replaced.items():
            setattr(seed, name, value)
        books.LEDGER_NAMES = {c: c for c in customer.companies}
        yield customer
    finally:
        for name, value in saved.items():
            setattr(seed, name, value)
        books.LEDGER_NAMES = saved_ledgers

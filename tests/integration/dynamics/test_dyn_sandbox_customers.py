"""The F&O sandbox seeded as another customer (devkit/sandbox/dynamics/customers.py) answers like F&O does,
read through the connector's own reader: its legal entities, its chart of accounts with their types, its
dimension values, and balanced GL on them; the demo's data comes back afterwards."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from d365_anaplan.dynamics.client import connect
from d365_anaplan.secrets import SecretResolver
from devkit.sandbox.dynamics import seed
from devkit.sandbox.dynamics.app import SandboxConfig
from devkit.sandbox.dynamics.cli import running
from devkit.sandbox.dynamics.customers import NORTHWIND, seeded
from devkit.sandbox.dynamics.testing import connection_config


def test_another_customer_is_served_through_the_real_reader() -> None:
    with seeded(NORTHWIND), running(SandboxConfig(gl_lines=300, months=2, default_company="1000")) as sb:
        conn = connect(connection_config(sb), SecretResolver(), reuse_tokens=False, sleep=lambda _s: None)
        reader = conn.reader
        assert {e.company for e in reader.legal_entities()} == {"1000", "2000"}
        accounts = {a.account: a.account_type for a in reader.main_accounts()}
        assert accounts == {a.account: a.account_type for a in NORTHWIND.main_accounts()}
        assert (
            accounts["4000"] == "Revenue"
            and accounts["2000"] == "Liability"
            and len(next(iter(accounts))) == 4
        )
        used = {v.value for v in reader.dimension_values("CostCenter").values}
        assert used == {code for code, _ in NORTHWIND.cost_centers[:-1]}, "the unused value is not returned"
        nets: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        companies = set()
        for company in NORTHWIND.companies:
            one = connect(connection_config(sb, companies=[company]), SecretResolver(), reuse_tokens=False,
                          sleep=lambda _s: None).reader  # fmt: skip
            lo, hi = one.window(company, date(2025, 1, 1), date(2025, 3, 1))
            for line in one.gl_lines(lo, hi):
                assert line.account in accounts
                companies.add(line.company)
                nets[(line.company, line.voucher)] += line.amount
        assert companies == {"1000", "2000"} and nets
        assert all(v == 0 for v in nets.values()), "every voucher balances"
    assert seed.COMPANIES == ("USMF", "DEMF") and seed.main_account("401100") is not None, "the demo is back"

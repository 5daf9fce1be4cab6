"""Dimensions by account structure, end to end (issue 11 item 4; dynamics-fo.md §2.3, §3).

The F&O sandbox publishes no ``LedgerDimensionValuesJson`` on its GL lines and shows each ledger account in its
own account structure's order (balance sheet MainAccount-BusinessUnit, P&L MainAccount-CostCenter-Department-
BusinessUnit), not in the integration format's (MainAccount-BusinessUnit-CostCenter-Department). Its
``DimensionCombinations`` names the structure of every combination; the connection gives each structure's order.
Expected cells come from the sandbox's own generator, never from the connector.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import anaplan_actuals, assert_failed_cleanly, clear_actuals, expected_actuals, manual

from devkit.engine import LocalEngine
from devkit.sandbox.dynamics import books
from devkit.stack import Stack, running

pytestmark = pytest.mark.integration

SANDBOX = {"ledger_account_order": "structure", "ledger_dimension_json": False}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=300, months=3, dynamics_kwargs=SANDBOX) as st:
        yield st


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[LocalEngine]:
    """One engine for the file: the connection with the structures' orders, and one named "unknown" without."""
    with LocalEngine(wait_scale=0.0) as eng:
        eng.install_connection(stack.connection())
        eng.install_connection(stack.connection(name="unknown", ledger={}))
        yield eng


def run(engine: LocalEngine, stack: Stack, connection: str) -> Any:
    clear_actuals(stack)
    return engine.run("ActualsFlow", {**manual(), "connection": connection}, timeout=180)


def test_the_sandbox_shows_accounts_in_their_structures_order(stack: Stack) -> None:
    fo = stack.dynamics.app
    assert "LedgerDimensionValuesJson" not in fo.defs["GeneralJournalAccountEntryBiEntities"].props
    shown = [r["LedgerAccount"] for v in range(8) for r in fo._line_rows(v)]
    assert any(s.count("-") == 1 for s in shown), "balance sheet: MainAccount-BusinessUnit"
    assert any(s.split("-")[1].startswith("OU_") for s in shown), "P&L: the cost centre second"
    combos = {r["DisplayValue"]: r["AccountStructure"] for r in fo._combination_rows()}
    assert set(shown) <= set(combos) and set(combos.values()) == set(books.ACCOUNT_STRUCTURES)


def test_two_structures_split_into_the_right_dimension_columns_to_the_cent(
    engine: LocalEngine, stack: Stack
) -> None:
    result = run(engine, stack, "demo")
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
    want = expected_actuals(stack)
    assert want, "the sandbox posted nothing in the window: the test would prove nothing"
    assert anaplan_actuals(stack) == want  # every cell: company, account, each dimension column, period
    assert stack.dynamics.app.counters["GET /data/DimensionCombinations"] >= 1


def test_a_structure_whose_order_is_unknown_is_refused_naming_the_account(
    engine: LocalEngine, stack: Stack
) -> None:
    result = run(engine, stack, "unknown")
    text = assert_failed_cleanly(
        engine, stack, result, "ConfigError", "is in account structure", "ledger.account_structures"
    )
    assert "account '" in text and "display_value_order: format" in text
    assert anaplan_actuals(stack) == {}, "nothing is loaded"


@pytest.mark.parametrize("connection", ["demo", "unknown"])
def test_check_samples_lines_and_shows_the_structure_used(stack: Stack, connection: str) -> None:
    """``check`` predicts the run: how sampled lines split (with the structure used), or the same refusal."""
    from d365_anaplan.config import parse_connection
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.secrets import SecretResolver
    from devkit.commands.check import Report, _check_ledger

    overrides = {} if connection == "demo" else {"name": "unknown", "ledger": {}}
    cfg = parse_connection(stack.connection(**overrides))
    report = Report()
    _check_ledger(
        cfg, connect(cfg, SecretResolver(allow_local=True), reuse_tokens=False).reader, report, "F&O"
    )
    (row,) = [ch for ch in report.checks if ch.name == "GL lines split into columns"]
    if connection == "demo":
        assert row.status == "PASS", row
        assert re.search(r"split from '[^']+' in account structure 'Manufacturing (P&L|B/S)'", row.detail)
        assert re.search(r"USMF 2025-01-\d\d \d+ BusinessUnit=\S+ CostCenter=\S+ Department=\S+", row.detail)
    else:
        assert row.status == "FAIL" and "is in account structure" in row.detail, row
        assert "ledger.account_structures" in row.remedy

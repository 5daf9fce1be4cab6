"""``check`` predicts where plans land: the journal name's posting layer (ledger journals), the budget models
and codes of every export (budget register), against the F&O sandbox."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from cli_support import Cli, write_config

pytestmark = pytest.mark.integration


def test_check_ledger_journal_needs_the_journal_names_layer(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = stack.ledger_journal_connection()
    ok = cli("check", "--only", "dynamics", "--config", str(write_config(tmp_path / "ok.yaml", cfg)))
    assert re.search(r"PASS\s+F&O\s+journal name posting layer", ok.stdout), ok.stdout
    cfg["dynamics"]["journal"]["posting_layer"] = "CustomLayer2"
    bad = cli("check", "--only", "dynamics", "--config", str(write_config(tmp_path / "bad.yaml", cfg)))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert re.search(r"FAIL\s+F&O\s+journal name posting layer", bad.stdout)
    assert "'Budget' in USMF: CustomLayer1" in bad.stdout


def test_check_budget_register_needs_models_and_typed_codes(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = copy.deepcopy(stack.connection())
    exports = cfg["mapping"]["plans"]["exports"]
    exports[0]["revision_budget_code"] = "Original"  # an Original budget code used for revisions
    exports[1]["budget_model"] = "FC2099"
    result = cli("check", "--only", "dynamics", "--config", str(write_config(tmp_path / "c.yaml", cfg)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"FAIL\s+F&O\s+budget models and codes", result.stdout)
    assert "budget model 'FC2099' missing in USMF" in result.stdout
    assert "budget code 'Original' in USMF: OriginalBudget, not Revision" in result.stdout
    assert re.search(r"PASS\s+F&O\s+budget register dimension format", result.stdout)


def test_check_finds_how_fo_shows_revenue_against_the_raw_entity(
    cli: Cli, stack: Any, tmp_path: Path
) -> None:
    """After a revenue line of the connector exists, check compares it with BudgetTransactionLineBiEntities and
    fails when dynamics.journal.budget_revenue_read_sign does not match."""
    from datetime import date
    from decimal import Decimal

    from d365_anaplan.config import parse_connection
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.dynamics.journal_records import EntryHeader, JournalLineInput
    from d365_anaplan.flows.journal_keys import export_tag
    from d365_anaplan.secrets import SecretResolver

    cfg = copy.deepcopy(stack.connection())
    conn = connect(parse_connection(cfg), SecretResolver(allow_local=True), reuse_tokens=False)
    tag = export_tag(cfg["name"], cfg["mapping"]["plans"]["exports"][0]["export_action"])
    line = JournalLineInput("401100", {}, date(2025, 1, 1), Decimal("-10.00"), "V", currency="USD")
    conn.writer.write("USMF", [line], EntryHeader(f"{tag}-CHECK001", f"{tag}-CHECK001 Budget check test"))
    try:
        cfg["dynamics"]["journal"]["budget_revenue_read_sign"] = "stored"
        result = cli("check", "--only", "dynamics", "--config", str(write_config(tmp_path / "c.yaml", cfg)))
        assert re.search(r"FAIL\s+F&O\s+budget revenue sign \(raw entity\)", result.stdout), result.stdout
        assert "shows revenue as_entered" in result.stdout
        assert re.search(
            r"PASS\s+F&O\s+plan entries status\s+\d+ of \d+ entries pending completion", result.stdout
        )
    finally:
        app = stack.dynamics.app
        with app.lock:
            app.budget_headers.clear()
            app.budget_lines.clear()

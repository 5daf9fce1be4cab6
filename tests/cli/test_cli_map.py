"""``d365-anaplan map propose`` and ``map explain`` as a user runs them, against the demo's sandboxes: the draft
reproduces the mapping the demo's connection was written with by hand; explain names a GL line's file row
and cell, and an export row's budget register line."""

from __future__ import annotations

import ast
import calendar
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_support import Cli, write_config

from devkit.sandbox.customers import partial_connection

pytestmark = pytest.mark.integration


def test_propose_writes_the_demos_mapping_with_reasons(cli: Cli, stack: Any, tmp_path: Path) -> None:
    partial = write_config(tmp_path / "partial.yaml", partial_connection(stack))
    out = tmp_path / "draft.yaml"
    result = cli("map", "propose", "--config", str(partial), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text(encoding="utf-8")
    reasons = [line for line in text.splitlines() if line.startswith("#   mapping.")]
    assert reasons and all(re.search(r"\[(high|medium|low)\] \S", line) for line in reasons), reasons[:3]
    draft = yaml.safe_load(text)["mapping"]
    hand = stack.connection()["mapping"]
    assert draft["accounts"] == hand["accounts"]
    assert draft["dimensions"] == hand["dimensions"]
    assert draft["actuals"] == hand["actuals"]
    keys = ("export_action", "version", "budget_model", "budget_code", "revision_budget_code")
    assert [{k: e.get(k) for k in keys} for e in draft["plans"]["exports"]] == [
        {k: e.get(k) for k in keys} for e in hand["plans"]["exports"]
    ]
    check = cli("check", "--only", "anaplan", "--config", str(out))
    assert check.returncode == 0, check.stdout + check.stderr


def test_explain_names_the_file_row_and_cell_of_a_gl_line(cli: Cli, stack: Any, config_file: Path) -> None:
    gl = stack.dynamics.app.gl
    head = gl.voucher(0)
    line = gl.voucher_lines(0)[0]
    period = f"{head.accounting_date:%Y-%m}"
    result = cli("map", "explain", "--config", str(config_file), "--line", head.voucher, "--period", period)
    assert result.returncode == 0, result.stdout + result.stderr
    label = f"{head.accounting_date:%b %y}"
    assert f"Anaplan cell: Entity={head.company}, Account={line.account.account}" in result.stdout, (
        result.stdout
    )
    assert f"Period={label}" in result.stdout and "Version=Actual" in result.stdout
    missing = cli("map", "explain", "--config", str(config_file), "--line", "NO-SUCH", "--period", period)
    assert missing.returncode == 1 and "no GL line or voucher 'NO-SUCH'" in missing.stderr


def test_explain_names_the_budget_line_of_an_export_row(cli: Cli, config_file: Path) -> None:
    result = cli("map", "explain", "--config", str(config_file), "--flow", "plans", "--line",
                 "Export Approved Budget:2")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    first, *lines = result.stdout.strip().splitlines()
    assert first.startswith("export 'Export Approved Budget' data row 2: ")
    entity, account, period, _version, amount, approval = ast.literal_eval(first.split(": ", 1)[1])
    assert approval == "Approved", "the seed's second row is approved: the test would prove nothing"
    mon, yy = period.split(" ")
    month = date(2000 + int(yy), list(calendar.month_abbr).index(mon), 1)
    assert lines == [f"  -> budget register entry FY2025 Original company {entity}: {account}--- {month} {amount} "
                     f"{'USD' if entity == 'USMF' else 'EUR'}"], result.stdout  # fmt: skip
    usage = cli("map", "explain", "--config", str(config_file), "--flow", "plans", "--line", "no-row")
    assert usage.returncode == 2 and "EXPORT:ROW" in usage.stderr

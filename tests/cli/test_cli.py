"""Every ``d365-anaplan`` command, run as a subprocess against both sandboxes (started in this process)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from cli_support import Cli, write_config

from devkit.cli import COMMANDS

pytestmark = pytest.mark.integration

RUN_LINE = re.compile(r"^(actuals|plans) (?:run|replay of \S+) ([0-9a-f-]{36}) ", re.M)


def _run_id(output: str) -> str:
    m = RUN_LINE.search(output)
    assert m, output
    return m.group(2)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help(cli: Cli, command: str) -> None:
    result = cli(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: d365-anaplan")


def test_no_command_is_a_usage_error(cli: Cli) -> None:
    assert cli().returncode == 2


# --- check -----------------------------------------------------------------------------------------------


def test_check_passes(cli: Cli, config_file: Path) -> None:
    result = cli("check", "--config", str(config_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
    for what in ("import 'Load GL Actuals'", "export 'Export Approved Budget'", "$metadata (GL route)",
                 "ledger dimension format", "budget models and codes", "budget register dimension format",
                 "plan entries status", "budget revenue sign (raw entity)", "ledgers and fiscal calendars",
                 "GL lines split into columns"):  # fmt: skip
        assert re.search(rf"PASS\s+\S+\s+{re.escape(what)}", result.stdout), what
    assert re.search(r"USMF 2025-01-\d\d \d+ BusinessUnit=\S+ CostCenter=\S+ Department=\S+", result.stdout)


def test_check_wrong_password_fails_with_a_remedy(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = stack.connection()
    cfg["anaplan"]["auth"]["password"] = "not-the-password"
    result = cli("check", "--config", str(write_config(tmp_path / "c.yaml", cfg)))
    assert result.returncode == 4, result.stdout + result.stderr  # credentials refused
    assert re.search(r"FAIL\s+Anaplan\s+authenticate", result.stdout)
    assert "not-the-password" not in result.stdout + result.stderr
    assert "remedies:" in result.stdout and "anaplan.auth.password" in result.stdout
    assert re.search(r"PASS\s+F&O\s+authenticate", result.stdout)  # the other side is still checked


def test_check_missing_action_fails_with_a_remedy(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = copy.deepcopy(stack.connection())
    cfg["mapping"]["plans"]["exports"][0]["export_action"] = "Export Approved Budget v2"
    result = cli("check", "--config", str(write_config(tmp_path / "c.yaml", cfg)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"FAIL\s+Anaplan\s+export 'Export Approved Budget v2'", result.stdout)
    assert "model builder" in result.stdout
    assert "1 failed" in result.stdout


def test_check_bad_config_is_a_usage_error(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = stack.connection()
    cfg["dynamics"]["page_size"] = 50_000
    result = cli("check", "--config", str(write_config(tmp_path / "c.yaml", cfg)))
    assert result.returncode == 2
    assert "dynamics.page_size" in result.stderr
    assert cli("check", "--config", str(tmp_path / "missing.yaml")).returncode == 2


def test_check_unreachable(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = stack.connection()
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:9", str(cfg))
    cfg = eval(text)  # noqa: S307 - our own dict repr with the ports swapped
    result = cli("check", "--config", str(write_config(tmp_path / "c.yaml", cfg)))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the host did not answer" in result.stdout


# --- run, audit, replay ----------------------------------------------------------------------------------


def test_run_usage_errors(cli: Cli, config_file: Path, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    assert cli("run", "actuals", "--config", str(config_file), "--from", "2025-13", *state).returncode == 2
    assert cli("run", "actuals", "--config", str(config_file), "--from", "2025-05", "--to", "2025-01",
               *state).returncode == 2  # fmt: skip
    assert cli("run", "budget", "--config", str(config_file)).returncode == 2
    assert cli("audit", "nope", *state).returncode == 2  # no state yet


def test_run_audit_replay(cli: Cli, stack: Any, config_file: Path, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    cfg = ["--config", str(config_file)]

    # plans, dry run: nothing reaches F&O, the planned journals are shown
    before = len(stack.dynamics.app.journal_headers) + len(stack.dynamics.app.budget_headers)
    dry = cli("run", "plans", *cfg, "--from", "2025-01", "--to", "2025-12", "--dry-run", *state)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: nothing written" in dry.stdout
    assert "journals planned (not written)" in dry.stdout
    assert re.search(
        r"differences to what F&O holds \(would write\): [\d,]+ cell\(s\), [\d,]+ of them revisions",
        dry.stdout,
    )
    assert re.search(r"F&O holds\s+approved\s+difference", dry.stdout), dry.stdout
    assert "PlanJournals" in dry.stdout  # progress lines
    assert len(stack.dynamics.app.journal_headers) + len(stack.dynamics.app.budget_headers) == before

    # actuals for real
    done = cli("run", "actuals", *cfg, "--from", "2025-01", "--to", "2025-12", *state)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = _run_id(done.stdout)
    assert "ExtractGLSlice" in done.stdout and "SUCCEEDED" in done.stdout
    assert re.search(r"Anaplan import: [\d,]+ rows ok, 0 failed", done.stdout)
    assert "company/account/period totals match" in done.stdout

    # audit in a later process: the list, then the run's ledger
    listing = cli("audit", *state)
    assert listing.returncode == 0, listing.stderr
    assert run_id in listing.stdout and "plans" in listing.stdout
    audit = cli("audit", run_id[:8], *state)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    for section in ("steps (", "files (", "Anaplan tasks (", "F&O journals (", "failed journal lines ("):
        assert section in audit.stdout
    assert "ExtractGL:USMF" in audit.stdout and "actuals/actuals.csv" in audit.stdout
    assert cli("audit", "ffffffff", *state).returncode == 2

    # replay in another process, from the staged files of the first run
    replay = cli("replay", run_id, *cfg, *state)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"replay of {run_id}" in replay.stdout
    assert "ReplayStaged" in replay.stdout
    new_id = _run_id(replay.stdout)
    listing = cli("audit", *state)
    assert re.search(rf"{new_id}\s+demo\s+actuals\s+replay\s+SUCCEEDED", listing.stdout), listing.stdout


# --- demo ------------------------------------------------------------------------------------------------


def test_demo_small(cli: Cli, tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.html"
    result = cli(
        "demo", "--gl-lines", "1500", "--report", str(report), "--state-dir", str(tmp_path / "state")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "F&O trial balance vs Anaplan actuals: RECONCILED" in out
    assert "F&O cumulative plan per version vs Anaplan approved plan: RECONCILED" in out
    assert re.search(r"Dynamics 365 F&O\s+\d+\s+1\s", out)  # requests, one token minted
    assert "Demo finished in" in out and str(report) in out
    html = report.read_text(encoding="utf-8")
    assert "<svg" in html and "Actual (Anaplan)" in html
    assert "F&amp;O trial balance vs Anaplan actuals" in html and "RECONCILED" in html
    # budget and forecast land in the budget register, each under its own model and codes
    assert "<h2>F&amp;O cumulative plan per version vs Anaplan approved plan</h2>" in html
    assert "budget register FY2025, codes Original/Revision" in html
    assert "budget register FC2025, codes FcOrig/FcRev" in html


def test_failed_run_exit_codes_and_audit(cli: Cli, stack: Any, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    cfg = copy.deepcopy(stack.connection())
    cfg["mapping"]["actuals"]["import_action"] = "Load GL Actuals v2"
    bad = cli("run", "actuals", "--config", str(write_config(tmp_path / "c.yaml", cfg)), "--from", "2025-01",
              "--to", "2025-01", "--quiet", *state)  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert (
        "FAILED after" in bad.stdout
        and "AnaplanNotFound" in bad.stdout
        and "Load GL Actuals v2" in bad.stdout
    )
    assert "FailureEventException" not in bad.stderr  # no interpreter noise
    run_id = _run_id(bad.stdout)
    audit = cli("audit", run_id, *state)
    assert audit.returncode == 1
    assert "status FAILED" in audit.stdout and "cause: AnaplanNotFound" in audit.stdout

    cfg = stack.connection()
    cfg["anaplan"]["auth"]["password"] = "not-the-password"
    refused = cli("run", "plans", "--config", str(write_config(tmp_path / "p.yaml", cfg)), "--quiet", *state)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "AnaplanAuthError" in refused.stdout and "not-the-password" not in refused.stdout + refused.stderr

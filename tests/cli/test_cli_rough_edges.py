"""Issue 13 item 5, the rough edges a new user hits, each through the real ``d365-anaplan`` subprocess against
both sandboxes: one exit-code table, the same remedies from ``run`` as from ``check``, clear messages for
credential references, the period window printed and recorded, dry-run wording, replays of dry runs, the
``audit`` fixes, and Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import ROOT, Cli, write_config

pytestmark = pytest.mark.integration

RUN_LINE = re.compile(r"^(actuals|plans) (?:run|replay of \S+) ([0-9a-f-]{36}) ", re.M)


def _run_id(output: str) -> str:
    m = RUN_LINE.search(output)
    assert m, output
    return m.group(2)


def _remedy_lines(text: str) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.strip().startswith(("- ", "remedy:"))
    ]


# --- exit codes and remedies ---------------------------------------------------------------------------------


def test_refused_credentials_exit_4_from_check_and_run_with_the_same_remedy(
    cli: Cli, stack: Any, tmp_path: Path
) -> None:
    cfg = stack.connection()
    cfg["anaplan"]["auth"]["password"] = "not-the-password"
    path = str(write_config(tmp_path / "c.yaml", cfg))
    check = cli("check", "--config", path, "--only", "anaplan")
    assert check.returncode == 4, check.stdout + check.stderr
    run = cli("run", "plans", "--config", path, "--from", "2025-01", "--to", "2025-01", "--quiet",
              "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert run.returncode == 4, run.stdout + run.stderr
    check_remedy = next(line for line in check.stdout.splitlines() if "Anaplan authenticate:" in line)
    remedy = check_remedy.split("authenticate:", 1)[1].strip()
    assert f"remedy: {remedy}" in run.stdout, run.stdout
    assert "not-the-password" not in check.stdout + check.stderr + run.stdout + run.stderr


def test_unset_env_secret_is_a_configuration_error(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = stack.connection()
    cfg["anaplan"]["auth"]["password"] = "env:D365_ANAPLAN_TEST_UNSET_PASSWORD"
    path = str(write_config(tmp_path / "c.yaml", cfg))
    check = cli("check", "--config", path, "--only", "anaplan")
    assert check.returncode == 2, check.stdout + check.stderr
    assert "D365_ANAPLAN_TEST_UNSET_PASSWORD" in check.stdout and "environment variable" in check.stdout
    run = cli("run", "plans", "--config", path, "--from", "2025-01", "--to", "2025-01", "--quiet",
              "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr


def test_check_with_secrets_manager_arns_and_no_aws_settings(cli: Cli, stack: Any, tmp_path: Path) -> None:
    cfg = stack.connection()
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme/anaplan-AbCdEf"
    cfg["anaplan"]["auth"]["password"] = f"{arn}#password"
    cfg["dynamics"]["client_secret"] = arn.replace("anaplan", "dynamics") + "#client_secret"
    env = {k: v for k, v in cli.env.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )  # fmt: skip  (no network: no IMDS, no keys)
    check = Cli(env)("check", "--config", str(write_config(tmp_path / "c.yaml", cfg)))
    out = check.stdout + check.stderr
    assert check.returncode == 2, out
    assert "NoRegionError" not in out and "Entra" not in out
    assert "no AWS credentials" in out and "AWS_PROFILE" in out


# --- windows, dry runs, replays, audit -----------------------------------------------------------------------


def test_windows_dry_runs_replays_and_audit(cli: Cli, stack: Any, config_file: Path, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    cfg = ["--config", str(config_file)]

    # plans without --from/--to: the window the run covers is printed (and recorded)
    horizon = cli("run", "plans", *cfg, "--dry-run", "--quiet", *state)
    assert re.search(r"periods \d{4}-\d\d\.\.\d{4}-\d\d \(plan horizon", horizon.stdout), horizon.stdout

    # actuals dry run: nothing is "loaded", no "None" journal numbers
    dry = cli("run", "actuals", *cfg, "--from", "2025-01", "--to", "2025-01", "--dry-run", "--quiet", *state)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "lists prepared for Anaplan (dry run: not loaded)" in dry.stdout
    assert "lists loaded into Anaplan" not in dry.stdout and "None" not in dry.stdout
    assert "periods 2025-01..2025-01 (as requested)" in dry.stdout

    # a dry run of plans, replayed: stays a dry run; F&O gets nothing
    plans_dry = cli(
        "run", "plans", *cfg, "--from", "2025-01", "--to", "2025-02", "--dry-run", "--quiet", *state
    )
    assert plans_dry.returncode == 0, plans_dry.stdout + plans_dry.stderr
    assert "None" not in plans_dry.stdout
    dry_id = _run_id(plans_dry.stdout)
    before = _plan_entries(stack)
    replay = cli("replay", dry_id[:8], *cfg, "--quiet", *state)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "was a dry run: the replay is one too" in replay.stdout
    assert _plan_entries(stack) == before
    replay_id = _run_id(replay.stdout)

    # for real, then audit: company column, the short file key for --trace, --json, nothing cut
    real = cli("replay", dry_id[:8], *cfg, "--write", "--quiet", *state)
    assert real.returncode == 0, real.stdout + real.stderr
    assert _plan_entries(stack) > before
    real_id = _run_id(real.stdout)
    listing = cli("audit", *state)
    assert re.search(
        rf"{replay_id}\s+demo\s+plans\s+replay\s+SUCCEEDED \(dry run\)\s+2025-01\.\.2025-02", listing.stdout
    ), listing.stdout
    assert re.search(rf"{real_id}\s+demo\s+plans\s+replay\s+SUCCEEDED\s+2025-01", listing.stdout), (
        listing.stdout
    )
    audit = cli("audit", real_id[:8], *state)
    assert audit.returncode == 0, audit.stderr
    journals = audit.stdout.split("F&O journals (", 1)[1].split("failed journal lines", 1)[0]
    rows = [line for line in journals.splitlines()[3:] if line.strip()]
    assert rows and all(re.search(r"\s(USMF|DEMF)\s", row) for row in rows), journals
    assert "…" not in audit.stdout

    actuals = cli("run", "actuals", *cfg, "--from", "2025-01", "--to", "2025-01", "--quiet", *state)
    assert actuals.returncode == 0, actuals.stdout + actuals.stderr
    run_id = _run_id(actuals.stdout)
    trace = cli("audit", run_id[:8], "--trace", "actuals/actuals.csv", *state)
    assert trace.returncode == 0, trace.stdout + trace.stderr
    assert "FILE" in trace.stdout and "…" not in trace.stdout
    traced = cli("audit", run_id[:8], "--trace", "actuals/actuals.csv", "--json", *state)
    events = json.loads(traced.stdout)
    assert events and events[0]["key"].endswith(f"{run_id}/actuals/actuals.csv")


# --- Ctrl-C ----------------------------------------------------------------------------------------------------


def test_ctrl_c_records_the_run_as_aborted_and_releases_the_lease(
    cli: Cli, config_file: Path, tmp_path: Path
) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit.cli", "run", "actuals", "--config", str(config_file), "--from", "2025-01",
         "--to", "2025-12", "--wait-scale", "1", *state],
        cwd=ROOT, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "LoadLists" in line or not line:  # the model lease is held from here on
            break
    # while it runs, audit in another process shows it in progress
    listing = cli("audit", *state)
    run_id = _run_id("".join(seen))
    assert re.search(rf"{run_id}.*RUNNING \(in progress, pid {proc.pid}\)", listing.stdout), (
        listing.stdout + listing.stderr
    )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + out + err
    assert f"run {run_id} recorded as ABORTED; model lease released (" in out, out
    audit = cli("audit", run_id, *state)
    assert "status ABORTED" in audit.stdout and "Interrupted" in audit.stdout, audit.stdout
    assert audit.returncode == 1
    assert "in progress" not in cli("audit", *state).stdout
    again = cli(
        "run",
        "actuals",
        "--config",
        str(config_file),
        "--from",
        "2025-01",
        "--to",
        "2025-01",
        "--quiet",
        *state,
    )
    assert again.returncode == 0, again.stdout + again.stderr


def _plan_entries(stack: Any) -> int:
    """Plan entries the connector wrote in F&O, whichever target: ledger journals or budget register entries."""
    fo = stack.dynamics.app
    return len(fo.journal_headers) + len(fo.budget_headers)

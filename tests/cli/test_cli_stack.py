"""``--stack NAME``: the CLI against a deployed stack (issue 13 item 3). The "deployment" is the local engine's
moto account, built from template.yaml (tables, state machines, functions); a CloudFormation stack in the same
moto account carries the template's Outputs pointing at those resources, which is all the CLI reads to find
them. The CLI runs in-process (moto lives in this process) and must print what it prints locally."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from devkit.cli import main
from devkit.commands.deployed import OUTPUTS
from devkit.engine import REGION, LocalEngine

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STACK = ["--stack", "d365-anaplan", "--region", REGION]


def test_the_outputs_the_cli_reads_are_in_the_template() -> None:
    tpl, _ = decode(str(ROOT / "template.yaml"))
    assert tpl is not None
    for logical_id, key in OUTPUTS.items():
        value = tpl["Outputs"][key]["Value"]
        assert value == {"Ref": logical_id}, (key, value)


@pytest.fixture(scope="module")
def deployed(stack: Any) -> Iterator[LocalEngine]:
    with LocalEngine(wait_scale=0.0) as engine:
        engine.install_connection(stack.connection())
        outputs = {key: {"Value": engine.state_machine_arns[lid] if lid.endswith("Flow") else engine.resource_name(lid)}
                   for lid, key in OUTPUTS.items()}  # fmt: skip
        body = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="d365-anaplan", TemplateBody=json.dumps(body)
        )
        yield engine


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def _run_id(text: str) -> str:
    m = re.search(r"^(?:actuals|plans) (?:run|replay of \S+) ([0-9a-f-]{36}) ", text, re.M)
    assert m, text
    return m.group(1)


def test_start_runs_audit_replay_against_the_stack(deployed: LocalEngine, stack: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code, out = _cli(
        capsys, "start", "actuals", *STACK, "--connection", "demo", "--from", "2025-01", "--to", "2025-01"
    )
    assert code == 0, out
    run_id = _run_id(out)
    assert "(stack d365-anaplan)" in out and "ExtractGLSlice" in out  # progress from the execution history
    assert (
        re.search(r"Anaplan import: [\d,]+ rows ok, 0 failed", out)
        and "periods 2025-01..2025-01 (as requested)" in out
    )
    assert f"details: d365-anaplan audit {run_id} --stack d365-anaplan" in out

    code, out = _cli(capsys, "runs", *STACK)
    assert code == 0 and re.search(
        rf"{run_id}\s+demo\s+actuals\s+manual\s+SUCCEEDED\s+2025-01\.\.2025-01", out
    ), out
    code, out = _cli(capsys, "audit", run_id[:8], *STACK)
    assert code == 0, out
    assert "ExtractGL:USMF" in out and "actuals/actuals.csv" in out and "runs in" not in out

    before = _plan_entries(stack)
    code, out = _cli(capsys, "start", "plans", *STACK, "--connection", "demo", "--from", "2025-01", "--to", "2025-02",
                     "--dry-run", "--quiet")  # fmt: skip
    assert code == 0, out
    assert "differences to what F&O holds (would write)" in out
    dry_id = _run_id(out)
    code, out = _cli(capsys, "replay", dry_id[:8], *STACK, "--quiet")
    assert code == 0, out
    assert f"plans replay of {dry_id}" in out and "was a dry run: the replay is one too" in out
    assert _plan_entries(stack) == before
    code, out = _cli(capsys, "runs", *STACK, "--json")
    listed = {r["run_id"]: r for r in json.loads(out)}
    assert listed[dry_id]["dry_run"] is True and {run_id, dry_id} <= set(listed)


def test_a_wrong_stack_is_one_line(deployed: LocalEngine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "runs", "--stack", "nope", "--region", REGION)
    assert code == 2 and "stack 'nope': cannot read it" in out and "Traceback" not in out


def _plan_entries(stack: Any) -> int:
    """Plan entries in F&O, whichever target: ledger journals or budget register entries."""
    fo = stack.dynamics.app
    return len(fo.journal_headers) + len(fo.budget_headers)


def test_start_accept_drift_reaches_the_execution_input(deployed: LocalEngine,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from d365_anaplan.ledger.audit import RunLedger

    code, out = _cli(capsys, "start", "actuals", *STACK, "--connection", "demo", "--from", "2025-01", "--to",
                     "2025-01", "--dry-run", "--accept-drift", "--quiet")  # fmt: skip
    assert code == 0, out
    run = RunLedger(deployed.resource_name("LedgerTable")).get_run(_run_id(out))
    assert run.detail["request"]["accept_drift"] is True


def test_check_against_the_stack_reads_its_drift_fingerprints(
    deployed: LocalEngine, stack: Any, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check --stack`` compares the model with the fingerprint the deployed ledger holds (not the local state):
    a member the stack's last run saw and the model has since lost is a WARN with the run's diff, exit 1."""
    from devkit.sandbox.anaplan.seed import Member

    extra = "CC997"
    app = stack.anaplan.app
    centres = app.seed.lists["Cost Centres"]
    check = ["check", "--config", str(config_file), "--connection", "demo", "--only", "anaplan", *STACK]
    with app._lock:
        centres.members[extra] = Member(extra, "Anaplan-only member", "299997")
    try:
        code, out = _cli(capsys, "start", "actuals", *STACK, "--connection", "demo", "--from", "2025-01",
                         "--to", "2025-01", "--quiet")  # fmt: skip
        assert code == 0, out
        code, out = _cli(capsys, *check)
        assert code == 0, out
        assert re.search(r"PASS\s+Anaplan\s+metadata drift \(actuals\)\s+unchanged since run", out), out
        with app._lock:
            del centres.members[extra]
        code, out = _cli(capsys, *check)
        assert code == 1, out
        diff = f"list 'Cost Centres': 1 removed: {extra}"
        assert re.search(rf"WARN\s+Anaplan\s+metadata drift \(actuals\)\s+{re.escape(diff)}", out), out
    finally:
        with app._lock:
            centres.members.pop(extra, None)


def test_check_with_a_wrong_stack_is_one_line(
    deployed: LocalEngine, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _cli(capsys, "check", "--config", str(config_file), "--stack", "nope", "--region", REGION)
    assert code == 2 and "stack 'nope': cannot read it" in out and "Traceback" not in out

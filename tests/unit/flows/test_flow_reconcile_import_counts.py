"""ReconcileActuals: rows Anaplan ignored or refused fail the run, naming the count and the first rows of the
import's failure dump; a run without a read-back export says it was not reconciled against Anaplan."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from d365_anaplan.errors import ReconciliationFailed
from d365_anaplan.flows.reconcile import NOT_RECONCILED
from d365_anaplan.run_summary import summarise
from d365_anaplan.steps.reconcile_actuals import reconcile_actuals

BUCKET = "staging"  # the bucket of the shared ``s3`` fixture
TOTALS = {"total": "84210.00", "by_currency": {"EUR": "84210.00"}, "cells": []}
DUMP = (
    "_Status_,_Line_,_Error_1_,Entity,Account,CostCenter,Period,Amount\n"
    "E,2,Item not located in CostCenter list: OU_9,DEMF,601100,OU_9,Jan 25,1000.00\n"
    "E,3,Item not located in CostCenter list: OU_9,DEMF,601200,OU_9,Jan 25,83210.00\n"
    'E,4,"Item not located in CostCenter list: OU\n\x1b9",DEMF,601300,"OU\n\x1b9",Jan 25,0.00\n'
)


@dataclass
class Ledger:
    steps: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def record_step(self, run_id: str, step: str, status: str, detail: dict[str, Any]) -> None:
        self.steps.append((step, status, detail))


def _ctx(s3: Any) -> Any:
    s3.put_object(Bucket=BUCKET, Key="totals.json", Body=json.dumps(TOTALS).encode())
    cfg = SimpleNamespace(mapping=SimpleNamespace(actuals=SimpleNamespace(grain="line")))
    return SimpleNamespace(s3=s3, env=SimpleNamespace(staging_bucket=BUCKET), ledger=Ledger(), run_id="r1",
                           cfg=cfg)  # fmt: skip


def test_ignored_rows_fail_the_run_with_the_count_and_the_first_rows_of_the_dump(s3: Any) -> None:
    ctx = _ctx(s3)
    s3.put_object(Bucket=BUCKET, Key="dumps/import.csv", Body=DUMP.encode())
    counts = {"total": 40, "success": 3, "failed": 0, "ignored": 37, "invalid": 0}
    with pytest.raises(ReconciliationFailed) as failed:
        reconcile_actuals(ctx, "totals.json", counts, 40, None, ["2025-01"], "dumps/import.csv")
    text = str(failed.value)
    assert "did not load every row (37 ignored)" in text
    assert "line 2: DEMF,601100,OU_9,Jan 25,1000.00 (Item not located in CostCenter list: OU_9)" in text
    assert "line 3: DEMF,601200" in text and "s3://staging/dumps/import.csv" in text
    assert "line 4: DEMF,601300,OU  9" in text and "\n" not in text and "\x1b" not in text
    step, status, detail = ctx.ledger.steps[-1]
    assert (step, status) == ("ReconcileActuals", "FAILED") and detail["problems"] == [text]


def test_invalid_rows_without_a_dump_are_named_too(s3: Any) -> None:
    ctx = _ctx(s3)
    with pytest.raises(ReconciliationFailed, match=r"\(2 invalid\).*no failure dump is available"):
        reconcile_actuals(ctx, "totals.json", {"total": 5, "invalid": 2}, 5, None, ["2025-01"])


def test_without_a_read_back_export_the_step_says_it_did_not_reconcile(s3: Any) -> None:
    ctx = _ctx(s3)
    out = reconcile_actuals(ctx, "totals.json", {"total": 5, "success": 5}, 5, None, ["2025-01"])
    assert out["ok"] and out["compared"] == 0
    _, status, detail = ctx.ledger.steps[-1]
    assert status == "SUCCEEDED" and detail["note"] == NOT_RECONCILED and detail["read_back"] is False
    assert NOT_RECONCILED.startswith("not reconciled against Anaplan (no read-back export configured)")
    run = SimpleNamespace(run_id="r1", connection="demo", flow="actuals", status="SUCCEEDED", trigger="manual",
                          detail={}, finished_at=None, cause=None)  # fmt: skip
    ledger = SimpleNamespace(get_run=lambda _: run, steps=lambda _: [SimpleNamespace(step=n, status=s, detail=d)
                                                                     for n, s, d in ctx.ledger.steps])  # fmt: skip
    summary = summarise(ledger, "r1", lambda _: "EUR")
    assert summary.reconciled is None and f"reconciliation: {NOT_RECONCILED}" in summary.text()
    assert "everything matches" not in summary.text()


def test_the_cli_run_output_says_not_reconciled_without_a_read_back(s3: Any) -> None:
    import io

    from devkit.commands._describe import collect, print_facts

    ctx = _ctx(s3)
    reconcile_actuals(ctx, "totals.json", {"total": 5, "success": 5}, 5, None, ["2025-01"])
    ledger = SimpleNamespace(steps=lambda _: [SimpleNamespace(step=n, status=s, detail=d)
                                              for n, s, d in ctx.ledger.steps])  # fmt: skip
    out = io.StringIO()
    task = {"counts": {"success": 3, "failed": 0, "ignored": 37, "invalid": 0}}
    print_facts(collect(ledger, "r1", {"task": task}, "actuals", "SUCCEEDED"), out)
    assert "Anaplan import: 3 rows ok, 0 failed, 37 ignored (created" in out.getvalue()
    assert f"reconciliation: {NOT_RECONCILED} (the import took all 5 rows)" in out.getvalue()
    assert "totals match" not in out.getvalue()

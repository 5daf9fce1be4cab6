"""Issue 13 item 4: every finished run gets metrics per connection and flow, a report in S3 and a readable
SNS summary (d365_anaplan.run_summary, the RunNotifier function), from what the ledger holds."""

from __future__ import annotations

import json
from decimal import Decimal

import boto3
import pytest
from aws_lambda_powertools import Metrics
from e2e_support import ledger, manual

from d365_anaplan.run_summary import emit_metrics, publish, summarise
from devkit.engine import REGION, LocalEngine
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def _currency(company: str) -> str:
    return fo_seed.ACCOUNTING_CURRENCY[company]


def _topic_and_queue() -> tuple[str, str]:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="runs")["TopicArn"]
    queue = sqs.create_queue(QueueName="runs-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def test_actuals_run_report_metrics_and_notification(
    module_engine: LocalEngine,
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = module_engine.run("ActualsFlow", manual("2025-01", "2025-01"), timeout=180)
    assert done.status == "SUCCEEDED", done.task_failures()
    summary = summarise(ledger(module_engine), done.name, _currency)
    assert (
        summary.status == "SUCCEEDED" and summary.periods == "2025-01..2025-01" and summary.reconciled is True
    )
    assert summary.gl_lines > 0 and summary.rows > 0
    assert set(summary.net_by_currency) == {"USD", "EUR"}  # per currency, never added

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "0")
    capsys.readouterr()
    metrics = Metrics(namespace="Test", service="t")
    metrics.clear_metrics()  # Powertools shares metric and dimension sets between instances of a process
    emit_metrics(summary, metrics)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    amounts = {e["currency"]: e["NetAmountCents"] for e in emitted if "NetAmountCents" in e}
    assert set(amounts) == {"USD", "EUR"} and all(e["connection"] == "demo" for e in emitted)
    names = set(metrics.metric_set)
    assert {"RunSucceeded", "RunDuration", "Rows", "GLLines", "Reconciled"} <= names
    assert metrics.dimension_set == {"connection": "demo", "flow": "actuals"}

    topic, queue = _topic_and_queue()
    bucket = module_engine.resource_name("StagingBucket")
    out = publish(summary, s3=boto3.client("s3", region_name=REGION), bucket=bucket,
                  sns=boto3.client("sns", region_name=REGION), topic_arn=topic)  # fmt: skip
    body = boto3.client("s3", region_name=REGION).get_object(
        Bucket=bucket, Key=out["report"]["summary.json"]
    )["Body"]
    report = json.loads(body.read())
    assert report["run_id"] == done.name and out["report"]["summary.json"].startswith(
        f"runs/demo/{done.name}/report/"
    )
    assert Decimal(report["net_by_currency"]["EUR"]) == summary.net_by_currency["EUR"]
    messages = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    text = messages["Messages"][0]["Body"]
    assert f"actuals run {done.name} of connection demo: SUCCEEDED" in text
    assert (
        "net amount EUR:" in text
        and "net amount USD:" in text
        and "reconciliation: everything matches" in text
    )


def test_failed_plans_run_summary_names_the_cause(module_engine: LocalEngine, stack: Stack) -> None:
    # the seeded plans are for 2025: a 2026 window has no approved rows to load, and the run says so
    failed = module_engine.run("PlansFlow", {**manual("2026-01", "2026-02"), "dry_run": True}, timeout=180)
    assert failed.status == "FAILED"
    summary = summarise(ledger(module_engine), failed.name, _currency)
    assert summary.status == "FAILED" and "BadInputData" in summary.cause and summary.dry_run
    assert summary.subject() == "d365-anaplan demo plans FAILED (dry run)"
    metrics = Metrics(namespace="Test2", service="t")
    metrics.clear_metrics()  # Powertools shares metric and dimension sets between instances of a process
    emit_metrics(summary, metrics)
    assert "RunFailed" in metrics.metric_set

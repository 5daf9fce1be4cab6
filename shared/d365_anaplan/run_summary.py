"""What a finished run did, for the people and dashboards that watch the deployment.

When an execution of either flow ends (EventBridge "Step Functions Execution Status Change"), the RunNotifier
function calls :func:`report_execution`, which reads the run from the ledger and

* emits Powertools metrics per connection and flow: ``RunSucceeded``/``RunFailed``, ``RunDuration``
  (seconds), ``Rows`` (actuals rows prepared, or plan journal lines planned), ``GLLines``, ``JournalLinesWritten``,
  ``JournalLinesRejected``, ``Reconciled`` (1/0) and ``NetAmountCents`` per currency (whole cents, exact) (one dimension per currency:
  amounts in different currencies are never added);
* writes the run report (``report/summary.json`` and ``report/summary.txt``) beside the run's staged files;
* publishes the readable summary to the run notification topic.

Amounts are Decimal from the ledger; only the metric values are floats (CloudWatch takes nothing else).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from d365_anaplan.flows.reconcile import NOT_RECONCILED
from d365_anaplan.staging import run_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient


@dataclass
class RunSummary:
    run_id: str
    connection: str
    flow: str
    status: str
    trigger: str
    dry_run: bool = False
    periods: str = ""
    duration_seconds: float | None = None
    rows: int = 0
    gl_lines: int = 0
    net_by_currency: dict[str, Decimal] = field(default_factory=dict)
    journal_lines_written: int = 0
    journal_lines_rejected: int = 0
    reconciled: bool | None = None
    reconciliation_note: str = ""  # why ``reconciled`` is None although the reconciliation step ran
    cause: str = ""

    def subject(self) -> str:
        mode = " (dry run)" if self.dry_run else ""
        return f"d365-anaplan {self.connection} {self.flow} {self.status}{mode}"[:100]

    def text(self) -> str:
        lines = [
            f"{self.flow} run {self.run_id} of connection {self.connection}: {self.status}"
            + (" (dry run: nothing written)" if self.dry_run else ""),
            f"trigger {self.trigger}; periods {self.periods or '-'}; duration "
            + (f"{self.duration_seconds:.0f}s" if self.duration_seconds is not None else "-"),
        ]
        if self.gl_lines:
            lines.append(f"GL lines read from F&O: {self.gl_lines:,}")
        if self.rows:
            lines.append(
                f"{'actuals rows' if self.flow == 'actuals' else 'plan journal lines'}: {self.rows:,}"
            )
        for currency, amount in sorted(self.net_by_currency.items()):
            lines.append(f"net amount {currency}: {amount:,.2f}")
        if self.flow == "plans" and not self.dry_run:
            lines.append(
                f"journal lines written {self.journal_lines_written:,}, rejected {self.journal_lines_rejected:,}"
            )
        if self.reconciled is not None:
            lines.append(
                "reconciliation: " + ("everything matches" if self.reconciled else "DIFFERENCES (see audit)")
            )
        elif self.reconciliation_note:
            lines.append(f"reconciliation: {self.reconciliation_note}")
        if self.cause:
            lines.append(f"cause: {self.cause}")
        lines.append(f"details: d365-anaplan audit {self.run_id} --stack <stack>")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["net_by_currency"] = {k: str(v) for k, v in self.net_by_currency.items()}
        return data


def summarise(ledger: Any, run_id: str, currency_for: Callable[[str], str]) -> RunSummary:
    """The run as the ledger holds it; ``currency_for(company)`` names each company's accounting currency."""
    run = ledger.get_run(run_id)
    request = run.detail.get("request") or {}
    out = RunSummary(run.run_id, run.connection, run.flow, run.status, run.trigger)
    if run.finished_at is not None:
        out.duration_seconds = (run.finished_at - run.started_at).total_seconds()
    if run.cause:
        out.cause = f"{run.cause.get('Error', '')}: {str(run.cause.get('Cause', ''))[:500]}"
    net: dict[str, Decimal] = {}
    for step in ledger.steps(run_id):
        d = step.detail
        if step.step == "PeriodWindow":
            out.dry_run = out.dry_run or bool(d.get("dry_run"))
            if d.get("from"):
                out.periods = f"{d['from']}..{d['to']}"
        elif step.step.startswith("ExtractGL:"):
            company = step.step.split(":")[1]  # ExtractGL:<company>:<month>
            out.gl_lines += int(d.get("lines", 0))
            # per currency as extracted (transaction amounts: several; "total" is None then); a record
            # without by_currency holds one total in the company's currency
            amounts = d.get("by_currency")
            if amounts is None:
                amounts = {currency_for(company): d.get("total") or "0"}
            for currency, amount in amounts.items():
                net[currency] = net.get(currency, Decimal(0)) + Decimal(str(amount))
        elif step.step == "PrepareActuals":
            out.rows = int(d.get("rows", 0))
        elif step.step == "ReconcileActuals" and step.status == "SUCCEEDED" and "reconciliation" not in d:
            out.reconciliation_note = str(d.get("note") or NOT_RECONCILED)  # no read-back: counts only
        elif step.step in ("ReconcileActuals", "ReconcilePlan"):
            out.reconciled = step.status == "SUCCEEDED"
        elif step.step == "PlanJournals":  # the planned journals: company, lines, debit and credit each
            for j in d.get("journals") or []:
                out.rows += int(j.get("lines", 0))
                currency = str(j.get("currency") or currency_for(str(j.get("company", ""))))
                amount = Decimal(str(j.get("total_debit", "0"))) - Decimal(str(j.get("total_credit", "0")))
                net[currency] = net.get(currency, Decimal(0)) + amount
    out.dry_run = out.dry_run or bool(request.get("dry_run"))
    if not out.periods and (request.get("periods") or {}).get("from"):
        out.periods = f"{request['periods']['from']}..{request['periods'].get('to')}"
    if run.flow == "plans":
        for journal in ledger.journals(run_id):
            out.journal_lines_written += int(journal.detail.get("written", 0))
            out.journal_lines_rejected += int(journal.detail.get("rejected", 0))
    out.net_by_currency = net
    return out


def emit_metrics(summary: RunSummary, metrics: Any) -> None:
    """One set of metrics per run, dimensioned by connection and flow (and currency for amounts)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    metrics.add_dimension(name="connection", value=summary.connection)
    metrics.add_dimension(name="flow", value=summary.flow)
    ok = summary.status in ("SUCCEEDED", "SKIPPED")
    metrics.add_metric(name="RunSucceeded" if ok else "RunFailed", unit=MetricUnit.Count, value=1)
    if summary.duration_seconds is not None:
        metrics.add_metric(name="RunDuration", unit=MetricUnit.Seconds, value=summary.duration_seconds)
    metrics.add_metric(name="Rows", unit=MetricUnit.Count, value=summary.rows)
    metrics.add_metric(name="GLLines", unit=MetricUnit.Count, value=summary.gl_lines)
    metrics.add_metric(name="JournalLinesWritten", unit=MetricUnit.Count, value=summary.journal_lines_written)
    metrics.add_metric(
        name="JournalLinesRejected", unit=MetricUnit.Count, value=summary.journal_lines_rejected
    )
    if summary.reconciled is not None:
        metrics.add_metric(name="Reconciled", unit=MetricUnit.Count, value=1 if summary.reconciled else 0)
    from d365_anaplan.request_metrics import metrics_disabled

    if metrics_disabled():
        return
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "D365Anaplan")
    for currency, amount in sorted(summary.net_by_currency.items()):  # its own metric: one per currency
        # in whole cents, exactly (a metric value is a float: money never passes through one)
        cents = int(amount.scaleb(2).to_integral_value(rounding=ROUND_HALF_UP))
        with single_metric(
            name="NetAmountCents",
            unit=MetricUnit.NoUnit,
            value=cents,
            namespace=namespace,
            default_dimensions={"connection": summary.connection, "flow": summary.flow},
        ) as one:
            one.add_dimension(name="currency", value=currency)


def publish(
    summary: RunSummary, *, s3: S3Client, bucket: str, sns: SNSClient, topic_arn: str | None
) -> dict[str, Any]:
    """Write the run report beside the run's staged files and send the readable summary."""
    keys = {}
    for name, body, ctype in (
        ("summary.json", json.dumps(summary.to_json(), indent=2), "application/json"),
        ("summary.txt", summary.text() + "\n", "text/plain; charset=utf-8"),
    ):
        key = run_key(summary.connection, summary.run_id, "report", name)
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType=ctype)
        keys[name] = key
    message_id = None
    if topic_arn:
        message_id = sns.publish(TopicArn=topic_arn, Subject=summary.subject(), Message=summary.text())[
            "MessageId"
        ]
    return {"run_id": summary.run_id, "status": summary.status, "report": keys, "message_id": message_id}


def report_execution(execution_arn: str) -> dict[str, Any]:
    """Everything above for the run of an ended execution (clients and names from the function's environment)."""
    import boto3

    from d365_anaplan.ledger.audit import RunLedger
    from d365_anaplan.observability import metrics
    from d365_anaplan.runtime import load_connection, run_id_of, settings

    run_id = run_id_of(execution_arn)
    env = settings()
    ledger = RunLedger(env.ledger_table)
    run = ledger.get_run(run_id)
    try:
        journal = load_connection(run.connection).dynamics.journal
        currency_for: Callable[[str], str] = lambda company: journal.currency_for(company) or "?"  # noqa: E731
    except Exception:  # noqa: BLE001 - a report even when the connection file is gone or broken
        currency_for = lambda _company: "?"  # noqa: E731
    summary = summarise(ledger, run_id, currency_for)
    emit_metrics(summary, metrics)
    topic = os.environ.get("RUN_TOPIC_ARN") or None
    return publish(
        summary, s3=boto3.client("s3"), bucket=env.staging_bucket, sns=boto3.client("sns"), topic_arn=topic
    )

"""Connections by upload (issue 13 item 1): the ScheduleSync function keeps EventBridge Scheduler schedules
in step with ``connections/<name>.yaml`` in the config bucket - added, changed, deleted - against moto.
The uploaded file is ``examples/connection.yaml``, so the example is validated here too."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from d365_anaplan import runtime
from d365_anaplan.config import parse_connections
from d365_anaplan.errors import ConfigError
from devkit.engine import FakeLambdaContext

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "connection.yaml"
REGION = "eu-west-1"
GROUP = "d365-anaplan-connections"
ACCOUNT = "123456789012"
FLOW_ARNS = {
    f: f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:d365-anaplan-{f}" for f in ("actuals", "plans")
}


def _handler() -> ModuleType:
    path = ROOT / "functions" / "schedule_sync" / "app.py"
    spec = importlib.util.spec_from_file_location("_schedule_sync_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
           "LEDGER_TABLE": "ledger", "STAGING_BUCKET": "staging",
           "CONFIG_BUCKET": "config-bucket", "CONFIG_PREFIX": "connections/", "SCHEDULE_GROUP": GROUP,
           "SCHEDULER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/d365-anaplan-schedule-start",
           "ACTUALS_FLOW_ARN": FLOW_ARNS["actuals"], "PLANS_FLOW_ARN": FLOW_ARNS["plans"],
           "SCHEDULE_DLQ_ARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:schedule-dlq", "STACK_CONNECTION": "demo",
           "POWERTOOLS_METRICS_NAMESPACE": "D365Anaplan", "POWERTOOLS_SERVICE_NAME": "d365-anaplan"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    runtime.clear_caches()
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="config-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket="config-bucket", VersioningConfiguration={"Status": "Enabled"})
        scheduler = boto3.client("scheduler", region_name=REGION)
        scheduler.create_schedule_group(Name=GROUP)
        yield {"s3": s3, "scheduler": scheduler, "app": _handler()}


def _event(kind: str, key: str) -> dict[str, Any]:
    return {"version": "0", "detail-type": f"Object {kind}", "source": "aws.s3", "account": ACCOUNT,
            "region": REGION, "resources": ["arn:aws:s3:::config-bucket"],
            "detail": {"version": "0", "bucket": {"name": "config-bucket"}, "object": {"key": key, "size": 1},
                       "reason": "PutObject" if kind == "Created" else "DeleteObject"}}  # fmt: skip


def _invoke(aws: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return dict(aws["app"].lambda_handler(event, FakeLambdaContext("ScheduleSyncFunction")))


def _schedules(aws: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [s["Name"] for s in aws["scheduler"].list_schedules(GroupName=GROUP)["Schedules"]]
    return {n: aws["scheduler"].get_schedule(Name=n, GroupName=GROUP) for n in names}


def _put(aws: dict[str, Any], key: str, data: dict[str, Any] | str) -> None:
    body = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    aws["s3"].put_object(Bucket="config-bucket", Key=key, Body=body.encode("utf-8"))


def test_the_example_connection_is_valid_for_a_deployment() -> None:
    (cfg,) = parse_connections(EXAMPLE.read_text(encoding="utf-8"), aws=True, source=str(EXAMPLE))
    assert cfg.name == "acme" and all(s.kind == "secretsmanager" for _, s in cfg.secrets())


def test_add_change_delete_a_connection(aws: dict[str, Any]) -> None:
    key = "connections/acme.yaml"
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

    # add: both schedules, in the connection's time zone, starting its flows with the schedule input
    _put(aws, key, EXAMPLE.read_text(encoding="utf-8"))
    out = _invoke(aws, _event("Created", key))
    assert out["schedules"] == {"acme-actuals": "created", "acme-plans": "created"}
    got = _schedules(aws)
    actuals, plans = got["acme-actuals"], got["acme-plans"]
    assert (
        actuals["ScheduleExpression"] == "cron(0 6 ? * MON-FRI *)"
        and plans["ScheduleExpression"] == "cron(0 7 1 * ? *)"
    )
    assert actuals["ScheduleExpressionTimezone"] == "Europe/London" and actuals["State"] == "ENABLED"
    assert actuals["Target"]["Arn"] == FLOW_ARNS["actuals"] and plans["Target"]["Arn"] == FLOW_ARNS["plans"]
    assert json.loads(actuals["Target"]["Input"]) == {
        "connection": "acme",
        "trigger": "schedule",
        "periods": None,
    }
    assert actuals["Target"]["DeadLetterConfig"]["Arn"].endswith(":schedule-dlq")
    assert _invoke(aws, _event("Created", key))["schedules"] == {
        "acme-actuals": "unchanged",
        "acme-plans": "unchanged",
    }

    # change: cadence and time zone follow the file; a flow set to null is disabled
    changed = {**example, "schedules": {"actuals": "cron(30 5 ? * MON-FRI *)", "plans": None,
                                         "timezone": "America/Chicago"}}  # fmt: skip
    _put(aws, key, changed)
    assert _invoke(aws, _event("Created", key))["schedules"] == {
        "acme-actuals": "updated",
        "acme-plans": "updated",
    }
    got = _schedules(aws)
    assert got["acme-actuals"]["ScheduleExpression"] == "cron(30 5 ? * MON-FRI *)"
    assert got["acme-actuals"]["ScheduleExpressionTimezone"] == "America/Chicago"
    assert got["acme-plans"]["State"] == "DISABLED" and got["acme-actuals"]["State"] == "ENABLED"

    # a broken file changes nothing and names the field
    _put(aws, key, {**example, "schedules": {"actuals": "every morning"}})
    with pytest.raises(ConfigError, match=r"schedules\.actuals"):
        _invoke(aws, _event("Created", key))
    assert _schedules(aws)["acme-actuals"]["ScheduleExpression"] == "cron(30 5 ? * MON-FRI *)"

    # delete: disabled (kept for the record); uploading again re-enables
    aws["s3"].delete_object(Bucket="config-bucket", Key=key)
    assert _invoke(aws, _event("Deleted", key))["schedules"] == {
        "acme-actuals": "disabled",
        "acme-plans": "unchanged",
    }
    assert {s["State"] for s in _schedules(aws).values()} == {"DISABLED"}
    _put(aws, key, EXAMPLE.read_text(encoding="utf-8"))
    _invoke(aws, _event("Created", key))
    assert {s["State"] for s in _schedules(aws).values()} == {"ENABLED"}


def test_other_keys_the_stack_connection_and_a_full_sync(aws: dict[str, Any]) -> None:
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert "ignored" in _invoke(aws, _event("Created", "connections/archive/old.yaml"))
    assert "ignored" in _invoke(aws, _event("Created", "readme.txt"))
    _put(aws, "connections/demo.yaml", {**example, "name": "demo"})
    assert "stack" in _invoke(aws, _event("Created", "connections/demo.yaml"))["ignored"]  # no double starts
    with pytest.raises(ConfigError, match="not 'beta'"):
        _put(aws, "connections/beta.yaml", example)  # the file name and the name inside differ
        _invoke(aws, _event("Created", "connections/beta.yaml"))

    aws["s3"].delete_object(Bucket="config-bucket", Key="connections/beta.yaml")
    _put(aws, "connections/gamma.yaml", {**example, "name": "gamma"})
    _put(aws, "connections/old.yaml", {**example, "name": "old"})
    _invoke(aws, _event("Created", "connections/old.yaml"))
    aws["s3"].delete_object(Bucket="config-bucket", Key="connections/old.yaml")  # its delete event got lost
    out = _invoke(aws, {"sync": "all"})
    assert out["problems"] == []
    got = _schedules(aws)
    assert got["gamma-actuals"]["State"] == "ENABLED"
    assert got["old-actuals"]["State"] == got["old-plans"]["State"] == "DISABLED"
    assert "demo-actuals" not in got

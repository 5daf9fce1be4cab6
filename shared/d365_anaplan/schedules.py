"""Connections by upload: EventBridge Scheduler schedules kept in step with the config bucket.

Adding a connection is its secrets plus ``connections/<name>.yaml`` in the config bucket. The ScheduleSync
function receives the bucket's S3 events (through EventBridge) and calls :func:`sync_object`:

* a YAML written (created or replaced): the connection's ``<name>-actuals`` and ``<name>-plans`` schedules
  are created or updated from its ``schedules`` section (cadence; time zone = ``schedules.timezone`` or
  ``close_calendar.timezone``), ENABLED unless ``schedules.enabled: false``; a flow whose expression is null
  has its schedule disabled;
* a YAML deleted: both schedules are disabled (kept, so the history stays readable and an upload again
  re-enables them);
* a YAML that does not validate: nothing changes, and the error names the file and the field.

:func:`sync_all` does the same for every YAML in the bucket (and disables schedules whose YAML is gone); the
function runs it when invoked with ``{"sync": "all"}`` (a deleted file is found by its delete marker: the
config bucket is versioned). Schedules live in the stack's own schedule group, start
the flows through a role that may only start them, and send starts that fail to the schedule dead-letter queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from d365_anaplan.config import ConnectionConfig, parse_connections
from d365_anaplan.errors import ConfigError
from d365_anaplan.vocabulary import FLOWS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

SUFFIX = ".yaml"


@dataclass(frozen=True)
class ScheduleTargets:
    """Where the schedules go and what they start (from the function's environment)."""

    group: str
    role_arn: str
    flows: dict[str, str]  # flow -> state machine ARN
    dead_letter_arn: str | None = None
    prefix: str = "connections/"
    skip: frozenset[str] = field(default_factory=frozenset)  # scheduled by the stack itself (ConnectionName)


def connection_of(key: str, prefix: str = "connections/") -> str | None:
    """``connections/<name>.yaml`` -> ``<name>``; None for any other key (nested folders included)."""
    if not key.startswith(prefix) or not key.endswith(SUFFIX):
        return None
    name = key[len(prefix) : -len(SUFFIX)]
    return name if name and "/" not in name else None


def schedule_name(connection: str, flow: str) -> str:
    return f"{connection}-{flow}"


def _input(connection: str) -> str:
    # "periods": null = no requested window; the close-calendar gate decides (same input as the stack's schedules).
    return json.dumps({"connection": connection, "trigger": "schedule", "periods": None})


def desired(cfg: ConnectionConfig, targets: ScheduleTargets) -> dict[str, dict[str, Any]]:
    """Schedule name -> the CreateSchedule/UpdateSchedule request the connection's YAML asks for."""
    tz = cfg.schedules.timezone or cfg.close_calendar.timezone
    out: dict[str, dict[str, Any]] = {}
    for flow in FLOWS:
        expression: str | None = getattr(cfg.schedules, flow)
        target: dict[str, Any] = {
            "Arn": targets.flows[flow],
            "RoleArn": targets.role_arn,
            "Input": _input(cfg.name),
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
        }
        if targets.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": targets.dead_letter_arn}
        name = schedule_name(cfg.name, flow)
        out[name] = {
            "Name": name,
            "GroupName": targets.group,
            "Description": f"Starts the {cfg.name} {flow} flow (kept in step with {targets.prefix}{cfg.name}{SUFFIX})",
            "ScheduleExpression": expression or FLOWS_IDLE_EXPRESSION,
            "ScheduleExpressionTimezone": tz,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if cfg.schedules.enabled and expression else "DISABLED",
            "Target": target,
        }
    return out


# A schedule whose flow is not scheduled stays, disabled, with the default cadence (Scheduler needs one).
FLOWS_IDLE_EXPRESSION = "rate(1 day)"


def _existing(scheduler: EventBridgeSchedulerClient, group: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(scheduler.get_schedule(Name=name, GroupName=group))
    except scheduler.exceptions.ResourceNotFoundException:
        return None


def apply(scheduler: EventBridgeSchedulerClient, want: dict[str, Any]) -> str:
    """Create or update one schedule; returns what happened (created, updated, unchanged)."""
    have = _existing(scheduler, want["GroupName"], want["Name"])
    if have is None:
        scheduler.create_schedule(**want)
        return "created"
    same = all(have.get(k) == v for k, v in want.items() if k not in ("Target",)) and all(
        (have.get("Target") or {}).get(k) == v for k, v in want["Target"].items()
    )
    if same:
        return "unchanged"
    scheduler.update_schedule(**want)
    return "updated"


def disable(scheduler: EventBridgeSchedulerClient, group: str, name: str) -> str:
    """Disable a schedule (UpdateSchedule needs the whole definition, so it is read first)."""
    have = _existing(scheduler, group, name)
    if have is None:
        return "absent"
    if have.get("State") == "DISABLED":
        return "unchanged"
    keep = (
        "Name",
        "GroupName",
        "Description",
        "ScheduleExpression",
        "ScheduleExpressionTimezone",
        "FlexibleTimeWindow",
        "Target",
        "StartDate",
        "EndDate",
        "KmsKeyArn",
        "ActionAfterCompletion",
    )
    request = {k: have[k] for k in keep if have.get(k) is not None}
    scheduler.update_schedule(**request, State="DISABLED")
    return "disabled"


def _read(s3: S3Client, bucket: str, key: str) -> str:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return str(body.read().decode("utf-8"))
    finally:
        body.close()


def sync_object(
    scheduler: EventBridgeSchedulerClient,
    s3: S3Client,
    targets: ScheduleTargets,
    *,
    bucket: str,
    key: str,
    deleted: bool,
) -> dict[str, Any]:
    """Bring the schedules of the connection stored at ``key`` in step with it (see the module text)."""
    name = connection_of(key, targets.prefix)
    if name is None:
        return {"key": key, "ignored": "not a connections/<name>.yaml file"}
    if name in targets.skip:
        return {"key": key, "connection": name, "ignored": "scheduled by the stack's own parameters"}
    if deleted:
        return {
            "key": key,
            "connection": name,
            "schedules": {
                schedule_name(name, f): disable(scheduler, targets.group, schedule_name(name, f))
                for f in FLOWS
            },
        }
    source = f"s3://{bucket}/{key}"
    connections = parse_connections(_read(s3, bucket, key), aws=True, source=source)
    if [c.name for c in connections] != [name]:
        raise ConfigError(
            [f"name: the file holds {[c.name for c in connections]}, not {name!r} (its file name)"], source
        )
    return {
        "key": key,
        "connection": name,
        "schedules": {n: apply(scheduler, want) for n, want in desired(connections[0], targets).items()},
    }


def sync_all(
    scheduler: EventBridgeSchedulerClient, s3: S3Client, targets: ScheduleTargets, *, bucket: str
) -> dict[str, Any]:
    """Every connection YAML in the bucket; the schedules of connections whose YAML was deleted disabled."""
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    present: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=targets.prefix):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            name = connection_of(key, targets.prefix)
            if name is None:
                continue
            present.add(name)
            try:
                results.append(sync_object(scheduler, s3, targets, bucket=bucket, key=key, deleted=False))
            except ConfigError as exc:
                problems.append(str(exc))
    # Connections whose file was deleted (the bucket is versioned: a delete leaves a marker), in case their
    # delete event never arrived. No ListSchedules: it cannot be scoped to the stack's group in IAM.
    gone: set[str] = set()
    for versions in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=targets.prefix):
        for marker in versions.get("DeleteMarkers", []):
            name = connection_of(str(marker["Key"]), targets.prefix)
            if marker.get("IsLatest") and name and name not in present and name not in targets.skip:
                gone.add(name)
    results.extend(
        {
            "connection": name,
            "schedules": {
                schedule_name(name, f): disable(scheduler, targets.group, schedule_name(name, f))
                for f in FLOWS
            },
        }
        for name in sorted(gone)
    )
    return {"synced": results, "problems": problems}


def targets_from_env() -> ScheduleTargets:
    """The schedule group, role, flows and dead-letter queue the template hands the function."""
    import os

    env = os.environ
    missing = [
        k
        for k in ("SCHEDULE_GROUP", "SCHEDULER_ROLE_ARN", "ACTUALS_FLOW_ARN", "PLANS_FLOW_ARN")
        if not env.get(k)
    ]
    if missing:
        raise ConfigError([f"environment variable {k} is not set" for k in missing], "function environment")
    skip = env.get("STACK_CONNECTION", "")
    return ScheduleTargets(
        group=env["SCHEDULE_GROUP"],
        role_arn=env["SCHEDULER_ROLE_ARN"],
        flows={"actuals": env["ACTUALS_FLOW_ARN"], "plans": env["PLANS_FLOW_ARN"]},
        dead_letter_arn=env.get("SCHEDULE_DLQ_ARN") or None,
        prefix=env.get("CONFIG_PREFIX", "connections/"),
        skip=frozenset({skip} if skip else ()),
    )


def sync_event(obj: tuple[str, str, bool] | None) -> dict[str, Any]:
    """One S3 event ``(bucket, key, deleted)`` - or, with None, every connection of the config bucket."""
    import boto3

    from d365_anaplan.observability import logger
    from d365_anaplan.runtime import settings

    targets = targets_from_env()
    scheduler, s3 = boto3.client("scheduler"), boto3.client("s3")
    if obj is None:
        result = sync_all(scheduler, s3, targets, bucket=settings().config_bucket)
    else:
        bucket, key, deleted = obj
        result = sync_object(scheduler, s3, targets, bucket=bucket, key=key, deleted=deleted)
    logger.info("schedules synced", extra={"result": result})
    return result

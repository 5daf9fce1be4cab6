"""After both flows ran, no credential or token is anywhere at rest: not in a ledger item, a staged file, the
stored connection, a flow's output or the logs (tests/security covers the same for single calls; this file
needs the engine, so it lives with the end-to-end tests)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import manual

from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def stored_bytes() -> Iterator[tuple[str, bytes]]:
    """Every DynamoDB item and S3 object of the (moto) account, as (where, raw bytes)."""
    import boto3

    dynamo = boto3.client("dynamodb", region_name="us-east-1")
    for table in dynamo.list_tables()["TableNames"]:
        for page in dynamo.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                yield f"dynamodb {table}", repr(item).encode()
    s3 = boto3.client("s3", region_name="us-east-1")
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                yield f"s3://{bucket['Name']}/{obj['Key']}", body


def secrets_of(stack: Stack) -> dict[str, str]:
    found = {
        "Anaplan password": stack.anaplan.password,
        "F&O client secret": stack.dynamics.app.config.client_secret,
    }
    anaplan_tokens: dict[str, Any] = getattr(stack.anaplan.app, "_tokens", {})
    found.update({f"Anaplan token {i}": value for i, value in enumerate(anaplan_tokens)})
    issued: Any = getattr(stack.dynamics.app.entra, "issued", [])
    found.update({f"F&O token {i}": str(getattr(t, "value", t)) for i, t in enumerate(issued)})
    return {what: value for what, value in found.items() if isinstance(value, str) and len(value) >= 8}


def test_no_credential_or_token_at_rest_after_both_flows(
    engine: LocalEngine, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # what a function logs; botocore's DEBUG wire dumps are never enabled
    for name in ("d365_anaplan", "msal", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    outputs = []
    for flow in ("ActualsFlow", "PlansFlow"):
        result = engine.run(flow, manual(), timeout=180)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        outputs.append(repr(result.output).encode())
    secrets = secrets_of(stack)
    assert "Anaplan password" in secrets and "F&O client secret" in secrets
    places = [*stored_bytes(), *(("flow output", o) for o in outputs), ("logs", caplog.text.encode())]
    assert len(places) > 10
    leaks = [
        f"{what} in {where}"
        for where, raw in places
        for what, value in secrets.items()
        if value.encode() in raw
    ]
    assert leaks == []

"""The CLI against a deployed stack (``--stack NAME``): the real ledger table and Step Functions.

The stack's resources are found through CloudFormation (``describe_stacks``: the template's Outputs
``LedgerTableName``, ``ActualsFlowArn``, ``PlansFlowArn``), with the usual AWS settings (``--profile``,
``--region``, or ``AWS_PROFILE``/``AWS_REGION``). :class:`DeployedFlows` offers the same calls as the local
engine, so ``start`` and ``replay`` follow an execution and print exactly what a local run prints.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from devkit.engine import ExecutionResult

# Output keys of template.yaml the CLI reads (tests/cli/test_cli_stack.py checks they exist in the template).
OUTPUTS = {"LedgerTable": "LedgerTableName", "ActualsFlow": "ActualsFlowArn", "PlansFlow": "PlansFlowArn"}


class StackError(RuntimeError):
    """The stack cannot be read (one line: the stack, and what to check)."""


def add_stack_args(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--stack",
        metavar="NAME",
        required=required,
        help="a deployed stack: read its ledger and Step Functions (AWS settings: --profile/--region or the "
        "usual AWS_PROFILE/AWS_REGION)",
    )
    parser.add_argument("--profile", help="AWS profile (with --stack)")
    parser.add_argument("--region", help="AWS region (with --stack)")


@dataclass
class Deployed:
    """The resources of one deployed stack, with clients in its account and region."""

    stack: str
    session: Any
    names: dict[str, str]  # logical id -> physical name / ARN

    @classmethod
    def resolve(cls, args: argparse.Namespace) -> Deployed:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            session = boto3.Session(profile_name=args.profile, region_name=args.region)
            desc = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        except (ClientError, BotoCoreError) as exc:
            raise StackError(
                f"stack {args.stack!r}: cannot read it ({exc}); check --stack, --region/AWS_REGION and "
                "--profile/AWS_PROFILE"
            ) from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
        missing = [key for key in OUTPUTS.values() if key not in outputs]
        if missing:
            raise StackError(f"stack {args.stack!r} has no outputs {missing}: is it a d365-anaplan stack?")
        return cls(args.stack, session, {lid: outputs[key] for lid, key in OUTPUTS.items()})

    def resource_name(self, logical_id: str) -> str:
        return self.names[logical_id]

    def ledger(self) -> Any:
        from d365_anaplan.ledger.audit import RunLedger

        return RunLedger(self.names["LedgerTable"], client=self.session.client("dynamodb"))

    def flows(self) -> DeployedFlows:
        return DeployedFlows(self)


@dataclass
class DeployedFlows:
    """The local engine's execution calls (start, status, history, wait) on the deployed state machines."""

    deployed: Deployed

    def _sfn(self) -> Any:
        return self.deployed.session.client("stepfunctions")

    def start_execution(self, state_machine: str, payload: dict[str, Any], name: str | None = None) -> str:
        kwargs: dict[str, Any] = {
            "stateMachineArn": self.deployed.names[state_machine],
            "input": json.dumps(payload),
        }
        if name:
            kwargs["name"] = name
        return str(self._sfn().start_execution(**kwargs)["executionArn"])

    def status(self, execution_arn: str) -> str:
        return str(self._sfn().describe_execution(executionArn=execution_arn)["status"])

    def history(self, execution_arn: str) -> Iterator[dict[str, Any]]:
        pages = self._sfn().get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        for page in pages:
            yield from page["events"]

    def wait(self, execution_arn: str, timeout: float = 120.0) -> ExecutionResult:
        sfn = self._sfn()
        deadline = time.monotonic() + timeout
        while (desc := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout}s")
            time.sleep(0.5)
        return ExecutionResult(
            arn=execution_arn,
            name=desc["name"],
            status=desc["status"],
            output=json.loads(desc["output"]) if desc.get("output") else None,
            error=desc.get("error"),
            cause=desc.get("cause"),
            history=list(self.history(execution_arn)),
        )

    def resource_name(self, logical_id: str) -> str:
        return self.deployed.resource_name(logical_id)

"""EventBridge events as AWS delivers them (every envelope field), for the functions EventBridge invokes."""

from __future__ import annotations

from typing import Any


def execution_status_change(execution_arn: str, status: str, **detail: Any) -> dict[str, Any]:
    """A "Step Functions Execution Status Change" event for ``execution_arn`` ending with ``status``."""
    region, account = execution_arn.split(":")[3:5]
    machine = execution_arn.split(":")[6]
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": account,
        "time": "2025-04-03T05:21:42Z",
        "region": region,
        "resources": [execution_arn],
        "detail": {
            "executionArn": execution_arn,
            "stateMachineArn": f"arn:aws:states:{region}:{account}:stateMachine:{machine}",
            "status": status,
            **detail,
        },
    }

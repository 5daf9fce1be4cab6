"""Open, close and fail runs in the ledger (see d365_anaplan.steps.runs.run_ledger_op).

* ``start``: validate the connection exists, open the run (idempotent per execution; a redriven run reopens).
* ``finish``: close the run as SUCCEEDED or SKIPPED and, on success only, advance the flow's watermark.
* ``fail``: the flows' single failure state: record the cause and release any model lease the execution holds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, RootModel

from d365_anaplan.steps.handler import StepOutput, handler
from d365_anaplan.steps.runs import FailEvent, FinishEvent, StartEvent, run_ledger_op


class Event(RootModel[Annotated[StartEvent | FinishEvent | FailEvent, Field(discriminator="op")]]):
    @property
    def op(self) -> str:
        return self.root.op


class OpenRunOutput(StepOutput):
    run_id: str
    model_key: str
    companies: list[str]
    periods: dict[str, str | None] | None
    dry_run: bool
    verify_export: str | None
    replay_of: str | None
    failed_lines_only: bool
    exports: list[dict[str, Any]]
    accept_drift: bool
    accept_failed_reconcile: bool = False


class FinishOutput(StepOutput):
    run_id: str
    status: str
    watermark: str | None


class FailOutput(StepOutput):
    run_id: str
    status: Literal["FAILED"]
    error: str
    released: list[str]


EVENT_MODEL = Event  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
# what lambda_handler returns at least, per op (tests/contract/test_asl_pinned.py)
OUTPUT_MODELS: dict[str, type[StepOutput]] = {
    "start": OpenRunOutput,
    "finish": FinishOutput,
    "fail": FailOutput,
}


@handler(Event, OUTPUT_MODELS)
def lambda_handler(ev: Event) -> dict[str, Any]:
    return run_ledger_op(ev.root)

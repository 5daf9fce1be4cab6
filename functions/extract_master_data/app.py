"""Main accounts, legal entities and dimension values from F&O, staged as one file per Anaplan list import."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.actuals import extract_master_data
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StagedImport, StepEvent, StepOutput, step


class MasterDataOutput(StepOutput):
    imports: list[StagedImport]
    caveats: list[str]


@step(StepEvent, MasterDataOutput)
def lambda_handler(ctx: StepContext, ev: StepEvent) -> dict[str, Any]:
    return extract_master_data(ctx)


EVENT_MODEL = StepEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = MasterDataOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)

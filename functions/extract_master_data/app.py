"""Main accounts, legal entities and dimension values from F&O, staged as one file per Anaplan list import."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StagedImport, StepEvent, StepOutput, step
from d365_anaplan.steps.master_data import extract_master_data


class MasterDataEvent(StepEvent):
    accept_drift: bool = False  # the run accepts changed F&O metadata and records the new fingerprint


class MasterDataOutput(StepOutput):
    imports: list[StagedImport]
    caveats: list[str]


@step(MasterDataEvent, MasterDataOutput)
def lambda_handler(ctx: StepContext, ev: MasterDataEvent) -> dict[str, Any]:
    return extract_master_data(ctx, ev.accept_drift)


EVENT_MODEL = MasterDataEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = MasterDataOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)

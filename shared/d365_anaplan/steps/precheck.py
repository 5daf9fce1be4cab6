"""The metadata pre-check step (issue 12): the checks ``d365-anaplan check`` prints, run before a flow reads
any F&O data or runs any export (:mod:`d365_anaplan.flows.preflight`)."""

from __future__ import annotations

from typing import Any

from d365_anaplan.flows.preflight import Flow, require
from d365_anaplan.steps.context import StepContext


def metadata_precheck(ctx: StepContext, flow: Flow) -> dict[str, Any]:
    """Raise the first failure's error (its message lists every failure with its remedy); record what passed."""
    findings = require(ctx.cfg, ctx.anaplan, flow)
    ctx.ledger.record_step(ctx.run_id, "MetadataPrecheck", "SUCCEEDED",
                           {"flow": flow, "checked": [f.name for f in findings]})  # fmt: skip
    return {"checked": len(findings)}

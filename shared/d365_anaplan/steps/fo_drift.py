"""The F&O part of drift detection (issue 12, item 6): the integration format(s) and financial dimension names
a flow relies on, read under the Dynamics role by the first step that reads F&O before anything is written
(actuals: ExtractMasterData, before the list and actuals loads; plans: PlanJournals, before any journal is
written), compared with the last successful run's F&O part (``flows/drift.py`` :func:`fo_diff`).

MetadataPrecheck runs under the Anaplan role and never reads the Dynamics secret; this step adds the F&O part
to the fingerprint the pre-check staged, so a successful close makes both current together.

F&O's OData exposes no account structure segments (only structure names on ``DimensionCombinations``); the
segments a run relies on are those of the active integration format (``DimensionIntegrationFormats``):

* actuals: the ledger format (display values of posted GL are split by it); not recorded when there is none
  (the ``DimensionCombinations`` route with ``ledger.account_structures`` does not use it);
* plans: the format of the journal target (budget register: the budget format, else the ledger format).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from d365_anaplan.errors import DynamicsRouteUnavailable, MetadataDrift
from d365_anaplan.flows.drift import fo_diff, fo_entry
from d365_anaplan.steps.drift import REMEDY

if TYPE_CHECKING:
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.dynamics.reader import DynamicsReader
    from d365_anaplan.steps.context import StepContext

Flow = Literal["actuals", "plans"]
PART = "fo"


def read_fo_fingerprint(cfg: ConnectionConfig, reader: DynamicsReader, flow: Flow) -> dict[str, Any]:
    """The F&O part of ``flow``'s fingerprint, read from F&O now."""
    budget = flow == "plans" and cfg.dynamics.journal.target == "budget_register"
    kind = "budget" if budget else "ledger"
    formats: dict[str, tuple[str, list[str]]] = {}
    try:
        fmt = reader.budget_format() if budget else reader.ledger_format()
        formats[kind] = (fmt.name, list(fmt.segments))
    except DynamicsRouteUnavailable:
        if flow == "plans":
            raise  # plan journals cannot be written without it: the step fails as it would anyway
    return fo_entry(formats, (a.name for a in reader.dimension_attributes()))


def fo_verdict(stored: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """The F&O drift since the stored fingerprint item (none before a run that recorded an F&O part)."""
    if stored is None:
        return []
    return fo_diff((stored.get("fingerprint") or {}).get(PART), now)


def fo_drift_error(flow: Flow, lines: list[str], stored: dict[str, Any]) -> MetadataDrift:
    return MetadataDrift(
        f"the F&O metadata the {flow} flow relies on changed since run {stored.get('run_id')} "
        f"(nothing was written): {'; '.join(lines)} (remedy: {REMEDY})"
    )


def check_fo_drift(ctx: StepContext, flow: Flow, accept_drift: bool) -> list[str]:
    """Raise :class:`MetadataDrift` when the F&O part changed (unless accepted), else add it to this run's
    staged fingerprint. Returns the drift that was accepted."""
    from d365_anaplan.ledger.drift import Fingerprints

    store = Fingerprints(ctx.env.ledger_table)
    now = read_fo_fingerprint(ctx.cfg, ctx.dynamics.reader, flow)
    stored = store.current(ctx.connection, flow)
    lines = fo_verdict(stored, now)
    if lines and not accept_drift and stored is not None:
        raise fo_drift_error(flow, lines, stored)
    store.stage_part(ctx.connection, flow, ctx.run_id, PART, now, accepted=lines)
    return lines

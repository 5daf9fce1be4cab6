"""The pre-check's time-range verdict (issue 12, item 4): the periods a run will write, labelled by the period
formats (:func:`~d365_anaplan.flows.periods.format_period`), against the model's period labels, read from
the Time dimension of the line item ``mapping.actuals.time_source`` names
(:meth:`~d365_anaplan.anaplan.client.AnaplanClient.time_items`).

The run's periods are the close gate's (``$.gate.periods``; ``check`` computes the same window with the gate's
:func:`~d365_anaplan.steps.gate.close_gate`). A label the model does not have is refused as before or after
the model's time range (the model's labels that the format writes, from first to last) or, when none of the
model's labels is written by the format, as a label mismatch. Without the setting, without a Time dimension
or without read access to the line item's module (403, or the 404 Anaplan answers then) the verdict passes
as "not verified" with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from d365_anaplan.errors import AnaplanAuthError, AnaplanNotFound, BadInputData
from d365_anaplan.flows.calendar import add_months, parse_period
from d365_anaplan.flows.periods import format_period
from d365_anaplan.vocabulary import Flow

if TYPE_CHECKING:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.steps.preflight import Finding

REMEDY = (
    "run for periods inside the model's time range (--from/--to, or the close calendar), ask the model builder "
    "to extend the time range (Model settings > Time: past and future years), or set the period formats "
    "(mapping.actuals.period_format, mapping.plans.exports[].period_format) to the model's period labels; "
    "mapping.actuals.time_source names the line item whose Time dimension is read"
)
SEARCH_YEARS = 30  # how far around the window the model's labels are recognised


def _span(periods: Sequence[date]) -> str:
    first, last = periods[0].strftime("%Y-%m"), periods[-1].strftime("%Y-%m")
    return first if first == last else f"{first}..{last}"


def range_problem(
    window: Sequence[date], labels: Sequence[str], fmt: str, fiscal_start: int, setting: str
) -> str | None:
    """Why ``window`` (periods, first days) labelled by ``fmt`` does not fit the model's ``labels``; None if
    it does. With an empty window only the labels are compared (the format writes some of the model's)."""
    if not labels:
        return "the model's Time dimension has no periods"
    anchor = window or [datetime.now(UTC).date().replace(day=1)]
    ours: dict[str, date] = {}
    for i in range(-12 * SEARCH_YEARS, 12 * SEARCH_YEARS + (anchor[-1].year - anchor[0].year + 1) * 12):
        month = add_months(anchor[0], i)
        ours.setdefault(format_period(month, fmt, fiscal_start), month)
    known = sorted(ours[label] for label in labels if label in ours)
    theirs = set(labels)
    missing = [m for m in window if format_period(m, fmt, fiscal_start) not in theirs]
    if not known:
        written = format_period(anchor[0], fmt, fiscal_start)
        return (f"{setting} {fmt!r} writes period labels like {written!r}, which are not the model's period "
                f"labels ({list(labels[:3])}…)")  # fmt: skip
    if not missing:
        return None
    model_range = (f"{format_period(known[0], fmt, fiscal_start)!r}..{format_period(known[-1], fmt, fiscal_start)!r}"
                   f" ({_span([known[0], known[-1]])})")  # fmt: skip
    parts = []
    for where, group in (("before", [m for m in missing if m < known[0]]),
                         ("after", [m for m in missing if m > known[-1]]),
                         ("inside, but missing from", [m for m in missing if known[0] <= m <= known[-1]])):  # fmt: skip
        if group:
            shown = [format_period(m, fmt, fiscal_start) for m in group[:3]]
            parts.append(f"periods {_span(group)} ({shown}{'…' if len(group) > 3 else ''}) are {where} "
                         f"the model's time range {model_range}")  # fmt: skip
    return f"{setting} {fmt!r}: " + "; ".join(parts)


def formats_for(cfg: ConnectionConfig, flow: Flow) -> dict[str, str]:
    """The period formats ``flow`` writes or reads: setting -> format."""
    m = cfg.mapping
    if flow == "actuals":
        return {"mapping.actuals.period_format": m.actuals.period_format}
    return {f"mapping.plans.exports[{i}].period_format": e.period_format or m.actuals.period_format
            for i, e in enumerate(m.plans.exports)}  # fmt: skip


def time_range_findings(
    cfg: ConnectionConfig,
    client: AnaplanClient,
    flow: Flow | None,
    periods: Mapping[str, Sequence[str]] | None,
) -> list[Finding]:
    """One verdict per flow: its periods (``periods[flow]``, ``YYYY-MM``; absent: the labels only) against
    the model's period labels."""
    from d365_anaplan.steps.preflight import Finding

    flows: list[Flow] = [f for f in ("actuals", "plans") if flow in (None, f)]
    flows = [f for f in flows if f == "actuals" or cfg.mapping.plans.exports]
    source = cfg.mapping.actuals.time_source
    names = {f: f"model time range ({f})" for f in flows}
    if not source:
        return [
            Finding(names[f], True, "not verified: mapping.actuals.time_source is not set") for f in flows
        ]
    try:
        labels = client.time_items(source)
    except AnaplanAuthError as exc:
        return [Finding(names[f], True, f"not verified ({exc}; the user needs read access to the line item's "
                        "module)") for f in flows]  # fmt: skip
    except AnaplanNotFound as exc:
        if "no line item" in str(exc):
            return [Finding(names[f], False, f"mapping.actuals.time_source: {exc}", REMEDY, BadInputData)
                    for f in flows]  # fmt: skip
        return [Finding(names[f], True, f"not verified ({exc}; Anaplan answers 404 without read access to the "
                        "line item's module)") for f in flows]  # fmt: skip
    if labels is None:
        return [Finding(names[f], True, f"not verified: line item {source!r} has no Time dimension")
                for f in flows]  # fmt: skip
    out = []
    start = cfg.close_calendar.fiscal_year_start_month
    for f in flows:
        window = [parse_period(p, field="periods") for p in (periods or {}).get(f, [])]
        problems = [p for setting, fmt in formats_for(cfg, f).items()
                    if (p := range_problem(window, labels, fmt, start, setting))]  # fmt: skip
        if problems:
            out.append(Finding(names[f], False, "; ".join(problems), REMEDY, BadInputData))
        else:
            what = f"periods {_span(window)}" if window else "the period labels (no periods to write)"
            out.append(Finding(names[f], True, f"{what} in the Time dimension of {source!r}"))
    return out

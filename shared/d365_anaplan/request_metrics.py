"""Requests and throttling answers per system, counted on the HTTP session and emitted as metrics when a step
ends (``HttpRequests`` and ``HttpThrottled``, dimensions connection and system), so the dashboard shows how
hard each connection drives F&O and Anaplan and how often they pushed back with 429."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class ResponseCounts:
    requests: int = 0
    throttled: int = 0


def count_responses(session: Any) -> ResponseCounts:
    """Count every answer ``session`` receives (a requests response hook; the response is not touched)."""
    counts = ResponseCounts()

    def hook(response: Any, *_args: Any, **_kwargs: Any) -> None:
        counts.requests += 1
        if getattr(response, "status_code", None) == 429:
            counts.throttled += 1

    session.hooks.setdefault("response", []).append(hook)
    return counts


def emit(connection: str, system: str, counts: ResponseCounts) -> None:
    """Two EMF records per system (not added to the handler's own metric set, whose dimensions differ)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    if metrics_disabled():
        return
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "D365Anaplan")
    dims = {"connection": connection, "system": system}
    for name, value in (("HttpRequests", counts.requests), ("HttpThrottled", counts.throttled)):
        with single_metric(
            name=name, unit=MetricUnit.Count, value=value, namespace=namespace, default_dimensions=dims
        ):
            pass


def metrics_disabled() -> bool:
    """Powertools' POWERTOOLS_METRICS_DISABLED (set by the local engine), which ``single_metric`` ignores."""
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() in ("1", "true", "yes")

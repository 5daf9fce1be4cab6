"""The one way a step handler is written: parse, build the context, call the step, return small JSON.

``@step(Model)`` turns ``fn(ctx, event)`` into a Lambda handler with Powertools applied (Logger with the run's
keys and no event logging, Tracer, Metrics); exceptions propagate unchanged so their class name becomes
the ASL error.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from pydantic import BaseModel, ConfigDict

from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.request_metrics import emit as emit_responses
from d365_anaplan.steps.context import StepContext


class StepEvent(BaseModel):
    """Fields every step event carries (the ASL passes ``$$.Execution.Id``)."""

    model_config = ConfigDict(extra="ignore")

    connection: str
    execution: str
    dry_run: bool = False


def step[E: StepEvent](
    model: type[E],
) -> Callable[[Callable[[StepContext, E], dict[str, Any]]], Callable[[dict[str, Any], Any], dict[str, Any]]]:
    def decorate(
        fn: Callable[[StepContext, E], dict[str, Any]],
    ) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        @logger.inject_lambda_context(log_event=False, clear_state=True)
        @tracer.capture_lambda_handler
        @metrics.log_metrics
        @wraps(fn)
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            ev = model.model_validate(event)
            remaining = getattr(context, "get_remaining_time_in_millis", None)
            ctx = StepContext(ev.connection, ev.execution, remaining or (lambda: 900_000))
            logger.append_keys(run_id=ctx.run_id, connection=ev.connection, step=fn.__module__)
            try:
                return fn(ctx, ev)
            finally:
                for system, counts in ctx.responses.items():
                    emit_responses(ev.connection, system, counts)

        return handler

    return decorate

"""The one way a step handler is written: parse, build the context, call the step, return small JSON.

Handlers apply Powertools (Logger with the run's keys and no event logging, Tracer, Metrics) and this
decorator; exceptions propagate unchanged so their class name becomes the ASL error.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from pydantic import BaseModel, ConfigDict

from d365_anaplan.observability import logger
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
        @wraps(fn)
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            ev = model.model_validate(event)
            remaining = getattr(context, "get_remaining_time_in_millis", None)
            ctx = StepContext(ev.connection, ev.execution, remaining or (lambda: 900_000))
            logger.append_keys(run_id=ctx.run_id, connection=ev.connection, step=fn.__name__)
            return fn(ctx, ev)

        return handler

    return decorate

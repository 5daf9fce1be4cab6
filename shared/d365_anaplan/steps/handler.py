"""The one way a step handler is written: parse, build the context, call the step, return small JSON.

``@step(Event, Output)`` turns ``fn(ctx, event)`` into a Lambda handler with Powertools applied (Logger with the
run's keys and no event logging, Tracer, Metrics); exceptions propagate unchanged so their class name becomes
the ASL error. What the step returns is checked against ``Output`` (:class:`StepOutput`: the fields the flows
read; ``tests/contract/test_asl_pinned.py`` ties them to the ResultSelectors) and returned unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from pydantic import BaseModel, ConfigDict

from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.steps.context import StepContext


class StepEvent(BaseModel):
    """Fields every step event carries (the ASL passes ``$$.Execution.Id``)."""

    model_config = ConfigDict(extra="ignore")

    connection: str
    execution: str
    dry_run: bool = False


class StepOutput(BaseModel):
    """The fields of a step's result that the flows read (a ResultSelector, a later state); it may return more."""

    model_config = ConfigDict(extra="allow")


class StagedImport(BaseModel):
    """A staged file for an Anaplan import (the master-data steps' ``imports``)."""

    action: str
    key: str
    rows: int


def checked[O: BaseModel](output: type[O], result: dict[str, Any]) -> dict[str, Any]:
    """``result`` unchanged once it has every field ``output`` declares, of its type (else ValidationError)."""
    output.model_validate(result)
    return result


def step[E: StepEvent](
    model: type[E],
    output: type[BaseModel],
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
            return checked(output, fn(ctx, ev))

        return handler

    return decorate

"""The one way a step handler is written: parse, build the context, call the step, return small JSON.

``@step(Event, Output)`` turns ``fn(ctx, event)`` into a Lambda handler with Powertools applied (Logger with the
run's keys and no event logging, Tracer, Metrics); ``@handler(Event, Output)`` does the same for ``fn(event)``
where the event names no run step (the ledger, the lease, the gate; EventBridge through a Powertools envelope).
Exceptions propagate unchanged so their class name becomes the ASL error. What the step returns is checked against ``Output`` (:class:`StepOutput`: the fields the flows
read; ``tests/contract/test_asl_pinned.py`` ties them to the ResultSelectors) and returned unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.envelopes import BaseEnvelope as Envelope
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


Output = type[BaseModel] | Mapping[str, type[BaseModel]]  # one model, or one per ``op`` of the event
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _lambda[E: BaseModel](
    model: type[E], output: Output, envelope: type[Envelope] | None, call: Callable[[E, Any], dict[str, Any]]
) -> Handler:
    """The one handler body: Powertools (Logger without the event, Tracer, Metrics), parse, call, check."""

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ev = model.model_validate(parse(event=event, model=model, envelope=envelope) if envelope else event)
        result = call(ev, context)
        return checked(output[str(ev.op)] if isinstance(output, Mapping) else output, result)  # type: ignore[attr-defined]

    return lambda_handler


def handler[E: BaseModel](
    model: type[E], output: Output, *, envelope: type[Envelope] | None = None
) -> Callable[[Callable[[E], dict[str, Any]]], Handler]:
    """A handler whose event names no run step (the ledger, the lease, the gate, EventBridge): ``fn(event)``,
    the event parsed by Powertools' parser (through ``envelope`` when given)."""

    def decorate(fn: Callable[[E], dict[str, Any]]) -> Handler:
        return wraps(fn)(_lambda(model, output, envelope, lambda ev, _: fn(ev)))

    return decorate


def step[E: StepEvent](
    model: type[E], output: Output
) -> Callable[[Callable[[StepContext, E], dict[str, Any]]], Handler]:
    """A run step's handler: ``fn(ctx, event)`` with the run's :class:`StepContext` and log keys."""

    def decorate(fn: Callable[[StepContext, E], dict[str, Any]]) -> Handler:
        def call(ev: E, context: Any) -> dict[str, Any]:
            remaining = getattr(context, "get_remaining_time_in_millis", None)
            ctx = StepContext(ev.connection, ev.execution, remaining or (lambda: 900_000))
            logger.append_keys(run_id=ctx.run_id, connection=ev.connection, step=fn.__module__)
            try:
                return fn(ctx, ev)
            finally:
                for system, counts in ctx.responses.items():
                    emit_responses(ev.connection, system, counts)

        return wraps(fn)(_lambda(model, output, None, call))

    return decorate

"""Words every layer of the connector shares, defined once: the flows, and the period window a run asks for."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Flow = Literal["actuals", "plans"]
FLOWS: tuple[Flow, ...] = ("actuals", "plans")


class PeriodWindow(BaseModel):
    """``{"from": "YYYY-MM", "to": "YYYY-MM"}`` of a run request (either end may be left to the close gate);
    unknown keys are refused with their names."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None

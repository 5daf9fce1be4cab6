"""The close calendar (when a month's actuals are due) and the schedules of a connection's flows."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CloseCalendar(BaseModel):
    """When a month's actuals are due: business day N after month end, in the connection's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(default="UTC", description="IANA time zone of the close calendar")
    business_day: int = Field(
        default=3, ge=1, le=20, description="a month's actuals are due on business day N after month end"
    )
    fiscal_year_start_month: int = Field(
        default=1,
        ge=1,
        le=12,
        description="first month of the fiscal year (fiscal period tokens, the plan horizon)",
    )
    holidays: list[date] = Field(default_factory=list, description="dates that are no business days")
    first_period: str | None = Field(
        default=None, description="`YYYY-MM`: the earliest period the fiscal calendar knows"
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class ScheduleSettings(BaseModel):
    """When EventBridge Scheduler starts the flows of a connection uploaded to the config bucket (the
    ScheduleSync function keeps the schedules in step with the file). An expression of None: no schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actuals: str | None = Field(
        default="cron(0 6 ? * MON-FRI *)",
        description=(
            "for connections uploaded to the config bucket: when the actuals flow starts "
            "(`cron(…)`/`rate(…)`, or `null` = not scheduled); every business morning by default, the"
            " close gate decides what is due"
        ),
    )
    plans: str | None = Field(
        default="cron(0 7 1 * ? *)",
        description="when the plans flow starts (`cron(…)`/`rate(…)`, or `null` = not scheduled)",
    )
    timezone: str | None = Field(
        default=None, description="IANA time zone of the schedules (default `close_calendar.timezone`)"
    )
    enabled: bool = Field(default=True, description="`false` keeps the schedules but disables them")

    @field_validator("actuals", "plans")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"(cron|rate)\([^()]+\)", value.strip()):
            raise ValueError(f"{value!r} is not a schedule expression: cron(...) or rate(...)")
        return value.strip() if value else value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return value if value is None else CloseCalendar._tz(value)

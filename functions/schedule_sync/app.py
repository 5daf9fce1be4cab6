"""Keep each uploaded connection's EventBridge Scheduler schedules in step with the config bucket
(S3 "Object Created" / "Object Deleted" through EventBridge; ``{"sync": "all"}`` for everything):
see d365_anaplan.schedules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from d365_anaplan.schedules import sync_event
from d365_anaplan.steps.handler import StepOutput, handler


class S3Bucket(BaseModel):
    name: str


class S3Object(BaseModel):
    key: str


class ObjectDetail(BaseModel):
    bucket: S3Bucket
    object: S3Object


class ScheduleSyncEvent(BaseModel):
    """An S3 "Object Created"/"Object Deleted" event delivered by EventBridge (the config bucket sends its
    events there), or ``{"sync": "all"}`` for a manual full sync (``aws lambda invoke``)."""

    model_config = ConfigDict(populate_by_name=True)

    sync: Literal["all"] | None = None
    detail_type: Literal["Object Created", "Object Deleted"] | None = Field(default=None, alias="detail-type")
    source: Literal["aws.s3"] | None = None
    detail: ObjectDetail | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSyncEvent:
        if (self.sync is None) == (self.detail is None or self.detail_type is None or self.source is None):
            raise ValueError(
                'expected an S3 event from EventBridge (detail-type, source, detail) or {"sync": "all"}'
            )
        return self

    def s3_object(self) -> tuple[str, str, bool] | None:
        """``(bucket, key, deleted)`` of an S3 event; None for a full sync."""
        if self.detail is None:
            return None
        return self.detail.bucket.name, self.detail.object.key, self.detail_type == "Object Deleted"


class SyncOutput(StepOutput):
    """One object's result (``key``, ``connection``, what changed or why it was ignored), or a full sync's
    ``synced`` and ``problems``; nothing reads them but the log and ``aws lambda invoke``."""


EVENT_MODEL = ScheduleSyncEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = SyncOutput


@handler(ScheduleSyncEvent, SyncOutput)
def lambda_handler(ev: ScheduleSyncEvent) -> dict[str, Any]:
    return sync_event(ev.s3_object())

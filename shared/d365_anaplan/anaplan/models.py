"""Pydantic models of the Anaplan payloads the client reads (auth, OAuth, Integration API v2).

Unknown fields are ignored (Anaplan adds fields over time, e.g. ``refreshToken`` on authenticate) and
empty collections may be missing (Anaplan omits empty arrays), so every list defaults to empty.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# --- auth -------------------------------------------------------------------------------------------


class TokenInfo(_Model):
    token_id: str | None = Field(default=None, alias="tokenId")
    token_value: str = Field(alias="tokenValue", repr=False)
    expires_at: int = Field(alias="expiresAt")
    refresh_token_id: str | None = Field(default=None, alias="refreshTokenId", repr=False)


class AuthResponse(_Model):
    status: str
    status_message: str | None = Field(default=None, alias="statusMessage")
    token_info: TokenInfo = Field(alias="tokenInfo")


class AuthFailure(_Model):
    status: str | None = None
    status_message: str | None = Field(default=None, alias="statusMessage")


class DeviceCode(_Model):
    device_code: str = Field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    expires_in: int
    interval: int = 5


class OAuthTokens(_Model):
    access_token: str = Field(repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    expires_in: int = 2100
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    scope: str | None = None


class OAuthError(_Model):
    error: str
    error_description: str | None = None


# --- envelopes ---------------------------------------------------------------------------------------


class Status(_Model):
    code: int | None = None
    message: str | None = None


class Paging(_Model):
    current_page_size: int = Field(default=0, alias="currentPageSize")
    total_size: int = Field(default=0, alias="totalSize")
    offset: int = 0
    next: str | None = None


class Meta(_Model):
    paging: Paging | None = None


class Named(_Model):
    id: str
    name: str


class Workspace(Named):
    active: bool | None = None


class ModelInfo(Named):
    active_state: str | None = Field(default=None, alias="activeState")
    current_workspace_id: str | None = Field(default=None, alias="currentWorkspaceId")


class FileInfo(Named):
    chunk_count: int = Field(default=0, alias="chunkCount")
    delimiter: str | None = None
    encoding: str | None = None
    first_data_row: int | None = Field(default=None, alias="firstDataRow")
    header_row: int | None = Field(default=None, alias="headerRow")
    separator: str | None = None
    format: str | None = None


class ImportInfo(Named):
    import_type: str | None = Field(default=None, alias="importType")
    import_data_source_id: str | None = Field(default=None, alias="importDataSourceId")


class ExportInfo(Named):
    export_type: str | None = Field(default=None, alias="exportType")
    export_format: str | None = Field(default=None, alias="exportFormat")


class ProcessInfo(Named):
    pass


class ListInfo(Named):
    pass


class ListItem(_Model):
    id: str | None = None
    name: str
    code: str | None = None
    parent: str | None = None
    parent_id: str | None = Field(default=None, alias="parentId")
    properties: dict[str, str] = Field(default_factory=dict)


class ImportSource(_Model):
    text_encoding: str | None = Field(default=None, alias="textEncoding")
    column_separator: str = Field(default=",", alias="columnSeparator")
    text_delimiter: str | None = Field(default='"', alias="textDelimiter")
    header_row: int = Field(default=1, alias="headerRow")
    first_data_row: int = Field(default=2, alias="firstDataRow")
    decimal_separator: str | None = Field(default=".", alias="decimalSeparator")
    header_names: list[str] = Field(default_factory=list, alias="headerNames")
    column_count: int | None = Field(default=None, alias="columnCount")


class ImportMetadata(_Model):
    name: str | None = None
    type: str | None = None
    source: ImportSource | None = None


class FiscalYear(_Model):
    """``GET …/models/{id}/modelCalendar``: ``modelCalendar.fiscalYear`` (the current fiscal year)."""

    year: str
    start_date: date = Field(alias="startDate")
    end_date: date = Field(alias="endDate")


class ModelStatus(_Model):
    """``GET …/models/{id}/status`` (a bare ``requestStatus``): ``progress`` -1.0 means idle."""

    current_step: str | None = Field(default=None, alias="currentStep")
    progress: float | None = None
    task_id: str | None = Field(default=None, alias="taskId")
    tooltip: str | None = None

    @property
    def busy(self) -> bool:
        return self.progress is not None and self.progress >= 0


class Chunk(_Model):
    id: str
    name: str | None = None


# --- tasks -------------------------------------------------------------------------------------------

TaskState = Literal["NOT_STARTED", "IN_PROGRESS", "COMPLETE", "CANCELLING", "CANCELLED"]
TERMINAL_STATES: frozenset[str] = frozenset({"COMPLETE", "CANCELLED"})


class ResultDetail(_Model):
    type: str | None = None
    local_message_text: str | None = Field(default=None, alias="localMessageText")
    occurrences: int | None = None
    values: list[str] = Field(default_factory=list)

    def pairs(self) -> dict[str, str]:
        """``values`` is a flat key, value, key, value ... list; return it as a mapping."""
        return dict(zip(self.values[0::2], self.values[1::2], strict=False))


class TaskResult(_Model):
    successful: bool = False
    failure_dump_available: bool = Field(default=False, alias="failureDumpAvailable")
    object_id: str | None = Field(default=None, alias="objectId")
    object_name: str | None = Field(default=None, alias="objectName")
    details: list[ResultDetail] = Field(default_factory=list)
    nested_results: list[TaskResult] = Field(default_factory=list, alias="nestedResults")


class Task(_Model):
    task_id: str = Field(alias="taskId")
    task_state: str = Field(default="NOT_STARTED", alias="taskState")
    current_step: str | None = Field(default=None, alias="currentStep")
    progress: float | None = None
    creation_time: int | None = Field(default=None, alias="creationTime")
    result: TaskResult | None = None


class Outcome(StrEnum):
    """How a finished task went (``COMPLETE`` alone does not mean success)."""

    SUCCESS = "success"
    SUCCESS_WITH_WARNINGS = "success_with_warnings"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RowCounts(_Model):
    """The ``hierarchyRowsProcessed`` counters of an import (summed over its details)."""

    total: int = 0
    success: int = 0
    created: int = 0
    updated: int = 0
    warnings: int = 0
    failed: int = 0
    ignored: int = 0
    invalid: int = 0

"""What ``GET /models`` and ``GET /models/{id}`` return, with and without ``modelDetails=true``.

Per anaplan-shapes.md §5 (CONFIRMED): without details a model has ``id, name, activeState, currentWorkspaceId,
currentWorkspaceName, modelUrl, categoryValues``; ``modelDetails=true`` adds ``lastSavedSerialNumber`` (a
number in Anaplan's example although the OpenAPI types it string - we send the number, which the independent
anaplan-sdk also expects), ``lastModifiedByUserGuid`` (32 hex), ``memoryUsage`` (bytes), ``isoCreationDate`` and
``lastModified`` (``2022-02-10T19:14:23.000+0000``), and on the single-model call ``modelTransactionRunning``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

_ISO = "%Y-%m-%dT%H:%M:%S.000+0000"


@dataclass(frozen=True)
class ModelFacts:
    """The fixed facts of one sandbox model."""

    id: str
    name: str
    workspace_id: str
    workspace_name: str
    created: str = "2023-03-14T08:12:45.000+0000"
    last_modified: str = "2025-11-28T17:41:02.000+0000"
    serial: int = 2_000_000
    memory_usage: int = 734_003_200
    modified_by: str = "integration@example.com"


def model_view(
    facts: ModelFacts,
    state: str,
    *,
    details: bool,
    single: bool = False,
    transaction_running: bool = False,
    serial_offset: int = 0,
) -> dict[str, Any]:
    """One model as the Integration API shows it."""
    view: dict[str, Any] = {
        "id": facts.id,
        "name": facts.name,
        "activeState": state,
        "currentWorkspaceId": facts.workspace_id,
        "currentWorkspaceName": facts.workspace_name,
        "modelUrl": f"https://us1a.app.anaplan.com/core?selectedWorkspaceId={facts.workspace_id}"
        f"&selectedModelId={facts.id}",
        "categoryValues": [],
    }
    if details:
        view.update(
            lastSavedSerialNumber=facts.serial + serial_offset,
            lastModifiedByUserGuid=uuid.uuid5(uuid.NAMESPACE_DNS, facts.modified_by).hex,
            memoryUsage=facts.memory_usage,
            isoCreationDate=facts.created,
            lastModified=facts.last_modified,
        )
        if single:
            view["modelTransactionRunning"] = transaction_running
    return view

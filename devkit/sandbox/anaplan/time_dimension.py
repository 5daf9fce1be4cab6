"""Line items and their Time dimension as the Anaplan sandbox serves them (issue 12, item 4).

As the integration API answers (integration-openapi; anaplan-shapes.md §3): ``GET …/lineItems`` lists every
line item with its module (``moduleId``, ``moduleName``, ``id``, ``name``); ``GET …/lineItems/{id}/dimensions``
the dimensions that define it, Time as ``{"id": "20000000003", "name": "Time"}``; and
``GET …/lineItems/{id}/dimensions/{dimId}/items`` the dimension's items in model order (Time included, which
the model-level dimension call refuses with 400). A missing ``items`` key means no items. A line item or
dimension that does not exist answers 404, as does a user whose role cannot read the line item's module.

The sandbox models the time range as the module dimension whose list is ``Periods`` (``seed.period_labels``):
its members are the Time items, so a seed's ``years`` is the model's time range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devkit.sandbox.anaplan.seed import ModelSeed, ModuleDef

TIME_ID = "20000000003"
TIME_LIST = "Periods"


@dataclass
class ModuleAccess:
    readers: set[str] | None = None  # users whose role may read the modules; None = every user


def line_item_id(module: ModuleDef, index: int) -> str:
    return f"206{int(module.id[3:]):06d}{index:03d}"


def line_items(seed: ModelSeed) -> list[dict[str, Any]]:
    return [{"moduleId": m.id, "moduleName": m.name, "id": line_item_id(m, i), "name": name}
            for m in seed.modules.values() for i, name in enumerate(m.line_items)]  # fmt: skip


def _find(seed: ModelSeed, item_id: str) -> ModuleDef | None:
    return next((m for m in seed.modules.values()
                 for i in range(len(m.line_items)) if line_item_id(m, i) == item_id), None)  # fmt: skip


def dimensions(seed: ModelSeed, item_id: str) -> list[dict[str, Any]] | None:
    """The line item's dimensions (None: no such line item)."""
    module = _find(seed, item_id)
    if module is None:
        return None
    return [{"id": TIME_ID, "name": "Time"} if lst == TIME_LIST else {"id": seed.lists[lst].id, "name": lst}
            for _, lst in module.dimensions if lst in seed.lists]  # fmt: skip


def dimension_items(
    seed: ModelSeed, access: ModuleAccess, user: str | None, item_id: str, dim_id: str
) -> tuple[int, dict[str, Any]]:
    """Status and payload of ``GET …/lineItems/{id}/dimensions/{dimId}/items`` for ``user``."""
    dims = dimensions(seed, item_id)
    if dims is None or (access.readers is not None and user not in access.readers):
        return 404, {}
    found = next((d for d in dims if d["id"] == dim_id), None)
    if found is None:
        return 404, {}
    members = seed.lists[TIME_LIST if dim_id == TIME_ID else found["name"]].members.values()
    items = [{"id": m.id, "name": m.name} for m in members]
    return 200, {"items": items} if items else {}

"""The flows hand the model lease to every step that acts on the Anaplan model.

* A function acts on the model when its handler's event model requires ``lease``; those are exactly the
  upload, start, check and prepare-actuals functions.
* Each Task invoking one passes ``"lease.$": "$.lease"`` (inside a Map, the Map's ``ItemSelector`` carries
  ``$.lease`` into the iteration), and only ``AcquireModelLease`` writes ``$.lease``.
* No such Task can be reached from ``StartAt`` without passing ``AcquireModelLease``.
* ``AcquireModelLease`` passes the state machine's ``TimeoutSeconds`` as ``execution_timeout_seconds``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ["actuals", "plans"]
ACTING = {"anaplan_upload", "anaplan_start", "anaplan_check", "prepare_actuals"}


@cache
def template() -> dict[str, Any]:
    tpl, matches = decode(str(ROOT / "template.yaml"))
    assert tpl is not None, matches
    return dict(json.loads(json.dumps(tpl)))


@cache
def handler(folder: str) -> ModuleType:
    path = ROOT / "functions" / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"_lease_contract_{folder}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def needs_lease(folder: str) -> bool:
    field = handler(folder).EVENT_MODEL.model_fields.get("lease")
    return field is not None and field.is_required()


def definition(flow: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "statemachine" / f"{flow}.asl.json").read_text(encoding="utf-8")))


def folder_of(flow: str, state: dict[str, Any]) -> str | None:
    if state["Type"] != "Task":
        return None
    m = re.fullmatch(r"\$\{(\w+)\}", state["Parameters"]["FunctionName"])
    assert m
    machine = next(
        r["Properties"]
        for r in template()["Resources"].values()
        if r.get("Type") in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
        and r["Properties"].get("DefinitionUri", r["Properties"].get("DefinitionS3Location"))
        == f"statemachine/{flow}.asl.json"
    )
    att = machine["DefinitionSubstitutions"][m.group(1)]["Fn::GetAtt"]
    logical = att[0] if isinstance(att, list) else att.split(".")[0]
    return str(template()["Resources"][logical]["Properties"]["CodeUri"]).strip("/").split("/")[-1]


def acting_states(flow: str) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(name, Task state, enclosing Map state or None) of every Task whose function needs the lease."""
    out = []
    for name, state in definition(flow)["States"].items():
        inner = state.get("ItemProcessor", {}).get("States", {}) if state["Type"] == "Map" else {}
        for inner_name, st in inner.items():
            if (f := folder_of(flow, st)) and needs_lease(f):
                out.append((f"{name}/{inner_name}", st, state))
        if (f := folder_of(flow, state)) and needs_lease(f):
            out.append((name, state, None))
    return out


def successors(state: dict[str, Any]) -> list[str]:
    nxt = [state.get("Next"), state.get("Default")]
    nxt += [c.get("Next") for c in state.get("Choices", [])]
    nxt += [c.get("Next") for c in state.get("Catch", [])]
    return [n for n in nxt if n]


def test_the_acting_functions_require_the_lease() -> None:
    folders = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))
    assert {f for f in folders if hasattr(handler(f), "EVENT_MODEL") and needs_lease(f)} == ACTING


@pytest.mark.parametrize("flow", FLOWS)
def test_every_acting_task_gets_the_acquired_lease(flow: str) -> None:
    found = acting_states(flow)
    assert found, f"{flow}: no Task acts on the Anaplan model"
    for name, state, in_map in found:
        assert state["Parameters"]["Payload"].get("lease.$") == "$.lease", f"{flow}.{name}: lease not passed"
        if in_map is not None:
            assert in_map["ItemSelector"].get("lease.$") == "$.lease", f"{flow}.{name}: Map drops $.lease"
    writers = [
        n
        for n, st in definition(flow)["States"].items()
        if str(st.get("ResultPath", "")).startswith("$.lease")
        or "lease" in (st.get("Parameters") or {})
        or "lease.$" in (st.get("Parameters") or {})
    ]
    assert writers == ["AcquireModelLease"], f"{flow}: $.lease written by {writers}"


@pytest.mark.parametrize("flow", FLOWS)
def test_no_acting_task_runs_before_the_lease_is_acquired(flow: str) -> None:
    states = definition(flow)["States"]
    seen, todo = set(), [definition(flow)["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen or name == "AcquireModelLease":
            continue
        seen.add(name)
        todo += successors(states[name])
    early = [n for n, _, in_map in acting_states(flow) if n.split("/")[0] in seen]
    assert not early, f"{flow}: {early} can run before AcquireModelLease"


@pytest.mark.parametrize("flow", FLOWS)
def test_the_lease_lasts_the_execution_timeout(flow: str) -> None:
    d = definition(flow)
    acquire = d["States"]["AcquireModelLease"]
    assert acquire["Parameters"]["Payload"]["execution_timeout_seconds"] == d["TimeoutSeconds"]
    assert acquire["ResultSelector"]["ttl_seconds.$"] == "$.Payload.ttl_seconds"
    assert acquire["ResultPath"] == "$.lease"

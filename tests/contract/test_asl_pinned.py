"""The ASL is pinned to the code.

* Every Task state's ``Retry`` is exactly one of the named lists of ``statemachine/retry-policies.json``
  (three shapes, defined once), and every named list is used.
* Every field a ResultSelector takes from ``$.Payload`` is declared by the step's output model
  (``OUTPUT_MODEL`` of its handler, or ``OUTPUT_MODELS[op]``; the handler validates what it returns against it).
* Every later read ``$.<result path>.<field>`` (Choice variables, Parameters, ItemsPath, intrinsic functions)
  in the same state list names a field that some state writing that result path puts there.

Each check is shown to fail on a planted mismatch.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from test_asl_retry_coverage import tasks
from test_lease_asl import definition, folder_of, handler

from d365_anaplan.steps.anaplan_tasks import TaskRef
from d365_anaplan.steps.handler import checked

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ["actuals", "plans"]
READ = re.compile(r"(?<!\$)\$\.([A-Za-z_]\w*)\.([A-Za-z_]\w*)")


def policies() -> dict[str, list[dict[str, Any]]]:
    raw = json.loads((ROOT / "statemachine" / "retry-policies.json").read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def retry_problems(flow: str, states: dict[str, Any]) -> list[str]:
    named = policies()
    return [
        f"{flow}/{name}: its Retry is none of {sorted(named)} (statemachine/retry-policies.json)"
        for name, state in tasks(states)
        if state.get("Retry") not in named.values()
    ]


def output_model(folder: str, state: dict[str, Any]) -> type[BaseModel]:
    module = handler(folder)
    if hasattr(module, "OUTPUT_MODELS"):
        return module.OUTPUT_MODELS[state["Parameters"]["Payload"]["op"]]  # type: ignore[no-any-return]
    return module.OUTPUT_MODEL  # type: ignore[no-any-return]


def declared(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def selector_problems(flow: str, states: dict[str, Any]) -> list[str]:
    problems = []
    for name, state in tasks(states):
        folder = folder_of(flow, state)
        assert folder is not None
        model = output_model(folder, state)
        for key, path in (state.get("ResultSelector") or {}).items():
            m = re.fullmatch(r"\$\.Payload(?:\.([A-Za-z_]\w*).*)?", path)
            assert m, f"{flow}/{name}: ResultSelector {key} reads {path}, not the Lambda's Payload"
            if m.group(1) and m.group(1) not in declared(model):
                problems.append(
                    f"{flow}/{name}: ResultSelector reads {path}; {model.__name__} has no {m.group(1)!r}"
                )
    return problems


def _scopes(states: dict[str, Any]) -> list[dict[str, Any]]:
    """Every state list: the top one and each Map/Parallel body (``$`` means a different document in each)."""
    out = [states]
    for state in states.values():
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if nested:
                out += _scopes(nested["States"])
    return out


def read_problems(flow: str, states: dict[str, Any]) -> list[str]:
    problems = []
    for scope in _scopes(states):
        written: dict[str, set[str]] = defaultdict(set)
        for state in scope.values():
            root = re.fullmatch(r"\$\.([A-Za-z_]\w*)", str(state.get("ResultPath")))
            if root is None:
                continue
            shape = (
                state.get("ResultSelector")
                if state["Type"] == "Task"
                else state.get("Result", state.get("Parameters"))
            )
            if isinstance(shape, dict):
                written[root.group(1)] |= {k.removesuffix(".$") for k in shape}
        selected = {p for p, fields in written.items() if fields}
        for name, state in scope.items():
            body = {k: v for k, v in state.items() if k not in ("ItemProcessor", "Iterator", "Branches")}
            for root, field in READ.findall(json.dumps(body)):
                if root in selected and field not in written[root]:
                    problems.append(f"{flow}/{name}: reads $.{root}.{field}; no state writes {field!r} there")
    return problems


@pytest.mark.parametrize("flow", FLOWS)
def test_every_retry_is_a_named_policy(flow: str) -> None:
    assert retry_problems(flow, definition(flow)["States"]) == []


def test_every_named_policy_is_used() -> None:
    used = [state.get("Retry") for flow in FLOWS for _, state in tasks(definition(flow)["States"])]
    assert [name for name, policy in policies().items() if policy not in used] == []


@pytest.mark.parametrize("flow", FLOWS)
def test_every_selected_field_is_in_the_output_model(flow: str) -> None:
    assert selector_problems(flow, definition(flow)["States"]) == []


@pytest.mark.parametrize("flow", FLOWS)
def test_every_later_read_names_a_selected_field(flow: str) -> None:
    assert read_problems(flow, definition(flow)["States"]) == []


def _planted(flow: str, state_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    states = copy.deepcopy(definition(flow)["States"])
    return states, next(s for n, s in tasks(states) if n.rsplit("/", 1)[-1] == state_name)


def test_a_changed_retry_is_reported() -> None:
    states, victim = _planted("actuals", "OpenRun")
    victim["Retry"][0]["MaxAttempts"] += 1
    assert retry_problems("actuals", states) == [
        "actuals/OpenRun: its Retry is none of ['acts-on-model', 'lease-acquire', 'standard'] "
        "(statemachine/retry-policies.json)"
    ]


def test_a_selected_field_the_step_does_not_return_is_reported() -> None:
    states, victim = _planted("plans", "ReconcilePlan")
    victim["ResultSelector"]["matched_lines.$"] = "$.Payload.matched_lines"
    assert selector_problems("plans", states) == [
        "plans/ReconcilePlan: ResultSelector reads $.Payload.matched_lines; ReconcileOutput has no 'matched_lines'"
    ]


def test_a_later_read_of_an_unselected_field_is_reported() -> None:
    states = copy.deepcopy(definition("actuals")["States"])
    for _, state in tasks(states):
        if state.get("ResultPath") == "$.task":  # every state that writes $.task stops selecting terminal
            del state["ResultSelector"]["terminal.$"]
    assert any("reads $.task.terminal" in p for p in read_problems("actuals", states))


def test_a_handler_result_missing_a_declared_field_is_refused() -> None:
    ref = {
        "kind": "imports",
        "action": "Load",
        "action_id": "112",
        "task_id": "T1",
        "step": "S",
        "started_at": "t",
    }
    assert checked(TaskRef, ref) is ref
    with pytest.raises(ValidationError, match="task_id"):
        checked(TaskRef, {k: v for k, v in ref.items() if k != "task_id"})

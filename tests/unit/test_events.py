"""The sample events in ``events/`` parse with the models their targets validate, and look like what the
state machines really send.

* ``events/<function folder>.json`` or ``events/<function folder>-<operation>.json``: the payload a Lambda
  function receives (``sam local invoke -e``). It is validated with the handler module's ``EVENT_MODEL``.
  run_ledger's ``EVENT_MODEL`` is the discriminated ``Event`` root model (unwrapped with ``.root``; a
  ``start`` event's ``request`` is validated as ``RunRequest`` too, as the step does).
* ``events/<flow>-flow-<variant>.json``: a state-machine execution input (Step Functions console, CLI, the
  schedule), validated as ``RunRequest`` from ``d365_anaplan.steps.runs`` (what ``OpenRun`` checks).

Every function folder must have at least one event and every flow a schedule input, so adding a function
or a flow without a sample fails here.
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
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
FUNCTIONS = ROOT / "functions"
STATEMACHINES = ROOT / "statemachine"

FUNCTION_FOLDERS = sorted(p.parent.name for p in FUNCTIONS.glob("*/app.py"))
FLOWS = sorted(p.name.removesuffix(".asl.json") for p in STATEMACHINES.glob("*.asl.json"))
EVENT_FILES = sorted(EVENTS.glob("*.json"))

# Events that no state machine sends, with the reason; every other function event must match the Payload of
# a Task state that invokes that function.
NOT_FROM_A_FLOW = {
    "lease_janitor": "EventBridge delivers it (Step Functions Execution Status Change), not a flow",
    "model_lease-renew": "the acting steps renew the lease themselves; the operation exists for the console",
    "schedule_sync-created": "EventBridge delivers the config bucket's S3 events, not a flow",
    "schedule_sync-deleted": "EventBridge delivers the config bucket's S3 events, not a flow",
    "schedule_sync-all": "a manual full sync (aws lambda invoke), not a flow",
    "run_notifier": "EventBridge delivers it (Step Functions Execution Status Change), not a flow",
}
# Keys a flow sends that the handler's model ignores (pydantic's default extra="ignore"), by function folder.
IGNORED_BY_DESIGN = {
    "model_lease": {"flow"},  # the lease is per Anaplan model, whichever flow holds it
}
_FLOW_EVENT = re.compile(r"^(?P<flow>[a-z0-9_]+)-flow-(?P<variant>[a-z0-9-]+)$")
_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z0-9_]+)\}$")


# -- helpers ------------------------------------------------------------------------------------------------


def target_of(path: Path) -> tuple[str, str]:
    """``("flow", <flow>)`` or ``("function", <folder>)`` for an event file (names are not checked here)."""
    m = _FLOW_EVENT.match(path.stem)
    if m:
        return "flow", m.group("flow")
    return "function", path.stem.split("-", 1)[0]


@cache
def handler_module(folder: str) -> ModuleType:
    """Load ``functions/<folder>/app.py`` under a unique name (every handler module is called ``app``)."""
    path = FUNCTIONS / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"_events_handler_{folder}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    # pydantic resolves the postponed annotations of the module's models through sys.modules
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def event_model(folder: str) -> type[BaseModel]:
    model = getattr(handler_module(folder), "EVENT_MODEL", None)
    assert isinstance(model, type) and issubclass(model, BaseModel), (
        f"functions/{folder}/app.py: no module-level EVENT_MODEL naming the pydantic model its handler validates"
    )
    return model


def run_request_model() -> type[BaseModel]:
    from d365_anaplan.steps.runs import RunRequest

    return RunRequest


def load_event(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def validate(path: Path) -> BaseModel:
    kind, name = target_of(path)
    event = load_event(path)
    if kind == "flow":
        return run_request_model().model_validate(event)
    return event_model(name).model_validate(event)


def unknown_keys(model: BaseModel, data: Any, where: str = "") -> list[str]:
    """Keys of ``data`` that ``model`` has no field for (pydantic ignores them silently), recursively."""
    if not isinstance(data, dict):
        return []
    fields = type(model).model_fields
    by_key = {(f.alias or name): name for name, f in fields.items()} | {name: name for name in fields}
    out: list[str] = []
    for key, value in data.items():
        name = by_key.get(key)
        if name is None:
            out.append(f"{where}{key}")
            continue
        attr = getattr(model, name)
        if isinstance(attr, BaseModel):
            out += unknown_keys(attr, value, f"{where}{key}.")
        elif isinstance(attr, list) and isinstance(value, list):
            for i, (item, raw) in enumerate(zip(attr, value, strict=False)):
                if isinstance(item, BaseModel):
                    out += unknown_keys(item, raw, f"{where}{key}[{i}].")
    return out


@cache
def template() -> dict[str, Any]:
    tpl, matches = decode(str(ROOT / "template.yaml"))
    assert tpl is not None, f"template.yaml does not parse: {matches}"
    return dict(json.loads(json.dumps(tpl)))


def _machines() -> dict[str, dict[str, Any]]:
    """Flow name (``statemachine/<flow>.asl.json``) -> the template's state machine properties."""
    out = {}
    for res in template().get("Resources", {}).values():
        if res.get("Type") in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            p = res.get("Properties", {})
            uri = p.get("DefinitionUri", p.get("DefinitionS3Location"))
            if isinstance(uri, str) and uri.startswith("statemachine/"):
                out[uri.removeprefix("statemachine/").removesuffix(".asl.json")] = p
    return out


def _function_folder(sub: Any) -> str | None:
    """``!GetAtt XFunction.Arn`` -> the function's CodeUri folder name."""
    if not (isinstance(sub, dict) and "Fn::GetAtt" in sub):
        return None
    arg = sub["Fn::GetAtt"]
    lid = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
    code = template()["Resources"].get(lid, {}).get("Properties", {}).get("CodeUri", "")
    return code.strip("/").split("/")[-1] if isinstance(code, str) and code.startswith("functions/") else None


def _states(states: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every state with its name, including those inside Map and Parallel states."""
    out = []
    for name, state in states.items():
        out.append((name, state))
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if nested:
                out += _states(nested.get("States", {}))
    return out


@cache
def flow_payloads() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Function folder -> ``(<flow>.<state>, Payload template)`` of every Task state that invokes it."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for flow, props in _machines().items():
        subs = props.get("DefinitionSubstitutions", {})
        definition = json.loads((STATEMACHINES / f"{flow}.asl.json").read_text(encoding="utf-8"))
        for name, state in _states(definition["States"]):
            params = state.get("Parameters", {}) if state.get("Type") == "Task" else {}
            m = _PLACEHOLDER.match(str(params.get("FunctionName", "")))
            folder = _function_folder(subs.get(m.group(1))) if m else None
            if folder and isinstance(params.get("Payload"), dict):
                out.setdefault(folder, []).append((f"{flow}.{name}", params["Payload"]))
    return out


def payload_mismatch(payload: dict[str, Any], event: Any, where: str = "") -> list[str]:
    """How ``event`` differs from what ``payload`` (an ASL Parameters template) produces: the same keys, the
    same literal values; ``"key.$"`` paths may produce anything."""
    if not isinstance(event, dict):
        return [f"{where or 'event'} is not an object"]
    produced = {k.removesuffix(".$"): v for k, v in payload.items()}
    out = [f"{where}{k}: the flow does not send it" for k in sorted(set(event) - set(produced))]
    out += [f"{where}{k}: missing (the flow sends it)" for k in sorted(set(produced) - set(event))]
    for key, value in payload.items():
        name = key.removesuffix(".$")
        if key.endswith(".$") or name not in event:
            continue
        if isinstance(value, dict):
            out += payload_mismatch(value, event[name], f"{where}{name}.")
        elif event[name] != value:
            out.append(f"{where}{name}: {event[name]!r}, but the flow always sends {value!r}")
    return out


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


FUNCTION_EVENTS = [p for p in EVENT_FILES if target_of(p)[0] == "function"]


# -- coverage -----------------------------------------------------------------------------------------------


def test_there_are_functions_flows_and_events() -> None:
    assert FUNCTION_FOLDERS, "no functions/*/app.py found"
    assert FLOWS, "no statemachine/*.asl.json found"
    assert EVENT_FILES, "no events/*.json found"


@pytest.mark.parametrize("folder", FUNCTION_FOLDERS)
def test_every_function_has_an_event(folder: str) -> None:
    mine = [p.name for p in EVENT_FILES if target_of(p) == ("function", folder)]
    assert mine, f"functions/{folder}: add events/{folder}.json (or events/{folder}-<operation>.json)"


@pytest.mark.parametrize("flow", FLOWS)
def test_every_flow_has_a_schedule_and_a_manual_input(flow: str) -> None:
    names = {p.name for p in EVENT_FILES}
    missing = [n for n in (f"{flow}-flow-schedule.json", f"{flow}-flow-manual.json") if n not in names]
    assert not missing, f"statemachine/{flow}.asl.json: add {missing}"


@pytest.mark.parametrize("path", EVENT_FILES, ids=_ids(EVENT_FILES))
def test_event_file_maps_to_a_function_or_flow(path: Path) -> None:
    kind, name = target_of(path)
    if kind == "flow":
        assert name in FLOWS, f"{path.name}: no statemachine/{name}.asl.json"
    else:
        assert name in FUNCTION_FOLDERS, (
            f"{path.name}: no functions/{name}/app.py (name events <folder>[-<operation>].json "
            f"or <flow>-flow-<variant>.json)"
        )


# -- the events parse -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EVENT_FILES, ids=_ids(EVENT_FILES))
def test_event_validates_with_its_model(path: Path) -> None:
    assert isinstance(load_event(path), dict), f"{path.name}: an event is a JSON object"
    validate(path)
    kind, name = target_of(path)
    if kind == "function" and name == "run_ledger":
        body = load_event(path)
        if body.get("op") == "start":  # the handler validates the execution input next
            run_request_model().model_validate(body["request"])


@pytest.mark.parametrize("path", EVENT_FILES, ids=_ids(EVENT_FILES))
def test_event_has_no_key_its_model_ignores(path: Path) -> None:
    """Step models ignore unknown keys; a misspelt key in a sample would then pass unnoticed."""
    kind, name = target_of(path)
    if kind == "function" and (
        name in ("lease_janitor", "run_notifier")
        or path.stem in ("schedule_sync-created", "schedule_sync-deleted")
    ):
        pytest.skip("the EventBridge envelope carries more than the handler reads")
    model = validate(path)
    if kind == "function" and name == "run_ledger":
        model = model.root  # type: ignore[attr-defined]  # the discriminated event inside Event
    unknown = sorted(set(unknown_keys(model, load_event(path))) - IGNORED_BY_DESIGN.get(name, set()))
    assert not unknown, f"{path.name}: {type(model).__name__} ignores {unknown}"


def test_the_model_check_can_fail(tmp_path: Path) -> None:
    good = EVENTS / "write_journal.json"
    broken = load_event(good)
    broken["batch"]["lines"] = 0
    bad = tmp_path / "write_journal.json"
    bad.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ValueError, match="lines"):
        validate(bad)
    broken = load_event(good)
    broken["batch"]["line_count"] = broken["batch"].pop("lines")
    assert "batch.line_count" in unknown_keys(
        handler_module("write_journal").WriteEvent(**load_event(good)), broken
    )


# -- the events are what the flows send -------------------------------------------------------------------


@pytest.mark.parametrize("path", FUNCTION_EVENTS, ids=_ids(FUNCTION_EVENTS))
def test_function_event_matches_a_flow_payload(path: Path) -> None:
    _, folder = target_of(path)
    if path.stem in NOT_FROM_A_FLOW or folder in NOT_FROM_A_FLOW:
        pytest.skip(NOT_FROM_A_FLOW.get(path.stem) or NOT_FROM_A_FLOW[folder])
    candidates = flow_payloads().get(folder, [])
    assert candidates, f"{path.name}: no state machine invokes functions/{folder}"
    event = load_event(path)
    problems = {where: payload_mismatch(payload, event) for where, payload in candidates}
    assert any(not p for p in problems.values()), f"{path.name} matches no flow payload: {problems}"


@pytest.mark.parametrize("path", FUNCTION_EVENTS, ids=_ids(FUNCTION_EVENTS))
def test_function_event_names_one_run(path: Path) -> None:
    """Staged keys sit under ``runs/<connection>/<run id>/`` of the event's own execution."""
    event = load_event(path)
    execution = event.get("execution") or event.get("detail", {}).get("executionArn")
    if execution is None:
        pytest.skip("the event names no execution")
    assert re.fullmatch(
        r"arn:aws:states:[a-z0-9-]+:\d{12}:execution:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+", execution
    )
    machine = execution.split(":")[6]
    assert any(machine.endswith(f"-{flow}") for flow in FLOWS), f"{path.name}: {machine} is none of {FLOWS}"
    prefix = f"runs/{event.get('connection', 'demo')}/{execution.rsplit(':', 1)[-1]}/"
    keys = [s for s in strings(event) if s.startswith("runs/")]
    wrong = [k for k in keys if not k.startswith(prefix)]
    assert not wrong, f"{path.name}: {wrong} are not under {prefix}"


@pytest.mark.parametrize("flow", FLOWS)
def test_schedule_event_is_the_template_schedule_input(flow: str) -> None:
    machine = _machines().get(flow)
    assert machine is not None, f"template.yaml deploys no state machine from statemachine/{flow}.asl.json"
    inputs = [
        ev["Properties"]["Input"]
        for ev in machine.get("Events", {}).values()
        if ev.get("Type") == "ScheduleV2" and "Input" in ev.get("Properties", {})
    ]
    # or an AWS::Scheduler::Schedule whose target is the (plain Step Functions) state machine
    lid = next(k for k, r in template()["Resources"].items() if r.get("Properties") is machine)
    inputs += [
        r["Properties"]["Target"]["Input"]
        for r in template()["Resources"].values()
        if r.get("Type") == "AWS::Scheduler::Schedule"
        and r["Properties"].get("Target", {}).get("Arn") == {"Ref": lid}
        and "Input" in r["Properties"]["Target"]
    ]
    assert len(inputs) == 1, f"{flow}: expected one schedule Input, found {len(inputs)}"
    text = inputs[0]["Fn::Sub"] if isinstance(inputs[0], dict) else inputs[0]
    params = template().get("Parameters", {})
    scheduled = json.loads(
        re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: str(params[m.group(1)]["Default"]), text)
    )
    assert load_event(EVENTS / f"{flow}-flow-schedule.json") == scheduled


def test_the_payload_check_can_fail() -> None:
    candidates = flow_payloads()["model_lease"]
    event = load_event(EVENTS / "model_lease-acquire.json")
    assert any(not payload_mismatch(p, event) for _, p in candidates)
    event["op"] = "acquired"
    assert all(payload_mismatch(p, event) for _, p in candidates)
    event = load_event(EVENTS / "write_journal.json")
    del event["dry_run"]
    assert all(payload_mismatch(p, event) for _, p in flow_payloads()["write_journal"])
    assert target_of(EVENTS / "writejournal.json") == ("function", "writejournal")  # no such folder: flagged

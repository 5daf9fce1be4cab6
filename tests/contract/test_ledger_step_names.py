"""Ledger step names are ASL state names (docs/ledger.md, *Step names*).

Every step name the layer writes (``record_step(run_id, <name>, ...)`` with a literal, or an f-string
``"<State>:{item}"``) and every name a flow passes in a Task's ``Payload`` (``"step"`` or
``"step.$": "States.Format('<State>:{}', ...)"``) must be a state of one of the flows, or one of the non-state
records the docs list (each with the state that writes it). A step name that is a variable must come from the
handler's event (a parameter of the function): the ASL scan covers those.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "shared" / "d365_anaplan"
ASL = sorted((ROOT / "statemachine").glob("*.asl.json"))
DOC = ROOT / "docs" / "ledger.md"
_FORMAT = re.compile(r"^States\.Format\('([A-Za-z0-9]+):\{\}'")


def _states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for inner in ("Iterator", "ItemProcessor"):
            if inner in state:
                yield from _states(state[inner]["States"])
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])


def state_names() -> set[str]:
    return {name for path in ASL for name, _ in _states(json.loads(path.read_text())["States"])}


def documented() -> dict[str, str]:
    """The non-state records of docs/ledger.md: record -> the state that writes it."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Step names", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([A-Za-z0-9]+)` \| `([A-Za-z0-9]+)` \|", section, flags=re.MULTILINE))


def _base(name: str) -> str:
    return name.split(":", 1)[0]


def _name_functions() -> dict[str, str]:
    """Functions of the layer that build a step name: name -> the f-string's ``<State>:`` prefix."""
    out: dict[str, str] = {}
    for path in sorted(LAYER.rglob("*.py")):
        for fn in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(fn, ast.FunctionDef) and fn.name.endswith("_step") and len(fn.body) >= 1:
                ret = fn.body[-1]
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.JoinedStr):
                    first = ret.value.values[0]
                    if isinstance(first, ast.Constant):
                        out[fn.name] = str(first.value)
    return out


def layer_names() -> list[tuple[str, str]]:
    """(step name, where) for every ``record_step`` call of the layer; ``name`` ``$param`` for a parameter."""
    found: list[tuple[str, str]] = []
    builders = _name_functions()
    for path in sorted(LAYER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            params = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
            for call in ast.walk(fn):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                    continue
                if call.func.attr != "record_step" or len(call.args) < 2:
                    continue
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                arg = call.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((arg.value, where))
                elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                    prefix = str(arg.values[0].value)
                    assert prefix.endswith(":"), f"{where}: an f-string step name must be '<State>:{{item}}'"
                    found.append((prefix, where))
                elif (
                    isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id in builders
                ):  # a function that builds the name (e.g. gl_step -> "ExtractGL:{company}:{slice}")
                    found.append((builders[arg.func.id], where))
                elif _root(arg) in params:  # the step name (or the task ref) of the handler's event
                    found.append((f"${ast.unparse(arg)}", where))
                else:
                    found.append((ast.unparse(arg), where))
    return found


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def asl_names() -> list[tuple[str, str]]:
    """(step name, where) for every ``step`` a Task's Payload passes (echoes of ``$.Payload.step`` aside)."""
    found: list[tuple[str, str]] = []
    for path in ASL:
        for state_name, state in _states(json.loads(path.read_text())["States"]):
            payload = state.get("Parameters", {}).get("Payload", {})
            for key, value in _payload_steps(payload):
                where = f"{path.name}: {state_name}"
                if key == "step":
                    found.append((str(value), where))
                elif value != "$.Payload.step":
                    m = _FORMAT.match(str(value))
                    found.append((f"{m.group(1)}:" if m else str(value), where))
    return found


def _payload_steps(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("step", "step.$"):
                yield key, value
            else:
                yield from _payload_steps(value)


def misnamed(names: list[tuple[str, str]], states: set[str], records: dict[str, str]) -> list[str]:
    return [
        f"{where}: step {name!r} is no ASL state and no documented record (docs/ledger.md, Step names)"
        for name, where in names
        if not name.startswith("$") and _base(name) not in states and name not in records
    ]


def test_every_step_name_written_is_a_state_or_a_documented_record() -> None:
    names = layer_names() + asl_names()
    assert any(n == "$step" for n, _ in names), "the Anaplan task steps take their name from the event"
    assert misnamed(names, state_names(), documented()) == []


def test_documented_records_are_written_by_the_state_they_name_and_are_no_state() -> None:
    states, records = state_names(), documented()
    assert records, "docs/ledger.md lists the non-state step records"
    written = {name for name, _ in layer_names()}
    for record, state in records.items():
        assert state in states, f"docs/ledger.md: {record} is written by {state}, which is no ASL state"
        assert record not in states, f"docs/ledger.md: {record} is a state; it needs no entry"
        assert record in written, f"docs/ledger.md: {record} is never written by the layer"


def test_a_planted_misnamed_step_is_caught() -> None:
    states, records = state_names(), documented()
    planted = [("AcquireLease", "steps/lease.py"), ("ImportActuals", "actuals.asl.json"), ("ExtractGL:", "x")]
    assert [m.split(":")[0] for m in misnamed(planted, states, records)] == [
        "steps/lease.py",
        "actuals.asl.json",
    ]

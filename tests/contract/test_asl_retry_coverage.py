"""Every Task state retries every ``Transient`` error its Lambda can raise.

``Transient`` subclasses (``d365_anaplan.errors``) mean "may clear by itself: retry later"; a Task whose Retry
blocks do not list one would send a passing condition (a busy model, a ledger write race) straight to
``RecordFailure``. For each Task state of both flows:

* its function comes from ``template.yaml`` (``DefinitionSubstitutions`` -> ``!GetAtt X.Arn`` -> ``CodeUri``);
* the modules the handler can run are the import graph of ``functions/<folder>/app.py`` within
  ``d365_anaplan`` (every ``import`` anywhere in a module, lazy ones included, plus the packages' ``__init__``);
* a module can raise error ``E`` if its source names ``E`` (``raise E(...)``, a helper returning ``E``, an
  ``errors.E`` attribute): a superset of what it raises, since errors are only ever built from their names;
* the Transient classes are all subclasses of ``Transient`` once every ``d365_anaplan`` module is imported.

Each such error must appear in an ``ErrorEquals`` of a Retry with ``MaxAttempts`` > 0 (``States.ALL`` and
``States.TaskFailed`` cover everything), or be exempted below with the reason (each exemption is checked).
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
import pkgutil
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

import d365_anaplan
from d365_anaplan.errors import Transient

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
PACKAGE = "d365_anaplan"
COVER_ALL = {"States.ALL", "States.TaskFailed"}

# error -> (the only (function folder, Payload "op") that can raise it, why). Narrows the module analysis where
# a module every step loads raises the error from one method only; test_exemption_* checks each claim.
RAISED_ONLY_BY: dict[str, tuple[frozenset[tuple[str, str | None]], str]] = {
    "ModelLeaseHeld": (
        frozenset({("model_lease", "acquire")}),
        "only ModelLease.acquire raises it (directly or through _held), and only steps.lease.model_lease (behind "
        "functions/model_lease) calls acquire, for op acquire; the acting steps renew (LeaseLost, not retried), "
        "the failure path releases",
    ),
}


# -- the template and the flows -----------------------------------------------------------------------------


@cache
def template() -> dict[str, Any]:
    tpl, matches = decode(str(ROOT / "template.yaml"))
    assert tpl is not None, f"template.yaml does not parse: {matches}"
    return dict(json.loads(json.dumps(tpl)))


def machines() -> dict[str, dict[str, Any]]:
    """flow -> the template's state machine properties."""
    out = {}
    for res in template()["Resources"].values():
        if res.get("Type") in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            props = res["Properties"]
            uri = props.get("DefinitionUri", props.get("DefinitionS3Location"))
            out[uri.removeprefix("statemachine/").removesuffix(".asl.json")] = res["Properties"]
    return out


def definition(flow: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "statemachine" / f"{flow}.asl.json").read_text(encoding="utf-8")))


def function_folder(flow: str, function_name: str) -> str:
    m = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}", function_name)
    assert m, f"{flow}: FunctionName {function_name!r} is not a DefinitionSubstitutions placeholder"
    sub = machines()[flow]["DefinitionSubstitutions"][m.group(1)]
    logical = sub["Fn::GetAtt"][0] if isinstance(sub["Fn::GetAtt"], list) else sub["Fn::GetAtt"].split(".")[0]
    code = template()["Resources"][logical]["Properties"]["CodeUri"]
    return str(code).strip("/").split("/")[-1]


def tasks(states: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every Task state (Map and Parallel contents included) with its path name."""
    out = []
    for name, state in states.items():
        if state["Type"] == "Task":
            out.append((f"{prefix}{name}", state))
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if nested:
                out += tasks(nested["States"], f"{prefix}{name}/")
    return out


def retried(state: dict[str, Any]) -> set[str]:
    return {e for r in state.get("Retry", []) if r.get("MaxAttempts", 3) > 0 for e in r["ErrorEquals"]}


# -- what a handler can raise ----------------------------------------------------------------------------


@cache
def module_file(name: str) -> Path | None:
    base = SHARED / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


@cache
def imports_of(path: Path, name: str | None) -> frozenset[str]:
    """``d365_anaplan`` modules a file imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert name is not None, f"{path}: relative import outside the package"
                base = _package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}  # ``from pkg import submodule``
    found = set()
    for mod in out:
        if mod == PACKAGE or mod.startswith(PACKAGE + "."):
            parts = mod.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # parent packages run too
    return frozenset(m for m in found if module_file(m) is not None)


@cache
def reachable(folder: str) -> frozenset[str]:
    todo = list(imports_of(ROOT / "functions" / folder / "app.py", None))
    seen: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = module_file(mod)
        assert path is not None
        todo += imports_of(path, mod)
    return frozenset(seen)


@cache
def transient_names() -> frozenset[str]:
    for info in pkgutil.walk_packages(d365_anaplan.__path__, PACKAGE + "."):
        importlib.import_module(info.name)  # subclasses defined anywhere register themselves
    out: set[str] = set()
    todo = list(Transient.__subclasses__())
    while todo:
        cls = todo.pop()
        out.add(cls.__name__)
        todo += cls.__subclasses__()
    return frozenset(out)


@cache
def names_in(path: Path) -> frozenset[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            out |= {a.asname or a.name for a in node.names}
    return frozenset(out)


@cache
def can_raise(folder: str) -> dict[str, list[str]]:
    """Transient error -> the reachable modules (or the handler) that name it."""
    files = [("functions/" + folder + "/app.py", ROOT / "functions" / folder / "app.py")]
    files += [(m, module_file(m)) for m in sorted(reachable(folder)) if m != f"{PACKAGE}.errors"]
    out: dict[str, list[str]] = {}
    for where, path in files:
        assert path is not None
        for name in names_in(path) & transient_names():
            out.setdefault(name, []).append(where)
    return out


def gaps(flow: str, states: dict[str, Any]) -> list[str]:
    problems = []
    for name, state in tasks(states):
        folder = function_folder(flow, state["Parameters"]["FunctionName"])
        op = state["Parameters"]["Payload"].get("op")
        covered = retried(state)
        if covered & COVER_ALL:
            continue
        for error, where in sorted(can_raise(folder).items()):
            only = RAISED_ONLY_BY.get(error)
            if only is not None and (folder, op) not in only[0]:
                continue
            if error not in covered:
                problems.append(f"{flow}.{name} ({folder}): {error} is not retried (named in {where[:3]})")
    return problems


FLOWS = sorted(machines())


# -- the checks ---------------------------------------------------------------------------------------------


def test_there_are_transient_errors_and_tasks() -> None:
    assert {
        "LedgerConflict",
        "ModelLeaseHeld",
        "AnaplanUnavailable",
        "DynamicsThrottled",
    } <= transient_names()
    assert FLOWS == ["actuals", "plans"]
    assert all(tasks(definition(f)["States"]) for f in FLOWS)


@pytest.mark.parametrize("flow", FLOWS)
def test_every_task_retries_the_transient_errors_its_handler_can_raise(flow: str) -> None:
    problems = gaps(flow, definition(flow)["States"])
    assert not problems, "\n".join(problems)


def _functions_naming(path: Path, names: set[str]) -> set[str]:
    """Top-level functions and methods of a file whose bodies name any of ``names``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if inner & names:
                found.add(node.name)
    return found


def test_exemption_model_lease_held_comes_only_from_acquire() -> None:
    lease = SHARED / PACKAGE / "ledger" / "lease.py"
    assert _functions_naming(lease, {"ModelLeaseHeld", "_held"}) == {"acquire", "_held"}
    elsewhere = [
        m for m in (SHARED / PACKAGE).rglob("*.py") if m != lease and "ModelLeaseHeld" in names_in(m)
    ] + [f for f in (ROOT / "functions").glob("*/app.py") if "ModelLeaseHeld" in names_in(f)]
    assert elsewhere == [], "only ledger/lease.py may name ModelLeaseHeld (errors.py defines it)"
    callers = []
    for path in [*(SHARED / PACKAGE).rglob("*.py"), *(ROOT / "functions").glob("*/app.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "acquire"
            ):
                receiver = ast.unparse(node.func.value)
                # anaplan.limits.RateLimiter and dynamics/ahead.py's threading.Semaphore, not leases
                if receiver != "self.limiter" and (path.name, receiver) != ("ahead.py", "slots"):
                    callers.append(f"{path.relative_to(ROOT).as_posix()}: {receiver}.acquire")
    assert callers == ["shared/d365_anaplan/steps/lease.py: leases.acquire"], callers
    # ... and there only for op "acquire": release returns first, renew takes the other branch
    handler = next(
        n
        for n in ast.walk(ast.parse((SHARED / PACKAGE / "steps" / "lease.py").read_text(encoding="utf-8")))
        if isinstance(n, ast.FunctionDef) and n.name == "model_lease"
    )
    app = (ROOT / "functions" / "model_lease" / "app.py").read_text(encoding="utf-8")
    assert "model_lease(ev.op," in app, "functions/model_lease calls the step once, with its op"
    ifs = [n for n in handler.body if isinstance(n, ast.If)]
    release = next(n for n in ifs if ast.unparse(n.test) == "op == 'release'")
    assert isinstance(release.body[-1], ast.Return)
    branch = next(n for n in ifs if ast.unparse(n.test) == "op == 'renew'")
    assert "acquire" not in ast.unparse(ast.Module(body=branch.body, type_ignores=[]))
    assert "leases.acquire" in ast.unparse(ast.Module(body=branch.orelse, type_ignores=[]))
    assert handler.body.index(release) < handler.body.index(branch)
    assert all(len(why) > 40 for _, why in RAISED_ONLY_BY.values())


def test_the_analysis_finds_what_the_handlers_raise() -> None:
    """The import graph reaches the raising modules through lazy imports and relative imports."""
    assert "LedgerConflict" in can_raise("run_ledger"), "RunLedger.finish_run raises it"
    assert "d365_anaplan.ledger.runs" in can_raise("run_ledger")["LedgerConflict"]
    assert "ModelLeaseHeld" in can_raise("model_lease")
    start = can_raise("anaplan_start")  # the Anaplan client is imported lazily by StepContext.anaplan
    assert {"AnaplanModelBusy", "AnaplanThrottled", "AnaplanUnavailable"} <= set(start)
    assert "d365_anaplan.anaplan.transport" in start["AnaplanModelBusy"]
    write = can_raise("write_journal")  # F&O modules import each other relatively
    assert "d365_anaplan.dynamics.odata" in write["DynamicsThrottled"]


@pytest.mark.parametrize("flow", FLOWS)
def test_a_removed_retry_is_reported(flow: str) -> None:
    states = copy.deepcopy(definition(flow)["States"])
    name, victim = next((n, s) for n, s in tasks(states) if "LedgerConflict" in retried(s))
    for retry in victim["Retry"]:
        retry["ErrorEquals"] = [e for e in retry["ErrorEquals"] if e != "LedgerConflict"]
    assert any(
        p.startswith(f"{flow}.{name} ") and "LedgerConflict is not retried" in p for p in gaps(flow, states)
    )
    victim["Retry"].append({"ErrorEquals": ["States.ALL"], "MaxAttempts": 0})
    assert any("LedgerConflict is not retried" in p for p in gaps(flow, states)), (
        "MaxAttempts 0 retries nothing"
    )
    victim["Retry"][-1]["MaxAttempts"] = 2
    assert not any(p.startswith(f"{flow}.{name} ") for p in gaps(flow, states))

"""Every handler has the one shape (docs/architecture.md, *Adding a step*): ``lambda_handler`` decorated by
``@step(Event, Output)`` or ``@handler(Event, Output)`` and nothing else (Powertools is applied there, never by
hand), and the module declares ``EVENT_MODEL`` and ``OUTPUT_MODEL`` (or ``OUTPUT_MODELS`` per operation)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))


def shape_problems(source: str, where: str) -> list[str]:
    tree = ast.parse(source)
    problems: list[str] = []
    assigned = {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    assigned |= {
        n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    if "EVENT_MODEL" not in assigned:
        problems.append(f"{where}: no EVENT_MODEL")
    if not {"OUTPUT_MODEL", "OUTPUT_MODELS"} & assigned:
        problems.append(f"{where}: no OUTPUT_MODEL (the typed output beside the event model)")
    handlers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"]
    if len(handlers) != 1:
        return [*problems, f"{where}: expected one lambda_handler"]
    decorators = [
        d.func.id if isinstance(d, ast.Call) and isinstance(d.func, ast.Name) else ast.unparse(d)
        for d in handlers[0].decorator_list
    ]
    if len(decorators) != 1 or decorators[0] not in ("step", "handler"):
        problems.append(
            f"{where}: lambda_handler is decorated {decorators}, not by @step(...) or @handler(...) alone"
        )
    return problems


def test_every_handler_has_the_one_shape() -> None:
    found: list[str] = []
    for path in HANDLERS:
        found += shape_problems(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert HANDLERS and found == []


def test_a_handler_stacking_powertools_by_hand_is_caught() -> None:
    old = (
        "EVENT_MODEL = E\n"
        "@logger.inject_lambda_context(log_event=False)\n@tracer.capture_lambda_handler\n@metrics.log_metrics\n"
        "def lambda_handler(event, context):\n    return {}\n"
    )
    assert shape_problems(old, "x") == [
        "x: no OUTPUT_MODEL (the typed output beside the event model)",
        "x: lambda_handler is decorated ['logger.inject_lambda_context(log_event=False)', "
        "'tracer.capture_lambda_handler', 'metrics.log_metrics'], not by @step(...) or @handler(...) alone",
    ]

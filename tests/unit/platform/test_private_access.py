"""No cross-package private access: a package's ``_names`` are used only inside that package.

The packages are the folders of ``shared/d365_anaplan`` (``anaplan``, ``dynamics``, ``ledger``, ``steps``, …,
and the top-level modules as one package). The code checked is the layer, the handlers and the dev kit. Two
shapes are refused:

* ``from d365_anaplan.x.y import _name`` or an import of a private module (``d365_anaplan.ledger._dynamo``)
  from outside package ``x``;
* ``obj._name`` (``obj`` not ``self``/``cls``) where ``_name`` is a private member defined only in packages
  other than the one doing the access (e.g. a step calling the Anaplan client's ``_json``).

The dev kit counts as one package, each handler folder as one.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LAYER = ROOT / "shared" / "d365_anaplan"
CHECKED = (LAYER, ROOT / "functions", ROOT / "devkit")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def package_of(path: Path) -> str:
    """``d365_anaplan.<folder>`` for a layer module, ``d365_anaplan`` for a top-level one, ``devkit`` for the
    dev kit (one package here), ``functions/<name>`` for a handler."""
    if path.is_relative_to(LAYER):
        parts = path.relative_to(LAYER).parts
        return "d365_anaplan" if len(parts) == 1 else f"d365_anaplan.{parts[0]}"
    parts = path.relative_to(ROOT).parts
    return "devkit" if parts[0] == "devkit" else "/".join(parts[:2])


def module_package(module: str) -> str | None:
    """The layer package a dotted module belongs to (None outside the layer)."""
    parts = module.split(".")
    if parts[0] != "d365_anaplan":
        return None
    if len(parts) >= 2 and (LAYER / parts[1]).is_dir():
        return f"d365_anaplan.{parts[1]}"
    return "d365_anaplan"


def private_members(tree: ast.AST) -> set[str]:
    """Private functions, methods, class attributes and ``self._x`` attributes a module defines."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and _private(node.name):
            names.add(node.name)
        elif (
            isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _private(node.target.id)
        ):
            names.add(node.target.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return names


# Private members of third-party objects (not the layer's), each with why it is read.
THIRD_PARTY = {
    "sdk._http._client": "devkit/bench_anaplan.py reads anaplan-sdk's own transport to count its requests",
}


def defined_by_package() -> dict[str, set[str]]:
    """private member name -> the packages (layer, handlers, dev kit) defining it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for base in CHECKED:
        for path in base.rglob("*.py"):
            for name in private_members(ast.parse(path.read_text(encoding="utf-8"))):
                owners[name].add(package_of(path))
    return owners


def violations(source: str, package: str, owners: dict[str, set[str]], where: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            target = module_package(node.module)
            if target is None or target == package:
                continue
            private_module = any(_private(p) for p in node.module.split("."))
            private_names = [a.name for a in node.names if _private(a.name)]
            if private_module or private_names:
                found.append(
                    f"{where}:{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}"
                )
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            defining = owners.get(node.attr, set())
            if defining and package not in defining and ast.unparse(node) not in THIRD_PARTY:
                found.append(
                    f"{where}:{node.lineno}: {ast.unparse(node)} (private to {', '.join(sorted(defining))})"
                )
    return found


def test_no_cross_package_private_access() -> None:
    owners = defined_by_package()
    found = []
    for base in CHECKED:
        for path in sorted(base.rglob("*.py")):
            found += violations(
                path.read_text(encoding="utf-8"), package_of(path), owners, str(path.relative_to(ROOT))
            )
    assert not found, "private names used across packages (add a public method instead):\n" + "\n".join(found)


def test_a_planted_private_access_is_reported() -> None:
    owners = defined_by_package()
    step = "def tasks_of(ctx):\n    return ctx.anaplan.transport._wait(None)\n"
    assert violations(step, "d365_anaplan.steps", owners, "steps/x.py") == [
        "steps/x.py:2: ctx.anaplan.transport._wait (private to d365_anaplan.anaplan, d365_anaplan.dynamics)"
    ]
    devkit = "from d365_anaplan.ledger.audit import _run_record\nfrom d365_anaplan.ledger._dynamo import from_item\n"
    assert len(violations(devkit, "devkit", owners, "devkit/commands/x.py")) == 2
    inside = "from d365_anaplan.ledger._dynamo import from_item\n"
    assert violations(inside, "d365_anaplan.ledger", owners, "ledger/x.py") == []


def private_name_imports(base: Path, root: Path = ROOT) -> list[str]:
    """``from d365_anaplan.<module> import _name`` in ``base``: a private name imported by another module
    (private modules such as ``ledger._dynamo`` may still be imported inside their package)."""
    found = []
    for path in sorted(base.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("d365_anaplan"):
                found += [
                    f"{path.relative_to(root)}:{node.lineno}: {node.module} import {a.name}"
                    for a in node.names
                    if _private(a.name)
                ]
    return found


def test_no_private_name_is_imported_from_another_module() -> None:
    assert private_name_imports(LAYER) + private_name_imports(ROOT / "functions") == []


def test_the_module_rule_sees_a_private_import(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("from d365_anaplan.steps.staged_io import _hidden\n", encoding="utf-8")
    assert private_name_imports(tmp_path, tmp_path) == ["m.py:1: d365_anaplan.steps.staged_io import _hidden"]

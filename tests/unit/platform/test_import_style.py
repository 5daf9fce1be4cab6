"""One import style: the layer, the handlers and the dev kit import by absolute name (``d365_anaplan.x.y``,
``devkit.sandbox.dynamics.y``), never relatively (``from .y import``), so a name reads the same in every file
and a moved module is found by one grep."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CHECKED = (ROOT / "shared" / "d365_anaplan", ROOT / "functions", ROOT / "devkit")


def relative_imports(source: str, where: str) -> list[str]:
    return [
        f"{where}:{node.lineno}: from {'.' * node.level}{node.module or ''} import ... (use the absolute name)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]


def test_no_relative_imports() -> None:
    found: list[str] = []
    for folder in CHECKED:
        for path in sorted(folder.rglob("*.py")):
            found += relative_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


def test_a_relative_import_is_caught() -> None:
    planted = "from d365_anaplan.errors import ConfigError\nfrom .odata import ODataClient\n"
    assert relative_imports(planted, "x.py") == ["x.py:2: from .odata import ... (use the absolute name)"]

"""No module of the deployed layer grows past ~500 lines (issue 14): a module that long holds more than one
concern; split it by concern (docs/architecture.md says which room each belongs in)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LIMIT = 500


def oversized(folder: Path, limit: int = LIMIT) -> list[str]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > limit:
            out.append(f"{path.relative_to(ROOT)}: {lines} lines (limit {limit})")
    return out


def test_no_layer_module_over_the_limit() -> None:
    assert oversized(ROOT / "shared" / "d365_anaplan") == []
    assert oversized(ROOT / "functions") == []


def test_the_rule_sees_a_long_module(tmp_path: Path) -> None:
    folder = ROOT / "shared" / "d365_anaplan"
    biggest = max(folder.rglob("*.py"), key=lambda p: p.read_text(encoding="utf-8").count("\n"))
    size = biggest.read_text(encoding="utf-8").count("\n")
    assert oversized(folder, limit=size - 1) == [
        f"{biggest.relative_to(ROOT)}: {size} lines (limit {size - 1})"
    ]

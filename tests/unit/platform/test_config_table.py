"""The README's configuration table is the model's: every field of ``ConnectionConfig`` (nested models, list
items and union variants included) has a ``Field(description=...)``, and the table between the README's markers
is exactly what ``python -m devkit.config_table`` generates from them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from devkit.config_table import README, render, rows, table, undocumented


def test_every_field_has_a_description() -> None:
    assert undocumented() == []


def test_readme_table_is_generated_from_the_model() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md's configuration table is stale: run python -m devkit.config_table"


def test_the_table_covers_every_field() -> None:
    keys = {key for key, _, _ in rows()}
    expected = {
        "name",
        "dynamics.journal.target",
        "anaplan.auth.refresh_token",
        "mapping.dimensions[].blank_member",
        "mapping.plans.exports[].budget_models",
        "ledger.account_structures",
    }
    assert expected <= keys
    assert all(f"| `{key}` |" in table() for key in keys)


def test_a_field_without_description_or_a_stale_row_is_caught() -> None:
    class Inner(BaseModel):
        documented: int = Field(default=1, description="one")
        bare: str | None = None

    class Outer(BaseModel):
        inner: Inner = Field(default=Inner(), description="a section")

    assert [(k, d) for k, d, m in rows(Outer) if not m] == [("inner.bare", "—")]
    text = README.read_text(encoding="utf-8")
    stale = text.replace("| `dynamics.page_size` | `5000` |", "| `dynamics.page_size` | `1000` |")
    assert stale != text and render(stale) != stale

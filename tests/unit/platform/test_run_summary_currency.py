"""The run summary (notification, metrics, report/summary.txt) keeps amounts per currency as extracted."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from d365_anaplan.run_summary import summarise


class _Ledger:
    def __init__(self, steps: list[tuple[str, dict[str, Any]]]) -> None:
        self._steps = [SimpleNamespace(step=s, status="SUCCEEDED", detail=d) for s, d in steps]

    def get_run(self, run_id: str) -> Any:
        return SimpleNamespace(run_id=run_id, connection="demo", flow="actuals", status="SUCCEEDED",
                               trigger="manual", detail={}, finished_at=None, cause=None)  # fmt: skip

    def steps(self, run_id: str) -> list[Any]:
        return self._steps


def test_gl_net_per_extracted_currency() -> None:
    """USMF's transaction amounts are in USD and EUR (its step total is None): each currency on its own."""
    ledger = _Ledger([
        ("ExtractGL:USMF:2025-01", {"lines": 3, "total": None, "by_currency": {"USD": "100.00", "EUR": "-40.00"}}),
        ("ExtractGL:DEMF:2025-01", {"lines": 2, "total": "7.00", "by_currency": {"EUR": "7.00"}}),
    ])  # fmt: skip
    summary = summarise(ledger, "r1", {"USMF": "USD", "DEMF": "EUR"}.__getitem__)
    assert summary.net_by_currency == {"USD": Decimal("100.00"), "EUR": Decimal("-33.00")}
    assert summary.gl_lines == 5
    assert "net amount EUR: -33.00" in summary.text() and "net amount USD: 100.00" in summary.text()


def test_older_gl_record_without_by_currency_is_the_company_currency() -> None:
    ledger = _Ledger([("ExtractGL:DEMF:2025-01", {"lines": 2, "total": "7.00"})])
    assert summarise(ledger, "r1", {"DEMF": "EUR"}.__getitem__).net_by_currency == {"EUR": Decimal("7.00")}

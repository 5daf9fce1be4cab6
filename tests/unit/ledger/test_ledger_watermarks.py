"""Watermarks: created on first advance, monotonic, record the advancing run, reset on purpose."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_support import FakeClock

from d365_anaplan.ledger import Watermarks


@pytest.fixture
def marks(dynamodb: Any, table: str, clock: FakeClock) -> Watermarks:
    return Watermarks(table, client=dynamodb, clock=clock)


def test_first_advance_creates(marks: Watermarks, clock: FakeClock) -> None:
    assert marks.get("acme", "actuals") is None
    assert marks.advance("acme", "actuals", "2025-02", "run-1") is True
    mark = marks.get("acme", "actuals")
    assert mark is not None
    assert (mark.connection, mark.flow, mark.value, mark.run_id) == ("acme", "actuals", "2025-02", "run-1")
    assert mark.advanced_at == clock()
    assert mark.previous_value is None


def test_never_moves_backwards(marks: Watermarks, clock: FakeClock) -> None:
    marks.advance("acme", "actuals", "2025-02", "run-1")
    clock.advance(60)
    assert marks.advance("acme", "actuals", "2025-03", "run-2") is True
    clock.advance(60)
    assert marks.advance("acme", "actuals", "2025-01", "run-old") is False  # older: no-op
    assert marks.advance("acme", "actuals", "2025-03", "run-2-retry") is False  # equal: no-op
    mark = marks.get("acme", "actuals")
    assert mark is not None
    assert (mark.value, mark.run_id, mark.previous_value) == ("2025-03", "run-2", "2025-02")
    assert mark.advanced_at == clock().replace(minute=1)  # the time of the advance, not of the no-ops
    assert marks.advance("acme", "actuals", "2025-10", "run-3") is True
    assert marks.advance("acme", "actuals", "2025-09", "run-4") is False


def test_flows_and_connections_are_separate(marks: Watermarks) -> None:
    marks.advance("acme", "actuals", "2025-03", "r1")
    marks.advance("acme", "plans", "2024-12", "r2")
    marks.advance("other", "actuals", "2023-01", "r3")
    values = {
        (c, f): m.value
        for c, f in [("acme", "actuals"), ("acme", "plans"), ("other", "actuals")]
        if (m := marks.get(c, f))
    }
    assert values == {
        ("acme", "actuals"): "2025-03",
        ("acme", "plans"): "2024-12",
        ("other", "actuals"): "2023-01",
    }


def test_reset_moves_back_on_purpose(marks: Watermarks, dynamodb: Any, table: str) -> None:
    marks.advance("acme", "actuals", "2025-03", "r1")
    marks.reset("acme", "actuals", "2024-12", "operator", reason="re-load Q1 after a restatement")
    mark = marks.get("acme", "actuals")
    assert mark is not None
    assert (mark.value, mark.run_id, mark.previous_value) == ("2024-12", "operator", "2025-03")
    assert marks.advance("acme", "actuals", "2025-01", "r2") is True
    marks.reset("new", "actuals", "2020-01", "operator", reason="seed")
    seeded = marks.get("new", "actuals")
    assert seeded is not None
    assert seeded.value == "2020-01"
    item = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": "WATERMARK#acme"}, "sk": {"S": "FLOW#actuals"}}
    )["Item"]
    history = [(h["M"]["value"]["S"], h["M"]["run_id"]["S"]) for h in item["history"]["L"]]
    assert history == [("2025-03", "r1"), ("2024-12", "operator"), ("2025-01", "r2")]
    assert item["history"]["L"][1]["M"]["reason"] == {"S": "re-load Q1 after a restatement"}


def test_history_is_bounded(dynamodb: Any, table: str) -> None:
    marks = Watermarks(table, client=dynamodb, history_length=3)
    for i in range(6):
        assert marks.advance("acme", "actuals", f"{2000 + i}-01", f"r{i}")
    key = {"pk": {"S": "WATERMARK#acme"}, "sk": {"S": "FLOW#actuals"}}
    item = dynamodb.get_item(TableName=table, Key=key)["Item"]
    assert [h["M"]["value"]["S"] for h in item["history"]["L"]] == ["2003-01", "2004-01", "2005-01"]


def test_arguments(marks: Watermarks) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        marks.advance("acme", "actuals", "", "r1")
    with pytest.raises(ValueError, match="non-empty"):
        marks.get("", "actuals")

"""Bulk journal-line recording: same items as one call per line, history kept for lines seen before."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from d365_anaplan.ledger.audit import JournalLineEntry, RunLedger


def test_bulk_lines_match_single_calls_and_keep_history(table: str, dynamodb: Any, clock: Any) -> None:
    book = RunLedger(table, client=dynamodb, clock=clock)
    book.start_run("r1", "demo", "plans", "manual", {})
    entries = [
        JournalLineEntry(
            "J1",
            f"J1-L{i:03d}",
            "WRITTEN",
            {"journal_batch_number": "00042"},
            None,
            {"amount": Decimal("1.10")},
        )
        for i in range(60)
    ]
    entries[7] = JournalLineEntry(
        "J1", "J1-L007", "FAILED", None, "Account 999999 does not exist", {"amount": Decimal("2")}
    )
    assert book.record_journal_lines("r1", entries) == 60
    lines = {line.line_key: line for line in book.journal_lines("r1")}
    assert len(lines) == 60
    assert lines["J1-L007"].status == "FAILED"
    assert [f.line_key for f in book.failed_journal_lines("r1")] == ["J1-L007"]
    # a retry that now succeeds goes through the single-line path and keeps the failure in the history
    again = [JournalLineEntry("J1", "J1-L007", "WRITTEN", {"journal_batch_number": "00042"}, None, None)]
    assert book.record_journal_lines("r1", again) == 0
    events = book.trace("r1", "J1-L007")
    assert [e.status for e in events if e.kind == "LINE"] == ["FAILED", "WRITTEN"]
    assert book.failed_journal_lines("r1") == []

"""The run output says how many plan differences it does not show."""

from __future__ import annotations

import io

from devkit.commands._describe import RunFacts, print_differences


def _facts(cells: int, shown: int) -> RunFacts:
    rows = [
        {"company": "USMF", "version": "Budget", "account": f"6{i:05d}", "period": "2025-01", "held": "0",
         "approved": "10.00", "difference": "10.00"}
        for i in range(shown)
    ]  # fmt: skip
    return RunFacts(
        run_id="r",
        flow="plans",
        status="SUCCEEDED",
        differences={"cells": cells, "revisions": 0, "shown": rows},
    )


def test_the_cells_not_shown_are_counted() -> None:
    out = io.StringIO()
    print_differences(_facts(cells=362, shown=20), out)
    text = out.getvalue()
    assert "362 cell(s)" in text and "... and 342 more cell(s)" in text


def test_nothing_hidden_nothing_said() -> None:
    out = io.StringIO()
    print_differences(_facts(cells=3, shown=3), out)
    assert "more cell(s)" not in out.getvalue()


def test_reconciled_counts_are_grouped_like_every_other_figure() -> None:
    from devkit.commands._describe import _count

    assert (_count(63611), _count(362), _count(None), _count(True)) == ("63,611", "362", "?", "?")

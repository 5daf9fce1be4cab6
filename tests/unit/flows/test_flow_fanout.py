"""The extraction plan's month slices (steps/fanout.py): disjoint, and together the whole window."""

from __future__ import annotations

from datetime import date
from itertools import pairwise

from d365_anaplan.steps.fanout import month_slices


def test_a_window_is_cut_at_month_starts_and_keeps_its_ends() -> None:
    # a 4-4-5 fiscal window: from a mid-month period start to the day after a mid-month period end
    assert month_slices(date(2024, 12, 29), date(2025, 3, 30)) == [
        (date(2024, 12, 29), date(2025, 1, 1)),
        (date(2025, 1, 1), date(2025, 2, 1)),
        (date(2025, 2, 1), date(2025, 3, 1)),
        (date(2025, 3, 1), date(2025, 3, 30)),
    ]


def test_slices_cover_the_window_once() -> None:
    lo, hi = date(2025, 1, 1), date(2026, 1, 1)
    slices = month_slices(lo, hi)
    assert len(slices) == 12
    assert slices[0][0] == lo and slices[-1][1] == hi
    assert all(a[1] == b[0] for a, b in pairwise(slices))


def test_an_empty_window_is_one_empty_item() -> None:
    assert month_slices(date(2025, 3, 1), date(2025, 3, 1)) == [(date(2025, 3, 1), date(2025, 3, 1))]

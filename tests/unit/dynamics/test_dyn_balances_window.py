"""The extraction window of balance-sheet balances (dynamics-budget-fiscal.md §C3): from the first day of the
window's fiscal year when that year's opening entries are posted, else from the first day of the year before."""

from __future__ import annotations

import calendar
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from dyn_support import BI_SETS, DATA, LEDGER_RECIDS, make_client, metadata, page

from d365_anaplan.config import LedgerOptions
from d365_anaplan.dynamics.reader import DynamicsReader

OPENING_RECID = {2024: 9001, 2025: 9002}


def _calendar(sets: dict[str, list[str]]) -> None:
    responses.get(f"{DATA}/$metadata", body=metadata(sets))
    ledgers = [{"LegalEntityId": "USMF", "Name": "USMF", "LedgerRecId": LEDGER_RECIDS["USMF"],
                "FiscalCalendar": "Fiscal", "AccountingCurrency": "USD", "ReportingCurrency": ""}]  # fmt: skip
    periods, keys = [], []
    for year in (2024, 2025):
        opening = {"Calendar": "Fiscal", "FiscalYear": str(year), "PeriodName": "Opening", "Type": "Opening",
                   "StartDate": f"{year}-01-01T00:00:00Z", "EndDate": f"{year}-01-01T00:00:00Z"}  # fmt: skip
        periods.append(opening)
        keys.append({"SourceKey": OPENING_RECID[year], "Name": "Opening", "Type": "Opening",
                     "StartDate": opening["StartDate"], "EndDate": opening["EndDate"]})  # fmt: skip
        for m in range(1, 13):
            last = calendar.monthrange(year, m)[1]
            periods.append({"Calendar": "Fiscal", "FiscalYear": str(year), "PeriodName": f"Period {m}",
                            "Type": "Operating", "StartDate": f"{year}-{m:02d}-01T00:00:00Z",
                            "EndDate": f"{year}-{m:02d}-{last:02d}T00:00:00Z"})  # fmt: skip
    responses.get(f"{DATA}/Ledgers", body=page(ledgers))
    responses.get(f"{DATA}/FiscalPeriods", body=page(periods))
    responses.get(f"{DATA}/FiscalCalendarPeriodBiEntities", body=page(keys))


def _bi_sets() -> dict[str, list[str]]:
    sets = {k: list(v) for k, v in BI_SETS.items()}
    sets["GeneralJournalEntryBiEntities"].append("FiscalCalendarPeriod")
    sets["FiscalCalendarPeriodBiEntities"] = ["SourceKey", "Name", "Type", "StartDate", "EndDate"]
    return sets


def _reader() -> DynamicsReader:
    client, _, _ = make_client()
    return DynamicsReader(client, companies=["USMF"], options=LedgerOptions(balance_sheet="balances"))


def _probe_filter() -> str:
    calls = [
        c for c in responses.calls if urlsplit(c.request.url).path.endswith("/GeneralJournalEntryBiEntities")
    ]
    assert len(calls) == 1
    return parse_qs(urlsplit(calls[0].request.url).query)["$filter"][0]


@pytest.mark.parametrize(
    ("posted", "first_day"),
    [
        ([{"FiscalCalendarPeriod": 9002}], date(2025, 1, 1)),  # close posted: the window's own year
        ([], date(2024, 1, 1)),  # before the year-end close: the prior year, whose balance is carried
    ],
)
@responses.activate
def test_the_window_starts_at_the_year_whose_opening_entries_are_posted(
    posted: list[dict[str, int]], first_day: date
) -> None:
    _calendar(_bi_sets())
    responses.get(f"{DATA}/GeneralJournalEntryBiEntities", body=page(posted))
    assert _reader().balances_window("USMF", date(2025, 1, 1), date(2025, 2, 1)) == (
        first_day,
        date(2025, 2, 1),
    )
    flt = _probe_filter()
    assert "9002" in flt and str(LEDGER_RECIDS["USMF"]) in flt and "PostingLayer" in flt


@responses.activate
def test_a_window_crossing_the_year_starts_at_the_earlier_year() -> None:
    _calendar(_bi_sets())
    responses.get(f"{DATA}/GeneralJournalEntryBiEntities", body=page([{"FiscalCalendarPeriod": 9001}]))
    assert _reader().balances_window("USMF", date(2024, 11, 1), date(2025, 2, 1)) == (
        date(2024, 1, 1), date(2025, 2, 1))  # fmt: skip
    # 2024 is the calendar's first year: there is no earlier year to carry, so no probe is made
    assert not [c for c in responses.calls if "GeneralJournalEntryBiEntities" in c.request.url]


@responses.activate
def test_without_fiscal_period_keys_the_window_keeps_to_its_own_year() -> None:
    sets = _bi_sets()
    sets["GeneralJournalEntryBiEntities"].remove("FiscalCalendarPeriod")
    _calendar(sets)
    assert _reader().balances_window("USMF", date(2025, 1, 1), date(2025, 2, 1)) == (
        date(2025, 1, 1), date(2025, 2, 1))  # fmt: skip

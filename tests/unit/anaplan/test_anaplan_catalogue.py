"""The catalogue listings and the model calendar the mapping assistant reads (``AnaplanClient``)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import responses
from anaplan_unit_support import MP, FakeClock, add_auth, envelope, paged

from d365_anaplan.anaplan.client import AnaplanClient
from d365_anaplan.errors import AnaplanError, AnaplanNotFound


@pytest.fixture
def client(rsps: responses.RequestsMock, clock: FakeClock, make_client: Any) -> AnaplanClient:
    add_auth(rsps, clock)
    c: AnaplanClient = make_client()
    return c


def test_catalogues_parse_every_action_and_list(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.GET, f"{MP}/imports", json=paged("imports", [
        {"id": "112000000001", "name": "Load Accounts", "importType": "HIERARCHY_DATA"},
        {"id": "112000000005", "name": "Load GL Actuals", "importType": "MODULE_DATA"}]))  # fmt: skip
    rsps.add(responses.GET, f"{MP}/exports", json=paged("exports", [
        {"id": "116000000001", "name": "Export Approved Budget", "exportType": "TABULAR_MULTI_COLUMN"}]))  # fmt: skip
    rsps.add(responses.GET, f"{MP}/lists", json=paged("lists", [{"id": "101000000001", "name": "Accounts"}]))
    assert [(i.name, i.import_type) for i in client.import_catalogue()] == [
        ("Load Accounts", "HIERARCHY_DATA"), ("Load GL Actuals", "MODULE_DATA")]  # fmt: skip
    assert [e.export_type for e in client.export_catalogue()] == ["TABULAR_MULTI_COLUMN"]
    assert [lst.name for lst in client.list_catalogue()] == ["Accounts"]
    assert client.find_import("Load Accounts").id == "112000000001"  # the same cached catalogue


def test_fiscal_year_start_from_the_model_calendar(
    rsps: responses.RequestsMock, client: AnaplanClient
) -> None:
    body = envelope(
        modelCalendar={"fiscalYear": {"year": "FY25", "startDate": "2024-07-01", "endDate": "2025-06-30"}}
    )
    rsps.add(responses.GET, f"{MP}/modelCalendar", json=body)
    assert client.fiscal_year_start() == date(2024, 7, 1)


@pytest.mark.parametrize("calendar", [{}, {"fiscalYear": {}}, {"fiscalYear": {"startDate": ""}}])
def test_a_calendar_without_a_fiscal_year_gives_none(
    rsps: responses.RequestsMock, client: AnaplanClient, calendar: dict[str, Any]
) -> None:
    rsps.add(responses.GET, f"{MP}/modelCalendar", json=envelope(modelCalendar=calendar))
    assert client.fiscal_year_start() is None


def test_an_unreadable_calendar_is_named(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.GET, f"{MP}/modelCalendar",
             json=envelope(modelCalendar={"fiscalYear": {"startDate": "July 2024"}}))  # fmt: skip
    with pytest.raises(AnaplanError, match=r"modelCalendar: fiscalYear.startDate 'July 2024' is not a date"):
        client.fiscal_year_start()
    rsps.replace(responses.GET, f"{MP}/modelCalendar", status=404,
                 json={"status": {"code": 404, "message": "Not Found"}})  # fmt: skip
    with pytest.raises(AnaplanNotFound):
        client.fiscal_year_start()

"""The catalogue listings the mapping assistant reads (``AnaplanClient``)."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from anaplan_unit_support import MP, FakeClock, add_auth, paged

from d365_anaplan.anaplan.client import AnaplanClient


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

"""GL lines without named dimension values: split by the account structure that applies to each line
(``DimensionCombinations`` names it, ``ledger.account_structures`` gives its segment order), or by the
integration format when configured so; never by a guessed order (dynamics-fo.md §2.3, §3)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from dyn_support import (
    BI_SETS,
    DATA,
    LEDGER_RECIDS,
    books_responses,
    delimiter_rows,
    format_rows,
    make_client,
    metadata,
    page,
)
from pydantic import ValidationError

from d365_anaplan.config import LedgerOptions
from d365_anaplan.dynamics.dimensions import split_by_structure
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import ConfigError, DynamicsBadResponse, DynamicsRouteUnavailable

BS, PL = "Manufacturing B/S", "Manufacturing P&L"
ORDERS = {
    BS: ["MainAccount", "BusinessUnit"],
    PL: ["MainAccount", "CostCenter", "Department", "BusinessUnit"],
}
COMBINATIONS = ["RecordId", "DisplayValue", "MainAccount", "AccountStructure", "AccountValue"]
# the integration format is MainAccount-BusinessUnit-CostCenter-Department: splitting these P&L strings by it
# would put the cost centre into BusinessUnit
LINES = [
    ("601100-OU_3566-022-001", Decimal("100.25")),
    ("110110-001", Decimal("-100.25")),
]
COMBOS = [
    {
        "RecordId": 1,
        "DisplayValue": "601100-OU_3566-022-001",
        "MainAccount": "601100",
        "AccountStructure": PL,
    },
    {"RecordId": 2, "DisplayValue": "110110-001", "MainAccount": "110110", "AccountStructure": BS},
]


def serve(combos: list[dict[str, Any]] | None = None, *, published: bool = True) -> None:
    sets = dict(BI_SETS)
    if published:
        sets["DimensionCombinations"] = COMBINATIONS
    responses.get(f"{DATA}/$metadata", body=metadata(sets))
    books_responses(responses)
    responses.get(f"{DATA}/DimensionIntegrationFormats", body=format_rows())
    responses.get(f"{DATA}/DimensionParameters", body=delimiter_rows())
    header = {"SourceKey": 100, "AccountingDate": "2025-01-31T00:00:00Z", "SubledgerVoucher": "V1",
              "Ledger": LEDGER_RECIDS["USMF"], "PostingLayer": "Current"}  # fmt: skip
    responses.get(f"{DATA}/GeneralJournalEntryBiEntities", body=page([header]))
    rows = [
        {"SourceKey": i, "GeneralJournalEntry": 100, "LedgerAccount": shown, "AccountingCurrencyAmount": amount,
         "TransactionCurrencyCode": "USD", "Text": ""}
        for i, (shown, amount) in enumerate(LINES, start=1)
    ]  # fmt: skip
    responses.get(f"{DATA}/GeneralJournalAccountEntryBiEntities", body=page(rows))
    responses.get(f"{DATA}/DimensionCombinations", body=page(COMBOS if combos is None else combos))


def read(**options: Any) -> list[Any]:
    client, _, _ = make_client()
    r = DynamicsReader(client, companies=["USMF"], options=LedgerOptions(**options))
    return list(r.gl_lines(date(2025, 1, 1), date(2025, 2, 1)))


def calls(entity_set: str) -> list[dict[str, list[str]]]:
    return [
        parse_qs(urlsplit(c.request.url).query)
        for c in responses.calls
        if urlsplit(c.request.url).path.endswith("/" + entity_set)
    ]


@responses.activate
def test_each_line_splits_in_its_own_structures_order() -> None:
    serve()
    out = read(account_structures=ORDERS)
    assert [(g.account, g.dimensions, g.amount) for g in out] == [
        ("601100", {"CostCenter": "OU_3566", "Department": "022", "BusinessUnit": "001"}, Decimal("100.25")),
        ("110110", {"BusinessUnit": "001"}, Decimal("-100.25")),
    ]
    (q,) = calls("DimensionCombinations")  # one batched look-up for the distinct display values
    assert q["$filter"] == ["DisplayValue eq '110110-001' or DisplayValue eq '601100-OU_3566-022-001'"]
    assert q["$select"] == ["DisplayValue,MainAccount,AccountStructure"]


@responses.activate
def test_a_structure_without_a_configured_order_is_refused_naming_the_account() -> None:
    serve()
    with pytest.raises(ConfigError) as exc:
        read(account_structures={BS: ORDERS[BS]})
    text = str(exc.value)
    assert "account '601100'" in text and repr(PL) in text and "ledger.account_structures" in text
    assert "display_value_order: format" in text


@responses.activate
def test_an_order_that_misplaces_the_main_account_is_refused() -> None:
    serve()
    wrong = {**ORDERS, PL: ["CostCenter", "MainAccount", "Department", "BusinessUnit"]}
    with pytest.raises(ConfigError, match=r"puts 'OU_3566' in MainAccount .* says main account '601100'"):
        read(account_structures=wrong)


@responses.activate
def test_a_display_value_unknown_to_dimension_combinations_is_refused() -> None:
    serve(COMBOS[1:])
    with pytest.raises(DynamicsBadResponse, match=r"row 1: LedgerAccount '601100-OU_3566-022-001' is not in"):
        read(account_structures=ORDERS)


@responses.activate
def test_structures_that_split_one_display_value_differently_are_refused() -> None:
    other = {
        "RecordId": 3,
        "DisplayValue": "601100-OU_3566-022-001",
        "MainAccount": "601100",
        "AccountStructure": "Alt",
    }
    serve([*COMBOS, other])
    alt = ["MainAccount", "Department", "CostCenter", "BusinessUnit"]
    with pytest.raises(DynamicsBadResponse, match="split it differently"):
        read(account_structures={**ORDERS, "Alt": alt})


@responses.activate
def test_without_dimension_combinations_the_route_is_named() -> None:
    serve(published=False)
    with pytest.raises(DynamicsRouteUnavailable, match="DimensionCombinations is not published"):
        read(account_structures=ORDERS)


@responses.activate
def test_display_values_in_the_integration_format_by_setting() -> None:
    serve()
    out = read(display_value_order="format")
    assert out[0].dimensions == {"BusinessUnit": "OU_3566", "CostCenter": "022", "Department": "001"}
    assert calls("DimensionCombinations") == []


@responses.activate
def test_sample_split_says_how_each_line_was_split() -> None:
    serve()
    client, _, _ = make_client()
    r = DynamicsReader(client, companies=["USMF"], options=LedgerOptions(account_structures=ORDERS))
    shown = r.sample_split(date(2025, 1, 1), date(2025, 2, 1), limit=2)
    assert [how for _, how in shown] == [
        "'601100-OU_3566-022-001' in account structure 'Manufacturing P&L' "
        "(MainAccount-CostCenter-Department-BusinessUnit)",
        "'110110-001' in account structure 'Manufacturing B/S' (MainAccount-BusinessUnit)",
    ]


def test_split_by_structure_and_its_refusals() -> None:
    order = ("CostCenter", "MainAccount", "BusinessUnit")
    assert split_by_structure("OU_1-601100-", "S", order, "-") == ("601100", {"CostCenter": "OU_1"})
    with pytest.raises(DynamicsBadResponse, match="4 segments; account structure 'S' has 3"):
        split_by_structure("a-b-c-d", "S", order, "-")
    with pytest.raises(DynamicsBadResponse, match="no main account"):
        split_by_structure("OU_1", "S", order, "-")


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (["CostCenter"], "MainAccount must appear exactly once"),
        (["MainAccount", "CostCenter", "CostCenter"], "a segment repeats"),
        (["MainAccount", "Cost Center"], "not dimension names"),
    ],
)
def test_account_structures_are_validated(order: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LedgerOptions(account_structures={"S": order})

"""The sandbox's $filter parser and evaluator (dynamics-fo.md §2.1), without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from d365_anaplan.dynamics import filters as F
from devkit.sandbox.dynamics.entities import ENUMS, GL_HEADERS, MAIN_ACCOUNTS
from devkit.sandbox.dynamics.query import QueryError, bounds, compile_filter, parse_filter

ROWS = [
    {"MainAccountId": "110110", "Name": "Bank account", "IsSuspended": "No", "MainAccountRecId": 1},
    {"MainAccountId": "110200", "Name": "Petty cash O'Hara", "IsSuspended": "Yes", "MainAccountRecId": 2},
    {"MainAccountId": "601100", "Name": "Salaries", "IsSuspended": "No", "MainAccountRecId": 3},
]


def run(flt: str) -> list[str]:
    pred = compile_filter(parse_filter(flt), MAIN_ACCOUNTS.props, MAIN_ACCOUNTS.type_name, ENUMS)
    return [r["MainAccountId"] for r in ROWS if pred(r)]


def test_builder_output_is_accepted_by_the_sandbox_parser() -> None:
    """Round trip: what our builder writes, the F&O-like parser understands with the same meaning."""
    assert run(F.eq("IsSuspended", F.EnumValue("NoYes", "Yes"))) == ["110200"]
    assert run(F.eq("Name", "Petty cash O'Hara")) == ["110200"]
    assert run(F.contains("Name", "cash")) == ["110200"]
    assert run(F.any_of("MainAccountId", ["110110", "601100"])) == ["110110", "601100"]
    assert run(F.and_(F.ge("MainAccountRecId", 2), F.not_(F.eq("MainAccountId", "601100")))) == ["110200"]
    assert run("MainAccountRecId add 1 eq 4") == ["601100"]
    assert run("Name eq 'SALARIES'") == ["601100"]  # case-insensitive collation


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ("MainAccountId in ('110110')", "'in' operator is not supported"),
        ("IsSuspended has Microsoft.Dynamics.DataEntities.NoYes'No'", "'has' operator is not supported"),
        ("contains(Name,'Bank')", "Unknown function"),
        ("IsSuspended gt Microsoft.Dynamics.DataEntities.NoYes'No'", "only 'eq' and 'ne'"),
        ("IsSuspended eq 'No'", "incompatible types"),
        (
            "IsSuspended eq Microsoft.Dynamics.DataEntities.NoYes'Maybe'",
            "not a valid enumerated type constant",
        ),
        ("Nope eq 1", "Could not find a property named 'Nope'"),
        ("Name eq 'unterminated", "Syntax error"),
        ("(Name eq 'x'", "'\\)' expected"),
        ("", "empty"),
    ],
)
def test_rejected_filters(flt: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        run(flt)


def test_bounds_for_seeking() -> None:
    node = parse_filter(
        "(AccountingDate ge 2025-01-01T00:00:00Z and AccountingDate lt 2025-02-01T00:00:00Z) and (SubledgerVoucherDataAreaId eq 'usmf')"
    )
    lo, hi, lo_inc, hi_inc = bounds(node, "AccountingDate")
    assert (
        lo == datetime(2025, 1, 1, tzinfo=UTC)
        and hi == datetime(2025, 2, 1, tzinfo=UTC)
        and lo_inc
        and not hi_inc
    )
    keys = parse_filter(F.any_of("SourceKey", [5, 9, 7]))
    assert bounds(keys, "SourceKey")[:2] == (5, 9)
    assert bounds(parse_filter("SourceKey eq 5 or Ledger eq 1"), "SourceKey")[:2] == (None, None)
    compile_filter(
        node, GL_HEADERS.props, GL_HEADERS.type_name, ENUMS
    )  # type-checks against the header entity


def test_decimal_and_datetime_literals() -> None:
    node = parse_filter("Amount ge -12.50 and D lt 2025-03-01T10:00:00+02:00")
    lo = bounds(node, "Amount")[0]
    hi = bounds(node, "D")[1]
    assert lo == Decimal("-12.50") and hi == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

"""The $filter builder (dynamics-fo.md §2.1): escaping, enums, dates, unsupported operators, URL budget."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import quote

import pytest

from d365_anaplan.dynamics import filters as F
from d365_anaplan.errors import BadInputData


def test_string_literal_doubles_quotes() -> None:
    assert F.literal("O'Brien") == "'O''Brien'"
    assert F.eq("Name", "it's 'quoted'") == "Name eq 'it''s ''quoted'''"


def test_unicode_string_kept_verbatim() -> None:
    assert F.eq("Description", "Büromaterial – Köln") == "Description eq 'Büromaterial – Köln'"


def test_datetimeoffset_is_unquoted_utc() -> None:
    assert F.literal(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00Z"
    cet = timezone(timedelta(hours=1))
    assert F.literal(datetime(2024, 1, 1, 1, 30, tzinfo=cet)) == "2024-01-01T00:30:00Z"
    assert F.literal(date(2024, 2, 29)) == "2024-02-29T00:00:00Z"


def test_naive_datetime_refused() -> None:
    with pytest.raises(BadInputData, match="no time zone"):
        F.literal(datetime(2024, 1, 1))  # noqa: DTZ001


def test_enum_literal_form_and_operator_rule() -> None:
    no = F.EnumValue("NoYes", "No")
    assert F.eq("IsSuspended", no) == "IsSuspended eq Microsoft.Dynamics.DataEntities.NoYes'No'"
    assert F.ne("IsSuspended", no).startswith("IsSuspended ne Microsoft.Dynamics.DataEntities.NoYes'")
    with pytest.raises(BadInputData, match="only with eq/ne"):
        F.gt("IsSuspended", no)
    with pytest.raises(BadInputData, match="bad enum literal"):
        F.literal(F.EnumValue("NoYes", "No'); drop"))


@pytest.mark.parametrize("op", ["in", "has"])
def test_in_and_has_are_refused(op: str) -> None:
    with pytest.raises(BadInputData, match=f"does not support the '{op}'"):
        F.compare("dataAreaId", op, "usmf")


def test_numbers_and_booleans() -> None:
    assert F.eq("SourceKey", 5637144576) == "SourceKey eq 5637144576"
    assert F.ge("Amount", Decimal("-12.50")) == "Amount ge -12.50"
    assert F.eq("Flag", True) == "Flag eq true"
    assert F.eq("X", None) == "X eq null"
    with pytest.raises(BadInputData):
        F.literal(Decimal("NaN"))


def test_wildcard_is_refused_in_plain_equality_and_explicit_in_contains() -> None:
    with pytest.raises(BadInputData, match="wildcard"):
        F.eq("Description", "50*off")
    assert F.contains("Description", "AP12") == "Description eq '*AP12*'"
    assert F.startswith("Name", "O'B") == "Name eq 'O''B*'"
    with pytest.raises(BadInputData):
        F.contains("Description", "a*b")


def test_bad_property_name_refused() -> None:
    with pytest.raises(BadInputData, match="not a valid property name"):
        F.eq("Name eq 'x' or 1", "y")


def test_control_characters_refused() -> None:
    with pytest.raises(BadInputData, match="control characters"):
        F.eq("Name", "a\nb")


def test_and_or_grouping() -> None:
    assert F.and_("a eq 1", "", "b eq 2") == "(a eq 1) and (b eq 2)"
    assert F.or_("a eq 1") == "a eq 1"
    assert F.not_("a eq 1") == "not (a eq 1)"
    assert (
        F.between("D", date(2024, 1, 1), date(2024, 2, 1))
        == "D ge 2024-01-01T00:00:00Z and D lt 2024-02-01T00:00:00Z"
    )


def test_any_of_builds_or_group() -> None:
    assert F.any_of("dataAreaId", ["usmf", "demf"]) == "dataAreaId eq 'usmf' or dataAreaId eq 'demf'"
    with pytest.raises(BadInputData):
        F.any_of("dataAreaId", [])


def test_split_any_of_respects_budget_and_keeps_every_value() -> None:
    values = list(range(5637144576, 5637144576 + 500))
    pieces = F.split_any_of("GeneralJournalEntry", values, budget=600, extra="dataAreaId eq 'usmf'")
    assert len(pieces) > 1
    seen: list[int] = []
    for piece in pieces:
        assert len(quote(piece, safe="")) <= 600
        assert piece.startswith("(dataAreaId eq 'usmf') and (")
        seen.extend(int(t.split(" eq ")[1].rstrip(")")) for t in piece.split(" and (", 1)[1].split(" or "))
    assert seen == values


def test_split_any_of_escapes_quotes_inside_values() -> None:
    pieces = F.split_any_of("Name", ["a'b", "c"], budget=2048)
    assert pieces == ["Name eq 'a''b' or Name eq 'c'"]


def test_split_any_of_term_longer_than_budget() -> None:
    with pytest.raises(BadInputData, match="longer than the URL budget"):
        F.split_any_of("Name", ["x" * 100], budget=50)

"""Scopes and value maps (flows/mapping.py): ranges, globs, numeric vs text comparison, many-to-one sums,
reverse ambiguity, blank reversal, CSV conflicts and hostile CSV."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from d365_anaplan.config import DimensionMapping, Mappings, parse_connection
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.actuals import ActualsRow, aggregate_actuals
from d365_anaplan.flows.mapping import (
    ScopeFilter,
    ValueMaps,
    build_value_map,
    in_range,
    map_actuals_rows,
    matches,
    parse_map_csv,
    plan_map_names,
    scope_filter,
)
from d365_anaplan.flows.records import GLLine
from d365_anaplan.mapping_config import AccountScope, ValueMapConfig


def good() -> dict[str, object]:
    return {
        "name": "contoso",
        "dynamics": {"environment_url": "https://contoso.operations.dynamics.com", "tenant_id": "t",
                     "client_id": "app", "client_secret": "x", "companies": ["USMF", "DEMF"]},
        "anaplan": {"workspace_id": "w", "model_id": "m", "auth": {"mode": "basic", "username": "u", "password": "p"}},
    }  # fmt: skip


DIMS = [DimensionMapping(name="CostCenter", column="CostCenter", blank_member="CC-NONE")]
TYPES = {
    "1100": "Asset",
    "2100": "Liability",
    "3100": "Equity",
    "4000": "Revenue",
    "4100": "Revenue",
    "6100": "Expense",
    "8990": "Expense",
    "9100": "Expense",
    "50000": "Expense",
    "A100": "Expense",
    "9000": "ProfitAndLoss",
}


# --- scopes ----------------------------------------------------------------------------------------------


def test_range_compares_numbers_when_the_ends_have_the_accounts_length() -> None:
    assert in_range("1000", "0900", "1100")
    assert not in_range("0899", "0900", "1100")
    # different lengths: text comparison, as the schema states ("50000" sorts between "4000" and "8999")
    assert in_range("50000", "4000", "8999")
    assert not in_range("950", "4000", "8999")
    assert in_range("a150", "A100", "A199")  # text, case-insensitive
    assert not in_range("A200", "A100", "A199")


def test_globs_are_case_insensitive_fnmatch() -> None:
    assert matches("4100", "4*")
    assert matches("6010", "60?0")
    assert not matches("5100", "4*")
    assert matches("ab-100", "AB-*")
    assert matches("4500", "4000..4999")


def test_scope_by_types_ranges_globs_and_excludes() -> None:
    scope = AccountScope(types=["Revenue", "Expense"], include=["4000..8999", "9*"], exclude=["8990"])
    f = ScopeFilter(scope, TYPES, setting="mapping.scopes.actuals")
    assert f.accounts() == ["4000", "4100", "50000", "6100", "9100"]
    assert f.reason_out("1100") == "its type Asset is not one of types ['Revenue', 'Expense']"
    assert f.reason_out("8990") == "it matches exclude '8990'"
    assert "matches none of include" in str(f.reason_out("A100"))
    assert f.reason_out("7777") == "it is not a main account in F&O (its type is unknown)"
    assert "9100" in f and "1100" not in f


def test_exclude_types_and_an_empty_scope() -> None:
    f = ScopeFilter(AccountScope(exclude_types=["Asset", "Liability", "Equity"]), TYPES, setting="s")
    assert "1100" not in f and "2100" not in f and "6100" in f
    assert ScopeFilter(AccountScope(), {}, setting="s").reason_out("anything") is None


def test_plans_scope_defaults_to_the_actuals_scope() -> None:
    m = Mappings.model_validate({"scopes": {"actuals": {"types": ["Revenue"]}}})
    assert scope_filter(m, "plans", TYPES).reason_out("6100") is not None
    assert scope_filter(m, "plans", TYPES).setting == "mapping.scopes.actuals"
    m2 = Mappings.model_validate(
        {"scopes": {"actuals": {"types": ["Revenue"]}, "plans": {"types": ["Expense"]}}}
    )
    assert "6100" in scope_filter(m2, "plans", TYPES)
    assert scope_filter(m2, "plans", TYPES).setting == "mapping.scopes.plans"


def test_scope_config_refuses_unknown_types_and_half_ranges() -> None:
    with pytest.raises(ValidationError, match="Revenu"):
        AccountScope(types=["Revenu"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="both ends"):
        AccountScope(include=["4000.."])


# --- value maps ----------------------------------------------------------------------------------------------


def _maps(**value_maps: dict[str, object]) -> ValueMaps:
    m = Mappings.model_validate({"dimensions": [d.model_dump() for d in DIMS], "value_maps": value_maps})
    return ValueMaps.build(m)


def _row(company: str, account: str, cc: str, amount: str, currency: str = "USD") -> ActualsRow:
    return ActualsRow(company, account, (cc,), date(2025, 1, 1), Decimal(amount), currency=currency)


def test_many_to_one_sums_per_anaplan_cell_and_currency() -> None:
    maps = _maps(
        company={"values": {"USMF": "US-OPS", "USRT": "US-OPS"}},
        CostCenter={"values": {"CC100": "CC-SHARED", "CC200": "CC-SHARED"}},
    )
    rows = [
        _row("USMF", "6100", "CC100", "10.10"),
        _row("USRT", "6100", "CC200", "0.20"),
        _row("USMF", "6100", "CC300", "5.00"),
        _row("USMF", "6100", "", "1.01"),
        _row("USRT", "6100", "CC100", "7.00", currency="CAD"),
    ]
    got = {(r.company, r.account, r.dims, r.currency): (r.amount, r.line_count)
           for r in map_actuals_rows(rows, maps, DIMS)}  # fmt: skip
    assert got == {
        ("US-OPS", "6100", ("CC-SHARED",), "USD"): (Decimal("10.30"), 2),
        ("US-OPS", "6100", ("CC300",), "USD"): (Decimal("5.00"), 1),  # passthrough
        ("US-OPS", "6100", ("CC-NONE",), "USD"): (Decimal("1.01"), 1),  # blank -> blank_member
        ("US-OPS", "6100", ("CC-SHARED",), "CAD"): (Decimal("7.00"), 1),  # never added to USD
    }
    assert all(isinstance(a, Decimal) for a, _ in got.values())


def test_scope_drops_rows_before_mapping_and_natural_sign_uses_the_fo_account() -> None:
    maps = _maps(account={"values": {"4000": "REV", "4100": "REV"}})
    scope = ScopeFilter(AccountScope(types=["Revenue", "Expense"]), TYPES, setting="s")
    rows = [_row("USMF", "4000", "", "-100.00"), _row("USMF", "4100", "", "-0.50"),
            _row("USMF", "6100", "", "40.00"), _row("USMF", "1100", "", "60.50")]  # fmt: skip
    got = [
        (r.account, r.amount) for r in map_actuals_rows(rows, maps, DIMS, scope=scope, account_types=TYPES)
    ]
    assert got == [("6100", Decimal("40.00")), ("REV", Decimal("100.50"))]
    with pytest.raises(BadInputData, match="account '9000' has main account type 'ProfitAndLoss'"):
        list(map_actuals_rows([_row("USMF", "9000", "", "1")], maps, DIMS, account_types=TYPES))


def test_unmapped_fail_refuses_a_code_missing_from_the_map() -> None:
    maps = _maps(CostCenter={"values": {"CC100": "A"}, "unmapped": "fail"})
    with pytest.raises(BadInputData, match=r"CostCenter 'CC300' is not in mapping.value_maps.CostCenter"):
        list(map_actuals_rows([_row("USMF", "6100", "CC300", "1")], maps, DIMS))


def test_codes_compare_case_insensitively_like_fo() -> None:
    maps = _maps(CostCenter={"values": {"cc100": "A"}})
    assert maps.get("CostCenter").apply("CC100", where="x") == "A"


def test_reverse_one_to_one_passthrough_and_blank_member() -> None:
    maps = _maps(company={"values": {"USMF": "US-OPS"}}, CostCenter={"values": {"CC100": "CC-A"}})
    assert maps.reverse_codes("US-OPS", "6100", {"CostCenter": "CC-A"}, where="w") == (
        "USMF", "6100", {"CostCenter": "CC100"})  # fmt: skip
    assert maps.reverse_codes("USRT", "6100", {"CostCenter": "CC-NONE"}, where="w") == (
        "USRT", "6100", {"CostCenter": ""})  # fmt: skip


def test_reverse_of_a_merged_member_is_refused_naming_map_member_candidates_and_remedy() -> None:
    maps = _maps(CostCenter={"values": {"CC100": "CC-SHARED", "CC200": "CC-SHARED", "CC300": "CC-C"}})
    with pytest.raises(BadInputData) as err:
        maps.reverse_codes("USMF", "6100", {"CostCenter": "CC-SHARED"}, where="export 'B' line 3")
    text = str(err.value)
    assert text.startswith(
        "export 'B' line 3: mapping.value_maps.CostCenter: the reverse of Anaplan member 'CC-SHARED'"
    )
    assert "['CC100', 'CC200']" in text and "mapping.value_maps.CostCenter.reverse" in text
    assert maps.ambiguities(["company", "CostCenter"]) == [
        maps.get("CostCenter").ambiguity_text("CC-SHARED", ["CC100", "CC200"])
    ]
    chosen = _maps(
        CostCenter={"values": {"CC100": "CC-SHARED", "CC200": "CC-SHARED"}, "reverse": {"CC-SHARED": "CC200"}}
    )
    assert chosen.reverse_codes("USMF", "6100", {"CostCenter": "CC-SHARED"}, where="w")[2] == {
        "CostCenter": "CC200"
    }
    assert chosen.ambiguities(["CostCenter"]) == []


def test_reverse_entry_must_choose_among_the_candidates() -> None:
    with pytest.raises(ValidationError, match="is not one of the F&O codes mapped to it"):
        ValueMapConfig(values={"CC100": "S", "CC200": "S"}, reverse={"S": "CC999"})
    with pytest.raises(ConfigError, match="does not map to"):
        build_value_map(
            "CostCenter", ValueMapConfig(csv="m.csv", reverse={"S": "CC999"}), {"CC100": "S", "CC200": "S"}
        )


def test_plan_map_names_follow_the_plan_dimensions() -> None:
    m = Mappings.model_validate({"dimensions": [d.model_dump() for d in DIMS], "plans": {"dimensions": []}})
    assert plan_map_names(m) == ["company", "account"]


def test_unknown_map_key_is_a_config_error() -> None:
    with pytest.raises(
        ValidationError, match=r"value_maps\.Departmnt: unknown map; keys are company, account, CostCenter"
    ):
        Mappings.model_validate(
            {"dimensions": [d.model_dump() for d in DIMS], "value_maps": {"Departmnt": {}}}
        )


# --- CSV maps ----------------------------------------------------------------------------------------------


def test_csv_rows_merge_with_values_and_conflicts_are_refused() -> None:
    rows = parse_map_csv(
        "\ufefffo,anaplan\r\nCC100,CC-SHARED\nCC200,CC-SHARED\n\nCC100,CC-SHARED\n", source="m.csv"
    )
    assert rows == {"CC100": "CC-SHARED", "CC200": "CC-SHARED"}
    vm = build_value_map("CostCenter", ValueMapConfig(values={"CC300": "X"}, csv="m.csv"), rows)
    assert vm.apply("cc200", where="w") == "CC-SHARED" and vm.apply("CC300", where="w") == "X"
    with pytest.raises(
        ConfigError, match=r"'CC100' maps to 'OTHER' in values and to 'CC-SHARED' in the CSV 'm.csv'"
    ):
        build_value_map("CostCenter", ValueMapConfig(values={"CC100": "OTHER"}, csv="m.csv"), rows)
    with pytest.raises(
        BadInputData, match=r"m.csv line 3: F&O code 'cc100' maps to 'B' here and to 'A' on line 2"
    ):
        parse_map_csv("fo,anaplan\nCC100,A\ncc100,B\n", source="m.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("code,member\nA,B\n", "line 1: the header must be 'fo,anaplan'"),
        ("fo,anaplan\nA,B,C\n", "line 2: has 3 field(s), expected 2"),
        (
            'fo,anaplan\nA,=HYPERLINK("x")\n',
            "line 2: field 'anaplan' value '=HYPERLINK(\"x\")' starts with '='",
        ),
        ("fo,anaplan\n@SUM(1),B\n", "line 2: field 'fo' value '@SUM(1)' starts with '@'"),
        ("fo,anaplan\nA\x00,B\n", "line 2: field 'fo' value 'A\\x00' contains a control character"),
        ("fo,anaplan\n A,B\n", "has leading or trailing spaces"),
        ('fo,anaplan\n"A,B\n', "not valid CSV"),
        ("", "the file is empty"),
    ],
)
def test_hostile_csv_is_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(BadInputData) as err:
        parse_map_csv(text, source="s3://cfg/maps/cc.csv")
    assert message in str(err.value) and str(err.value).startswith("s3://cfg/maps/cc.csv")
    assert "\n" not in str(err.value)


def test_csv_path_may_not_climb_out_of_its_folder() -> None:
    with pytest.raises(ValidationError, match=r"'\.\.' is not allowed"):
        ValueMapConfig(csv="../secrets/map.csv")
    for path in ("/etc/passwd", "~/map.csv", "C:/maps/x.csv", "s3://other-bucket/map.csv"):
        with pytest.raises(ValidationError, match="a map file path is relative"):
            ValueMapConfig(csv=path)


# --- the configuration round trip --------------------------------------------------------------------------


def test_the_schema_example_parses() -> None:
    data = {**good(), "mapping": {
        "dimensions": [{"name": "CostCenter", "column": "CostCenter"}],
        "scopes": {"actuals": {"types": ["Revenue", "Expense"], "include": ["4000..8999", "9*"], "exclude": ["8990"]}},
        "value_maps": {"company": {"values": {"USMF": "US-OPS", "DEMF": "DE-OPS"}, "unmapped": "passthrough"},
                       "CostCenter": {"values": {"CC100": "CC-SHARED", "CC200": "CC-SHARED"},
                                      "reverse": {"CC-SHARED": "CC100"}}},
        "actuals": {"sign": "natural"}}}  # fmt: skip
    cfg = parse_connection(data)
    assert cfg.mapping.actuals.sign == "natural"
    assert cfg.mapping.scopes.for_flow("plans").include == ["4000..8999", "9*"]
    assert ValueMaps.build(cfg.mapping).company.apply("USMF", where="w") == "US-OPS"


def test_aggregate_then_map_equals_mapping_each_line() -> None:
    """The many-to-one sum is the sum of the GL lines behind the merged cells, to the cent."""
    lines = [GLLine(company="USMF", account="6100", dimensions={"CostCenter": cc}, accounting_date=date(2025, 1, d),
                    amount=Decimal(a)) for cc, d, a in (("CC100", 2, "0.10"), ("CC200", 3, "0.20"), ("CC100", 4, "-0.05"))]  # fmt: skip
    rows = aggregate_actuals(lines, dimensions=DIMS).rows()
    maps = _maps(CostCenter={"values": {"CC100": "S", "CC200": "S"}})
    (only,) = list(map_actuals_rows(rows, maps, DIMS))
    assert only.amount == sum((g.amount for g in lines), Decimal(0)) and only.line_count == 3


def test_natural_sign_for_actuals_flips_credit_nature_accounts_only() -> None:
    maps = _maps()
    rows = [_row("USMF", a, "CC1", x) for a, x in (("2100", "-50.00"), ("3100", "-10.00"), ("1100", "60.00"),
                                                 ("4000", "0.00"))]  # fmt: skip
    got = {r.account: r.amount for r in map_actuals_rows(rows, maps, DIMS, account_types=TYPES)}
    assert got == {
        "2100": Decimal("50.00"),
        "3100": Decimal("10.00"),
        "1100": Decimal("60.00"),
        "4000": Decimal("0.00"),
    }
    ledger = {r.account: r.amount for r in map_actuals_rows(rows, maps, DIMS)}
    assert ledger["2100"] == Decimal("-50.00"), "ledger sign (the default) leaves amounts as F&O holds them"

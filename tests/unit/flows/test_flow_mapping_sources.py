"""CSV value maps read beside a local configuration file or from the config bucket (steps/mapping.py):
size-capped, strictly decoded, hostile content refused with one line; coverage verdicts of check and run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from d365_anaplan.config import parse_connection
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.steps import mapping as steps_mapping
from d365_anaplan.steps.mapping import MapSource, coverage_problems, load_value_maps, read_map_csv

BUCKET = "config-bucket"


def _cfg(**mapping: Any) -> Any:
    return parse_connection({
        "name": "contoso",
        "dynamics": {"environment_url": "https://contoso.operations.dynamics.com", "tenant_id": "t",
                     "client_id": "app", "client_secret": "x", "companies": ["1000", "2000"]},
        "anaplan": {"workspace_id": "w", "model_id": "m", "auth": {"mode": "basic", "username": "u", "password": "p"}},
        "mapping": {"dimensions": [{"name": "CostCenter", "column": "CostCenter", "list_name": "Cost Centres",
                                    "blank_member": "NONE"}], **mapping},
    })  # fmt: skip


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_local_csv_is_read_relative_to_the_configuration_folder(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "cc.csv").write_text("fo,anaplan\nCC100,SHARED\nCC200,SHARED\n", encoding="utf-8")
    cfg = _cfg(value_maps={"CostCenter": {"csv": "maps/cc.csv", "values": {"CC300": "OPS"}}})
    maps = load_value_maps(cfg, MapSource(base_dir=tmp_path))
    assert dict(maps.get("CostCenter").forward) == {"cc100": "SHARED", "cc200": "SHARED", "cc300": "OPS"}
    with pytest.raises(BadInputData, match=r"maps/nope.csv: the value map cannot be read \(No such file"):
        load_value_maps(
            _cfg(value_maps={"CostCenter": {"csv": "maps/nope.csv"}}), MapSource(base_dir=tmp_path)
        )


def test_aws_csv_is_a_key_in_the_config_bucket(s3: Any) -> None:
    s3.put_object(
        Bucket=BUCKET, Key="connections/maps/company.csv", Body=b"fo,anaplan\n1000,US-OPS\n2000,DE-OPS\n"
    )
    cfg = _cfg(value_maps={"company": {"csv": "connections/maps/company.csv", "unmapped": "fail"}})
    maps = load_value_maps(cfg, MapSource(s3=s3, bucket=BUCKET))
    assert maps.company.apply("2000", where="w") == "DE-OPS"
    with pytest.raises(
        BadInputData, match=r"^s3://config-bucket/maps/none.csv: the value map cannot be read \(NoSuchKey\)$"
    ):
        read_map_csv(MapSource(s3=s3, bucket=BUCKET), "maps/none.csv")


def test_aws_csv_outside_the_configuration_prefix_is_refused_before_reading(s3: Any) -> None:
    """Only connections/* is writable by the configuration writers alone (template.yaml bucket policy): a map
    elsewhere in the bucket could be changed by anyone who may write there, so it is refused by name."""
    s3.put_object(Bucket=BUCKET, Key="maps/company.csv", Body=b"fo,anaplan\n1000,EVIL\n")
    cfg = _cfg(
        value_maps={"company": {"csv": "maps/company.csv"}, "CostCenter": {"csv": "connectionsX/cc.csv"}}
    )
    with pytest.raises(ConfigError) as err:
        load_value_maps(cfg, MapSource(s3=s3, bucket=BUCKET))
    assert err.value.problems == [
        "mapping.value_maps.company.csv: 'maps/company.csv' is outside 'connections/' of the config bucket, "
        "where only the configuration writers (ConfigWriterArns) may change objects; store the CSV under "
        "connections/ and name that key (e.g. csv: connections/maps/company.csv)",
        "mapping.value_maps.CostCenter.csv: 'connectionsX/cc.csv' is outside 'connections/' of the config "
        "bucket, where only the configuration writers (ConfigWriterArns) may change objects; store the CSV "
        "under connections/ and name that key (e.g. csv: connections/maps/CostCenter.csv)",
    ]
    local = load_value_maps(
        _cfg(value_maps={"company": {"values": {"1000": "US"}}}), MapSource(s3=s3, bucket=BUCKET)
    )
    assert local.company.apply("1000", where="w") == "US"


@pytest.mark.parametrize("path", ["../secrets.csv", "maps/../../x.csv", "/etc/passwd", "~/x.csv", "C:/x.csv"])
def test_local_csv_outside_the_configuration_folder_is_refused(path: str) -> None:
    with pytest.raises(ConfigError, match=r"value_maps"):
        _cfg(value_maps={"CostCenter": {"csv": path}})


def test_a_wrong_header_names_the_map_and_line_but_not_its_text(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="connections/maps/cc.csv", Body=b"\nclient_secret,hunter2\n")
    cfg = _cfg(value_maps={"CostCenter": {"csv": "connections/maps/cc.csv"}})
    with pytest.raises(BadInputData) as err:
        load_value_maps(cfg, MapSource(s3=s3, bucket=BUCKET))
    assert str(err.value) == (
        "mapping.value_maps.CostCenter (s3://config-bucket/connections/maps/cc.csv) line 2: the header must be "
        "'fo,anaplan'"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"fo,anaplan\n1000,\xff\xfe\n", "not UTF-8 text (byte 17); refused"),
        (
            b"fo,anaplan\n1000,=cmd|' /C calc'!A0\n",
            "line 2: field 'anaplan' value \"=cmd|' /C calc'!A0\" starts with '='",
        ),
        (b"<html>not a map</html>", "line 1: the header must be 'fo,anaplan'"),
    ],
)
def test_hostile_map_in_the_bucket_is_refused(s3: Any, body: bytes, message: str) -> None:
    s3.put_object(Bucket=BUCKET, Key="maps/x.csv", Body=body)
    with pytest.raises(BadInputData) as err:
        read_map_csv(MapSource(s3=s3, bucket=BUCKET), "maps/x.csv")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_map_larger_than_the_cap_is_refused_without_reading_it_all(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps_mapping, "MAX_MAP_BYTES", 64)
    s3.put_object(Bucket=BUCKET, Key="maps/big.csv", Body=b"fo,anaplan\n" + b"A1,B1\n" * 1000)
    with pytest.raises(BadInputData, match="larger than 64 bytes; refused"):
        read_map_csv(MapSource(s3=s3, bucket=BUCKET), "maps/big.csv")


def test_coverage_of_a_list_the_connector_does_not_load() -> None:
    cfg = _cfg(value_maps={"CostCenter": {"values": {"CC100": "SHARED", "CC200": "SHARED", "CC300": "GONE"}}})
    maps = load_value_maps(cfg, MapSource())
    members = {"CostCenter": {"SHARED", "CC400", "NONE"}}
    assert coverage_problems(cfg, maps, members, {"CostCenter": ["CC100", "CC400", "CC500"]}) == [
        "mapping.value_maps.CostCenter: member(s) ['GONE'] are not in the Anaplan list 'Cost Centres'",
        "mapping.value_maps.CostCenter: F&O value(s) ['CC500'] are not in the map (unmapped: passthrough) and not "
        "members of the Anaplan list 'Cost Centres'",
    ]
    # unmapped codes go to the unmapped member under policy map: the run would not fail on them
    lenient = _cfg(
        value_maps={"CostCenter": {"values": {"CC100": "SHARED"}}},
        actuals={"unmapped_policy": "map", "unmapped_account": "X"},
        dimensions=[{"name": "CostCenter", "column": "CostCenter", "list_name": "Cost Centres",
                     "unmapped_member": "NONE"}],
    )  # fmt: skip
    assert (
        coverage_problems(lenient, load_value_maps(lenient, MapSource()), members, {"CostCenter": ["CC500"]})
        == []
    )
    # a list the connector loads receives the mapped codes: nothing to check
    loaded = _cfg(
        value_maps={"CostCenter": {"values": {"CC300": "GONE"}}},
        dimensions=[
            {"name": "CostCenter", "column": "CostCenter", "list_name": "Cost Centres", "list_import": "L"}
        ],
    )
    assert coverage_problems(loaded, load_value_maps(loaded, MapSource()), members, {}) == []


class _Lists:
    """The one Anaplan call the value-map findings make: the members of a list."""

    def __init__(self, members: dict[str, list[str]]) -> None:
        self.members = members

    def list_items(self, name: str) -> list[Any]:
        from types import SimpleNamespace

        return [SimpleNamespace(code=c, name=c) for c in self.members[name]]


def test_pre_check_findings_and_the_remedy_the_run_prints() -> None:
    from d365_anaplan.steps.preflight import _value_maps
    from devkit.commands.remedies import for_failure

    cfg = _cfg(value_maps={"company": {"values": {"1000": "US-OPS"}, "unmapped": "fail"}})
    (only,) = _value_maps(cfg, _Lists({}), None, MapSource())  # type: ignore[arg-type]
    assert not only.ok and only.detail.startswith(
        "dynamics.companies: company '2000' is not in mapping.value_maps.company"
    )
    assert for_failure("BadInputData", only.detail, cfg) == steps_mapping.VALUE_MAP_REMEDY == only.remedy

    cfg = _cfg(value_maps={"CostCenter": {"values": {"CC100": "SHARED", "CC200": "SHARED", "CC300": "GONE"}}})
    found = {
        f.name: f for f in _value_maps(cfg, _Lists({"Cost Centres": ["SHARED", "NONE"]}), None, MapSource())
    }  # type: ignore[arg-type]
    assert found["value maps"].ok
    assert found["value map 'CostCenter' (members)"].detail == (
        "mapping.value_maps.CostCenter: member(s) ['GONE'] are not in the Anaplan list 'Cost Centres'"
    )
    assert (
        "the reverse of Anaplan member 'SHARED' is ambiguous" in found["value maps reversed for plans"].detail
    )
    plans_only = {f.name for f in _value_maps(cfg, _Lists({}), "plans", MapSource())}  # type: ignore[arg-type]
    assert plans_only == {"value maps", "value maps reversed for plans"}, "no list is read for plans"
    assert for_failure(
        "BadInputData", "export 'B' line 2: account '1' is outside mapping.scopes.plans", cfg
    ) == (steps_mapping.SCOPE_REMEDY)

"""Connection configuration: normalisation, host checks, and one clear line per problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from d365_anaplan.config import (
    ConnectionConfig,
    load_connection_file,
    load_connections,
    parse_connection,
    parse_connections,
)
from d365_anaplan.errors import ConfigError

SECRET = "s3cr3t-VALUE-never-printed"


def good() -> dict[str, Any]:
    return {
        "name": "contoso",
        "dynamics": {
            "environment_url": "https://Contoso-Prod.Operations.Dynamics.com/namespaces/AXSF/",
            "tenant_id": "11111111-2222-3333-4444-555555555555",
            "client_id": "app-id",
            "client_secret": SECRET,
            "companies": ["usmf", "DEMF"],
        },
        "anaplan": {
            "workspace_id": "8a8b8c8d8e8f",
            "model_id": "ABCDEF0123456789",
            "auth": {"mode": "basic", "username": "integration@contoso.com", "password": SECRET},
        },
    }


def problems_of(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_connection(data, **kwargs)
    text = str(info.value)
    assert SECRET not in text, "a secret leaked into an error message"
    return info.value.problems


def test_valid_connection_is_normalised() -> None:
    cfg = parse_connection(good())
    assert cfg.dynamics.environment_url == "https://contoso-prod.operations.dynamics.com"
    assert cfg.dynamics.scope == "https://contoso-prod.operations.dynamics.com/.default"
    assert cfg.dynamics.companies == ["USMF", "DEMF"]
    assert cfg.anaplan.api_url == "https://api.anaplan.com/2/0"
    assert cfg.anaplan.auth_url == "https://auth.anaplan.com"
    assert cfg.anaplan.oauth_url == "https://us1a.app.anaplan.com"
    assert cfg.dynamics.authority_host == "https://login.microsoftonline.com"
    assert SECRET not in repr(cfg)


@pytest.mark.parametrize(
    "host",
    [
        "https://contoso.sandbox.operations.dynamics.com",
        "https://contoso.operations.eu.dynamics.com",
        "https://usnconeboxax1aos.cloud.onebox.dynamics.com",
        "https://contosodev.cloudax.dynamics.com",
        "https://contoso.operations.dynamics.cn",
    ],
)
def test_known_fo_host_patterns_accepted(host: str) -> None:
    data = good()
    data["dynamics"]["environment_url"] = host
    assert parse_connection(data).dynamics.environment_url == host


def test_wrong_scheme_is_one_line_naming_field_and_value() -> None:
    data = good()
    data["dynamics"]["environment_url"] = "http://contoso.operations.dynamics.com"
    assert problems_of(data) == [
        "dynamics.environment_url: 'http://contoso.operations.dynamics.com' must use https"
    ]


def test_unknown_hosts_are_refused_unless_allowed() -> None:
    data = good()
    data["dynamics"]["environment_url"] = "https://erp.contoso.example"
    data["anaplan"]["api_url"] = "https://anaplan.contoso.example/2/0"
    found = problems_of(data)
    assert len(found) == 2
    assert found[0].startswith("dynamics.environment_url: host 'erp.contoso.example' is not a known")
    assert found[1].startswith("anaplan.api_url: host 'anaplan.contoso.example' is not under anaplan.com")
    data["security"] = {"allowed_hosts": ["ERP.contoso.example", "anaplan.contoso.example"]}
    assert parse_connection(data).anaplan.api_url == "https://anaplan.contoso.example/2/0"


def test_lookalike_anaplan_host_is_refused() -> None:
    data = good()
    data["anaplan"]["auth_url"] = "https://auth.anaplan.com.evil.example"
    assert problems_of(data) == [
        "anaplan.auth_url: host 'auth.anaplan.com.evil.example' is not under anaplan.com; "
        "add it to security.allowed_hosts if it is yours"
    ]


def test_authority_host_must_be_entra_or_allowed() -> None:
    data = good()
    data["dynamics"]["authority_host"] = "https://login.example.net"
    (line,) = problems_of(data)
    assert line.startswith("dynamics.authority_host: host 'login.example.net' is not a Microsoft Entra ID")
    data["dynamics"]["authority_host"] = "https://login.microsoftonline.us"
    assert parse_connection(data).dynamics.authority_host == "https://login.microsoftonline.us"


def test_missing_credentials_each_reported() -> None:
    data = good()
    del data["dynamics"]["client_secret"]
    del data["anaplan"]["auth"]["password"]
    found = problems_of(data)
    assert "dynamics: set exactly one of dynamics.client_secret or dynamics.certificate" in found
    assert "anaplan.auth.password: required setting is missing" in found
    assert len(found) == 2


def test_both_dynamics_credentials_is_a_problem() -> None:
    data = good()
    data["dynamics"]["certificate"] = {"cert_pem": "file:/x.pem", "key_pem": "file:/x.key"}
    assert problems_of(data) == [
        "dynamics: set exactly one of dynamics.client_secret or dynamics.certificate"
    ]


def test_several_problems_at_once_one_line_each() -> None:
    data = good()
    data["dynamics"]["environment_url"] = "ftp://contoso.operations.dynamics.com"
    data["dynamics"]["companies"] = []
    data["anaplan"]["chunk_size_mb"] = 80
    data["anaplan"]["auth"] = {"mode": "smoke-signals"}
    data["surprise"] = 1
    found = problems_of(data)
    assert any(p.startswith("dynamics.companies:") for p in found)
    assert any(p.startswith("anaplan.chunk_size_mb:") and "80" in p for p in found)
    assert any(p.startswith("anaplan.auth:") for p in found)
    assert "surprise: unknown setting" in found
    assert "dynamics.environment_url: 'ftp://contoso.operations.dynamics.com' must use https" in found


def test_certificate_and_device_modes_parse() -> None:
    data = good()
    data["anaplan"]["auth"] = {
        "mode": "certificate",
        "cert_pem": "file:/etc/a.pem",
        "key_pem": "env:ANAPLAN_KEY",
    }
    cfg = parse_connection(data)
    assert cfg.anaplan.auth.mode == "certificate"
    assert cfg.anaplan.auth.payload == "v2"
    data["anaplan"]["auth"] = {"mode": "device", "client_id": "abc", "refresh_token": "file:/tmp/rt"}
    assert parse_connection(data).anaplan.auth.mode == "device"


def test_aws_mode_requires_secrets_manager_arns() -> None:
    found = problems_of(good(), aws=True)
    assert found == [
        "dynamics.client_secret: in AWS credentials must be Secrets Manager ARNs, got a inline reference",
        "anaplan.auth.password: in AWS credentials must be Secrets Manager ARNs, got a inline reference",
    ]
    data = good()
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:d365-anaplan/contoso/dynamics-AbCdEf"
    data["dynamics"]["client_secret"] = arn + "#client_secret"
    data["anaplan"]["auth"]["password"] = arn.replace("dynamics", "anaplan") + "#password"
    cfg = parse_connection(data, aws=True)
    assert cfg.dynamics.client_secret is not None
    assert cfg.dynamics.client_secret.json_key == "client_secret"


def test_bad_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndynamics:\n  environment_url: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_connections(path)
    (line,) = info.value.problems
    assert line.startswith("line ") and "not valid YAML" in line
    assert str(path) in str(info.value)


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_connections(path)
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_connections(tmp_path / "nope.yaml")


def test_several_connections_and_duplicate_names(tmp_path: Path) -> None:
    other = good()
    other["name"] = "fabrikam"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"connections": [good(), other]}), encoding="utf-8")
    assert [c.name for c in load_connections(path)] == ["contoso", "fabrikam"]
    assert load_connection_file(path, "fabrikam").name == "fabrikam"
    with pytest.raises(ConfigError, match="name one of"):
        load_connection_file(path)
    with pytest.raises(ConfigError) as info:
        parse_connections(yaml.safe_dump({"connections": [good(), copy.deepcopy(good())]}))
    assert info.value.problems == ["name: 'contoso' is used by more than one connection"]


def test_problems_in_a_list_are_prefixed_with_their_index() -> None:
    second = good()
    second["name"] = "Bad Name"
    with pytest.raises(ConfigError) as info:
        parse_connections(yaml.safe_dump({"connections": [good(), second]}))
    (line,) = info.value.problems
    assert line.startswith("connections[1].name:") and "'Bad Name'" in line


def test_timezone_and_companies_validated() -> None:
    data = good()
    data["close_calendar"] = {"timezone": "Mars/Olympus"}
    data["dynamics"]["companies"] = ["US MF"]
    found = problems_of(data)
    assert any(p.startswith("close_calendar.timezone:") and "Mars/Olympus" in p for p in found)
    assert any(p.startswith("dynamics.companies:") for p in found)


def test_secret_values_are_never_echoed_even_when_wrong_type() -> None:
    data = good()
    data["anaplan"]["auth"]["password"] = {"nested": SECRET}
    found = problems_of(data)
    assert any(p.startswith("anaplan.auth.password") for p in found)


def test_model_is_frozen() -> None:
    cfg: ConnectionConfig = parse_connection(good())
    with pytest.raises(Exception, match="frozen"):
        cfg.name = "x"  # type: ignore[misc]


def test_a_stored_configuration_is_read_no_further_than_the_size_limit(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An oversized object in the configuration bucket is refused after limit+1 bytes, not read whole."""
    from d365_anaplan import runtime
    from d365_anaplan.config import MAX_CONFIG_BYTES

    s3.create_bucket(Bucket="config-bucket")
    s3.put_object(Bucket="config-bucket", Key="connections/big.yaml", Body=b"#" * (3 * MAX_CONFIG_BYTES))
    s3.put_object(Bucket="config-bucket", Key="connections/latin.yaml", Body=b"name: caf\xe9\n")
    monkeypatch.setenv("LEDGER_TABLE", "ledger")
    monkeypatch.setenv("STAGING_BUCKET", "staging")
    monkeypatch.setenv("CONFIG_BUCKET", "config-bucket")
    monkeypatch.delenv("CONFIG_PREFIX", raising=False)
    read: list[int] = []
    get_object = s3.get_object

    def counting_get_object(**kw: Any) -> dict[str, Any]:
        answer = get_object(**kw)
        body = answer["Body"]
        real_read = body.read

        def read_counted(amt: int | None = None) -> bytes:
            data: bytes = real_read(amt)
            read.append(len(data))
            return data

        body.read = read_counted
        return answer

    monkeypatch.setattr(s3, "get_object", counting_get_object)
    monkeypatch.setattr(runtime, "s3", lambda: s3)
    with pytest.raises(ConfigError, match=r"larger than 1,000,000 characters; refused"):
        runtime.load_connection("big", fresh=True)
    assert sum(read) <= MAX_CONFIG_BYTES + 1
    with pytest.raises(ConfigError, match=r"(?s)latin\.yaml.*not UTF-8 text \(byte 10\)"):
        runtime.load_connection("latin", fresh=True)

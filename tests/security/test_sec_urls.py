"""Hostile URLs in a connection configuration: each is refused with one line naming the field, and the line
repeats neither a secret nor the user information of the URL."""

from __future__ import annotations

from typing import Any

import pytest
from sec_support import SECRET, good

from d365_anaplan.config import parse_connection
from d365_anaplan.errors import ConfigError

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:d365-anaplan/contoso-AbCdEf"


def set_field(data: dict[str, Any], field: str, value: str) -> None:
    section, key = field.split(".")
    data[section][key] = value


def refused(data: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_connection(data, **kwargs)
    text = str(info.value)
    assert SECRET not in text
    assert ":x@" not in text and "x@127" not in text, "the URL's user information was echoed"
    return info.value.problems


# (field, hostile URL, security.allowed_hosts)
EXPLOITS = [
    # the findings
    ("anaplan.auth_url", "https://127.0.0.2\\.anaplan.com", []),
    ("anaplan.oauth_url", "https://us1a.app.anaplan.com:x@127.0.0.2", []),
    ("anaplan.api_url", "https://api.anaplan.com:x@evil.example.com/2/0", []),
    ("dynamics.environment_url", "https://erp.contoso.example:x@127.0.0.2", ["erp.contoso.example"]),
    ("dynamics.authority_host", "https://login.contoso.example:x@127.0.0.2", ["login.contoso.example"]),
    # variants: backslash, userinfo without password, percent-encoding, non-ASCII, whitespace
    ("anaplan.api_url", "https://evil.example\\@api.anaplan.com/2/0", []),
    ("anaplan.auth_url", "https://auth.anaplan.com@127.0.0.2", []),
    ("anaplan.auth_url", "https://evil.example%23.anaplan.com", []),
    ("anaplan.api_url", "https://api.anaplan.com%2F@127.0.0.2/2/0", []),
    ("anaplan.api_url", "https://\u0430pi.anaplan.com/2/0", []),  # Cyrillic a
    ("dynamics.environment_url", "https://contoso.operations.dynamics.com\u3002evil.example", []),
    ("anaplan.auth_url", " https://auth.anaplan.com", []),
    ("anaplan.auth_url", "https://auth.anaplan.com\t.evil.example", []),
    # fragments and queries in base URLs
    ("anaplan.auth_url", "https://auth.anaplan.com#@127.0.0.2", []),
    ("anaplan.api_url", "https://api.anaplan.com/2/0?next=https://127.0.0.2", []),
    # plain http
    ("anaplan.oauth_url", "http://us1a.app.anaplan.com", []),
    # ports: a known host on 443 only; a bare allowed host means 443 only; non-canonical ports
    ("anaplan.api_url", "https://api.anaplan.com:8443/2/0", []),
    ("dynamics.environment_url", "https://erp.contoso.example:8443", ["erp.contoso.example"]),
    ("anaplan.api_url", "https://api.anaplan.com:0443/2/0", []),
    ("dynamics.environment_url", "https://contoso.operations.dynamics.com:99999", []),
    ("dynamics.authority_host", "https://login.microsoftonline.com:", []),
]


@pytest.mark.parametrize(("field", "url", "allowed"), EXPLOITS)
def test_hostile_url_refused_naming_the_field(field: str, url: str, allowed: list[str]) -> None:
    data = good()
    set_field(data, field, url)
    if allowed:
        data["security"] = {"allowed_hosts": allowed}
    problems = refused(data)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{field}: ")


@pytest.mark.parametrize(
    "entry", ["https://erp.contoso.example", "user@erp.contoso.example", "erp.contoso.example/x", "*.example"]
)
def test_allowed_hosts_entry_must_be_host_or_host_port(entry: str) -> None:
    data = good()
    data["security"] = {"allowed_hosts": [entry]}
    problems = refused(data)
    assert len(problems) == 1
    assert problems[0].startswith("security.allowed_hosts: ")


def test_bare_allowed_host_is_port_443_and_host_port_names_another() -> None:
    data = good()
    data["dynamics"]["environment_url"] = "https://erp.contoso.example:8443"
    data["security"] = {"allowed_hosts": ["erp.contoso.example:8443"]}
    assert parse_connection(data).dynamics.environment_url == "https://erp.contoso.example:8443"
    data["dynamics"]["environment_url"] = "https://erp.contoso.example"
    (line,) = refused(data)
    assert line.startswith("dynamics.environment_url: host 'erp.contoso.example'")


def aws_connection() -> dict[str, Any]:
    data = good()
    data["dynamics"]["client_secret"] = ARN
    data["anaplan"]["auth"]["password"] = ARN
    return data


def test_aws_connection_may_not_widen_the_allow_list() -> None:
    data = aws_connection()
    data["dynamics"]["environment_url"] = "https://erp.contoso.example"
    data["security"] = {"allowed_hosts": ["erp.contoso.example"]}
    problems = refused(data, aws=True)
    assert problems[0].startswith("security.allowed_hosts: not allowed in a connection stored in AWS")
    assert "AllowedHosts" in problems[0]


def test_aws_extra_hosts_come_from_the_function_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = aws_connection()
    data["dynamics"]["environment_url"] = "https://erp.contoso.example"
    (line,) = refused(data, aws=True)
    assert line.startswith("dynamics.environment_url: host 'erp.contoso.example'")
    assert "stack parameter AllowedHosts" in line
    monkeypatch.setenv("CONNECTOR_ALLOWED_HOSTS", "erp.contoso.example, anaplan.contoso.example:8443")
    assert parse_connection(data, aws=True).dynamics.environment_url == "https://erp.contoso.example"


def test_local_yaml_and_environment_both_add_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    data = good()
    data["dynamics"]["environment_url"] = "https://erp.contoso.example"
    data["anaplan"]["api_url"] = "https://anaplan.contoso.example/2/0"
    data["security"] = {"allowed_hosts": ["erp.contoso.example"]}
    monkeypatch.setenv("CONNECTOR_ALLOWED_HOSTS", "anaplan.contoso.example")
    cfg = parse_connection(data)
    assert cfg.anaplan.api_url == "https://anaplan.contoso.example/2/0"


def test_unreadable_environment_allow_list_entry_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_ALLOWED_HOSTS", "https://evil.example/")
    problems = refused(good())
    assert problems == [
        "CONNECTOR_ALLOWED_HOSTS: 'https://evil.example/' is not host or host:port "
        "(no scheme, path or user information)"
    ]

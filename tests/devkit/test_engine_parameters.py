"""The local engine takes stack parameters the way ``sam deploy --parameter-overrides`` does, and deploys a
connection's extra hosts as the ``AllowedHosts`` parameter, which template.yaml hands to the functions that load
the connection as ``CONNECTOR_ALLOWED_HOSTS`` (in AWS their only source of extra hosts)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from devkit.engine import LocalEngine, Template, TemplateError

pytestmark = pytest.mark.integration


def connection(hosts: list[str]) -> dict[str, Any]:
    return {
        "name": "demo",
        "dynamics": {
            "environment_url": "https://erp.contoso.example",
            "tenant_id": "11111111-2222-3333-4444-555555555555",
            "client_id": "app-id",
            "client_secret": "inline-secret",
            "companies": ["USMF"],
        },
        "anaplan": {
            "workspace_id": "8a8b8c8d8e8f",
            "model_id": "ABCDEF0123456789",
            "auth": {"mode": "basic", "username": "integration@contoso.com", "password": "inline-password"},
        },
        "security": {"allowed_hosts": hosts},
    }


def test_template_defaults_give_no_extra_hosts() -> None:
    tpl = Template(LocalEngine().root / "template.yaml")
    assert tpl.function_environment()["CONNECTOR_ALLOWED_HOSTS"] == ""


def test_parameter_override_reaches_the_function_environment() -> None:
    with LocalEngine(parameters={"AllowedHosts": "erp.contoso.example,127.0.0.1:8443"}) as engine:
        assert engine.environment["CONNECTOR_ALLOWED_HOSTS"] == "erp.contoso.example,127.0.0.1:8443"
        engine.install_connection(connection(["erp.contoso.example", "other.example"]))
        # an explicit stack parameter wins over what the connection YAML asks for
        assert os.environ["CONNECTOR_ALLOWED_HOSTS"] == "erp.contoso.example,127.0.0.1:8443"


def test_installing_a_connection_deploys_its_extra_hosts_as_the_stack_parameter() -> None:
    with LocalEngine() as engine:
        assert engine.environment["CONNECTOR_ALLOWED_HOSTS"] == ""
        engine.install_connection(connection(["erp.contoso.example", "127.0.0.1:8443"]))
        assert engine.environment["CONNECTOR_ALLOWED_HOSTS"] == "erp.contoso.example,127.0.0.1:8443"
        assert os.environ["CONNECTOR_ALLOWED_HOSTS"] == "erp.contoso.example,127.0.0.1:8443"
    assert os.environ.get("CONNECTOR_ALLOWED_HOSTS") != "erp.contoso.example,127.0.0.1:8443", (
        "restored on stop"
    )


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(TemplateError, match="AllowedHostz"):
        LocalEngine(parameters={"AllowedHostz": "x"})

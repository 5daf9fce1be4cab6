"""Configuration of the DMF package route: additive settings, the blob host allowed explicitly."""

from __future__ import annotations

from typing import Any

from test_config import good, problems_of

from d365_anaplan.config import parse_connection

BLOB = "https://fostore.blob.core.windows.net"


def with_package(**dynamics: Any) -> dict[str, Any]:
    data = good()
    data["dynamics"].update(dynamics)
    return data


def test_odata_is_the_default_and_needs_no_package_settings() -> None:
    cfg = parse_connection(good())
    assert cfg.dynamics.gl_transport == "odata" and cfg.dynamics.package.blob_host is None


def test_the_package_route_needs_its_project_and_blob_host() -> None:
    problems = problems_of(with_package(gl_transport="auto"))
    assert any("dynamics.package.export_project and dynamics.package.blob_host" in p for p in problems), (
        problems
    )


def test_the_blob_host_is_never_built_in_and_must_be_allowed_explicitly() -> None:
    data = with_package(gl_transport="package", package={"export_project": "GL", "blob_host": BLOB})
    problems = problems_of(data)
    assert any(
        p.startswith("dynamics.package.blob_host: host 'fostore.blob.core.windows.net'") for p in problems
    )
    data["security"] = {"allowed_hosts": ["fostore.blob.core.windows.net"]}
    cfg = parse_connection(data)
    assert cfg.dynamics.package.blob_host == BLOB and cfg.dynamics.package.package_threshold_lines == 300_000
    data["dynamics"]["package"]["blob_host"] = "http://fostore.blob.core.windows.net"
    assert any("dynamics.package.blob_host" in p and "https" in p for p in problems_of(data))


def test_allowing_the_blob_host_does_not_let_a_credential_go_there() -> None:
    """The storage host is allowed for package downloads (no credential); pointing an authenticated endpoint at
    it, or at any Azure Storage host, is refused naming the field."""
    data = with_package(gl_transport="package", package={"export_project": "GL", "blob_host": BLOB})
    data["security"] = {"allowed_hosts": ["fostore.blob.core.windows.net", "other.blob.core.windows.net"]}
    assert parse_connection(data).dynamics.package.blob_host == BLOB
    for field, url in (
        ("auth_url", BLOB + "/token/authenticate"),
        ("api_url", "https://other.blob.core.windows.net/2/0"),
    ):
        bad = with_package(gl_transport="package", package={"export_project": "GL", "blob_host": BLOB})
        bad["security"] = data["security"]
        bad["anaplan"][field] = url
        problems = problems_of(bad)
        assert any(
            p.startswith(f"anaplan.{field}: host") and "a credential never goes there" in p for p in problems
        ), problems
    bad = with_package(gl_transport="package", package={"export_project": "GL", "blob_host": BLOB})
    bad["security"] = data["security"]
    bad["dynamics"]["environment_url"] = BLOB
    assert any(p.startswith("dynamics.environment_url: host") for p in problems_of(bad))

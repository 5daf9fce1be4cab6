"""``d365-anaplan check`` on a configuration with a hostile URL exits 2 naming the field, before any
connection is opened (the URLs point at the 127.0.0.2 listener, which must see nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sec_support import LEAK_HOST, SECRET, LeakListener, good

from devkit.cli import main


def run_check(
    data: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], *only: str
) -> tuple[int, str]:
    path = tmp_path / "connection.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code = main(["check", "--config", str(path), *only])
    out = capsys.readouterr()
    return code, out.out + out.err


CASES = [
    # field, URL template ({leak} = 127.0.0.2:port), allowed_hosts, auth mode
    ("anaplan.auth_url", "https://auth.anaplan.com:x@{leak}", [], "basic"),
    ("anaplan.oauth_url", "https://us1a.app.anaplan.com:x@{leak}", [], "device"),
    ("anaplan.api_url", "https://api.anaplan.com:x@{leak}/2/0", [], "basic"),
    ("dynamics.environment_url", "https://erp.contoso.example:x@{leak}", ["erp.contoso.example"], "basic"),
    ("dynamics.authority_host", "https://login.contoso.example:x@{leak}", ["login.contoso.example"], "basic"),
    ("anaplan.auth_url", "https://auth.anaplan.com#@{leak}", [], "basic"),
]


@pytest.mark.parametrize(("field", "template", "allowed", "mode"), CASES)
def test_check_refuses_hostile_url_before_connecting(
    field: str,
    template: str,
    allowed: list[str],
    mode: str,
    leak: LeakListener,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = good()
    if mode == "device":
        token = tmp_path / "refresh-token"
        token.write_text(SECRET, encoding="utf-8")
        data["anaplan"]["auth"] = {"mode": "device", "client_id": "c1", "refresh_token": f"file:{token}"}
    section, key = field.split(".")
    data[section][key] = template.format(leak=f"{LEAK_HOST}:{leak.port}")
    if allowed:
        data["security"] = {"allowed_hosts": allowed}
    system = "--only=anaplan" if section == "anaplan" else "--only=dynamics"
    code, output = run_check(data, tmp_path, capsys, system)
    assert code == 2, output
    assert f"{field}: " in output
    assert SECRET not in output
    assert leak.hits == []


def test_check_names_a_missing_ca_bundle_instead_of_an_unreachable_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], leak: LeakListener
) -> None:
    data = good()
    data["dynamics"]["environment_url"] = f"https://{LEAK_HOST}:{leak.port}"
    data["security"] = {"allowed_hosts": [f"{LEAK_HOST}:{leak.port}"]}
    data["tls"] = {"ca_bundle": str(tmp_path / "missing-ca.pem")}
    code, output = run_check(data, tmp_path, capsys, "--only=dynamics")
    assert code == 2, output
    assert "tls.ca_bundle: cannot read the CA bundle file" in output
    assert leak.hits == []

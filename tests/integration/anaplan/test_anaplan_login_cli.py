"""``d365-anaplan anaplan-login`` against the sandbox, then the client running on the stored refresh token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from d365_anaplan.anaplan.client import AnaplanClient
from d365_anaplan.anaplan.tokens import InMemoryTokenCache
from d365_anaplan.config import load_connection_file
from devkit.cli import main
from devkit.sandbox.anaplan.harness import start

pytestmark = pytest.mark.integration


def write_config(path: Path, fragment: dict[str, Any]) -> Path:
    cfg = {
        "name": "sandbox-device",
        "dynamics": {
            "environment_url": "https://contoso.operations.dynamics.com",
            "tenant_id": "00000000-0000-0000-0000-000000000000",
            "client_id": "11111111-1111-1111-1111-111111111111",
            "client_secret": "inline-secret",
            "companies": ["USMF"],
        },
        **fragment,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_device_login_stores_refresh_token_then_client_rotates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with start(device_interval_s=1, device_auto_approve_after=1) as sbx:
        sbx.refresh_token_path = tmp_path / "secrets" / "anaplan-refresh-token"
        config = write_config(tmp_path / "conn.yaml", sbx.connection_fragment("device"))
        assert main(["anaplan-login", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "/activate" in out and "enter the code" in out
        first = sbx.refresh_token_path.read_text()
        assert first and first not in out  # stored, never printed
        assert oct(sbx.refresh_token_path.stat().st_mode & 0o777) == "0o600"
        client = AnaplanClient.from_config(load_connection_file(config), token_cache=InMemoryTokenCache())
        assert client.find_import("Load GL Actuals").id.startswith("112")
        rotated = sbx.refresh_token_path.read_text()
        assert rotated != first  # the rotating client's new refresh token was persisted
        assert sbx.app.counters["refresh_grants"] == 1


def test_login_refuses_other_auth_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with start() as sbx:
        config = write_config(tmp_path / "conn.yaml", sbx.connection_fragment("basic"))
        assert main(["anaplan-login", "--config", str(config)]) == 2
    assert "needs mode 'device'" in capsys.readouterr().err


def test_basic_from_config_through_allowed_hosts(tmp_path: Path) -> None:
    with start() as sbx:
        config = write_config(tmp_path / "conn.yaml", sbx.connection_fragment("certificate"))
        client = AnaplanClient.from_config(load_connection_file(config), token_cache=InMemoryTokenCache())
        assert [i.code for i in client.list_items("Legal Entities")] == ["USMF", "DEMF"]
        assert sbx.app.counters["certificate_v2"] == 1


def test_sandbox_print_config_is_a_usable_fragment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "anaplan", "--print-config", "--state-dir", str(tmp_path / "state")]) == 0
    fragment = yaml.safe_load(capsys.readouterr().out)
    assert set(fragment) == {"anaplan", "tls", "security"}
    assert Path(fragment["tls"]["ca_bundle"]).is_file()
    cfg_path = write_config(tmp_path / "conn.yaml", fragment)
    cfg = load_connection_file(cfg_path)
    assert cfg.anaplan.api_url.endswith("/2/0") and cfg.anaplan.auth.mode == "basic"
    assert len({cfg.anaplan.auth_url, cfg.anaplan.oauth_url, cfg.anaplan.api_url.removesuffix("/2/0")}) == 3
    # the CA is kept in the state dir: a restart trusts the same anchor
    assert main(["sandbox", "anaplan", "--print-config", "--state-dir", str(tmp_path / "state")]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    assert Path(again["tls"]["ca_bundle"]).read_bytes() == Path(fragment["tls"]["ca_bundle"]).read_bytes()

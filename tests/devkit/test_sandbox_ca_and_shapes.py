"""Issue 13 item 7: the sandboxes keep one CA across processes (and can share it), leave nothing in temp
folders, return the model fields ``modelDetails=true`` adds (anaplan-shapes.md §5) and publish the posting
fields of MainAccounts (dynamics-fo.md §2.3)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from d365_anaplan.http import VerifiedSession
from devkit.sandbox.anaplan.harness import RunningSandbox as AnaplanRunning
from devkit.sandbox.anaplan.harness import start as start_anaplan
from devkit.sandbox.anaplan.sdk_bridge import sdk_client
from devkit.sandbox.dynamics.app import SandboxConfig
from devkit.sandbox.dynamics.cli import start as start_dynamics
from devkit.sandbox.dynamics.testing import raw_token

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, HOME=str(tmp / "home"), TMPDIR=str(tmp / "tmp"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "shared")])
    (tmp / "tmp").mkdir(exist_ok=True)
    (tmp / "home").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "devkit.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _printed(tmp: Path, *args: str) -> dict[str, object]:
    proc = _cli(tmp, *args, "--print-config")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    return dict(yaml.safe_load(out))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_one_ca_across_processes_and_sandboxes(tmp_path: Path) -> None:
    first = _printed(tmp_path, "sandbox", "dynamics", "--lines", "50")
    bundle = Path(str(first["tls"]["ca_bundle"]))  # type: ignore[index]
    assert bundle.is_relative_to(tmp_path / "home"), bundle  # the shared default, not a temp folder
    pem = bundle.read_bytes()
    second = _printed(tmp_path, "sandbox", "dynamics", "--lines", "50")
    assert second["tls"] == first["tls"] and bundle.read_bytes() == pem
    anaplan = _printed(tmp_path, "sandbox", "anaplan")
    assert anaplan["tls"] == first["tls"] and bundle.read_bytes() == pem  # one tls.ca_bundle for both

    # a later serving process presents a certificate the printed bundle verifies
    port = _free_port()
    proc = _cli(tmp_path, "sandbox", "dynamics", "--lines", "50", "--port", str(port))
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("# serving") or not line:
                break
        resp = VerifiedSession(ca_bundle=str(bundle), timeout=10).get(
            f"https://127.0.0.1:{port}/data/MainAccounts"
        )
        assert resp.status_code == 401  # TLS verified with the earlier bundle; no token sent
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing left in temp folders


def test_explicit_ca_dir_and_throwaway_ca_leave_no_temp_files(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    dyn = _printed(tmp_path, "sandbox", "dynamics", "--lines", "50", "--ca-dir", str(ca_dir))
    ana = _printed(tmp_path, "sandbox", "anaplan", "--ca-dir", str(ca_dir))
    assert dyn["tls"] == ana["tls"] == {"ca_bundle": str(ca_dir / "sandbox-ca.pem")}
    code = (
        "from devkit.sandbox.dynamics.cli import start\n"
        "from devkit.sandbox.anaplan.harness import start as a\n"
        "from devkit.sandbox.dynamics.app import SandboxConfig\n"
        "s = start(SandboxConfig(gl_lines=10)); t = a(); print(s.ca_bundle); s.stop(); t.stop()\n"
    )
    env = dict(
        os.environ,
        TMPDIR=str(tmp_path / "tmp"),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "shared")]),
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(tmp_path / "tmp"))  # the throwaway CA lived in TMPDIR ...
    assert list((tmp_path / "tmp").iterdir()) == []  # ... and is gone with the process


# --- Anaplan: model details --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anaplan() -> Iterator[AnaplanRunning]:
    with start_anaplan(task_start_delay_s=0.01, task_run_delay_s=0.05) as running:
        yield running


def test_sdk_get_models_and_get_model(anaplan: AnaplanRunning) -> None:
    client = sdk_client(anaplan)
    models = {m.id: m for m in client.get_models()}
    ours = models[anaplan.app.seed.model_id]
    assert ours.last_saved_serial_number >= 2_000_000 and len(ours.last_modified_by_user_guid) == 32
    assert ours.iso_creation_date.endswith("+0000") and ours.workspace_id == anaplan.app.seed.workspace_id
    one = client.get_model()
    assert one.model_transaction_running is False and one.name == anaplan.app.seed.model_name


def test_model_fields_only_with_model_details(anaplan: AnaplanRunning) -> None:
    token = requests.post(f"{anaplan.auth_url}/token/authenticate", auth=(anaplan.username, anaplan.password),
                          verify=anaplan.ca_bundle, timeout=30).json()["tokenInfo"]["tokenValue"]  # fmt: skip
    http = VerifiedSession(ca_bundle=anaplan.ca_bundle, timeout=30)
    http.headers["Authorization"] = f"AnaplanAuthToken {token}"
    base = f"{anaplan.api_url}/models"
    plain = http.get(base).json()["models"][0]
    assert set(plain) == {"id", "name", "activeState", "currentWorkspaceId", "currentWorkspaceName", "modelUrl",
                          "categoryValues"}  # fmt: skip
    detailed = http.get(base, params={"modelDetails": "true"}).json()["models"][0]
    assert set(detailed) - set(plain) == {"lastSavedSerialNumber", "lastModifiedByUserGuid", "memoryUsage",
                                          "isoCreationDate", "lastModified"}  # fmt: skip
    single = http.get(f"{base}/{anaplan.app.seed.model_id}", params={"modelDetails": "true"}).json()["model"]
    assert single["modelTransactionRunning"] is False


# --- F&O: MainAccounts posting fields ----------------------------------------------------------------------


def test_main_accounts_metadata_has_posting_fields() -> None:
    from d365_anaplan.dynamics.metadata import parse_metadata

    sb = start_dynamics(SandboxConfig(gl_lines=100, months=1))
    try:
        http = VerifiedSession(ca_bundle=sb.ca_bundle, timeout=30)
        http.headers["Authorization"] = f"Bearer {raw_token(sb)}"
        meta = parse_metadata(http.get(f"{sb.app.environment_url}/data/$metadata").text)
        props = meta.entity_sets["MainAccounts"].properties
        for name in ("DebitCreditRequirement", "PostingType", "ValidatePostingType"):
            assert name in props, name
        assert props["PostingType"].endswith("LedgerPostingType")
        rows = http.get(f"{sb.app.environment_url}/data/MainAccounts",
                        params={"$select": "MainAccountId,MainAccountType,DebitCreditRequirement,PostingType"}).json()["value"]  # fmt: skip
        revenue = [r for r in rows if r["MainAccountType"] == "Revenue"]
        assert revenue and all(r["DebitCreditRequirement"] == "Credit" for r in revenue)
        assert {r["PostingType"] for r in rows} >= {"Cust", "Vend", "None"}
    finally:
        sb.stop()

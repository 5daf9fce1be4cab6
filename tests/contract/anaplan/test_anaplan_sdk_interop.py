"""The independent ``anaplan-sdk`` (0.5.22) drives the sandbox: upload, import, export, download.

anaplan-sdk cannot be configured for other hosts; see ``devkit.sandbox.anaplan.sdk_bridge`` for how its
requests reach the sandbox (an httpx2 transport rewriting api/auth.anaplan.com, TLS verified).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal

import pytest

from devkit.sandbox.anaplan.harness import RunningSandbox, start
from devkit.sandbox.anaplan.sdk_bridge import sdk_client

pytestmark = pytest.mark.integration


@pytest.fixture
def sbx() -> Iterator[RunningSandbox]:
    with start(task_start_delay_s=0.01, task_run_delay_s=0.05) as running:
        yield running


def test_sdk_uploads_imports_exports_and_downloads(sbx: RunningSandbox) -> None:
    client = sdk_client(sbx, upload_chunk_size=200_000, upload_parallel=False, status_poll_delay=1)
    imports = {i.name: i for i in client.get_imports()}
    actuals = imports["Load GL Actuals"]
    rows = [
        f"DEMF,601100,002,OU_3567,023,{m} 25,Actual,{i}.10"
        for i, m in enumerate(["Jan", "Feb", "Mar"] * 3000)
    ]
    content = (
        "Entity,Account,BusinessUnit,CostCenter,Department,Period,Version,Amount\n" + "\n".join(rows) + "\n"
    )
    client.upload_file(int(actuals.file_id), content)
    assert sbx.app.counters["chunks_received"] > 1
    task = client.run_action(int(actuals.id))
    assert task.result.successful
    cells = sbx.app.module_cells("GL Actuals")
    assert cells["DEMF", "601100", "002", "OU_3567", "023", "Mar 25", "Actual"]["Amount"] == Decimal(
        "8999.10"
    )

    export = next(e for e in client.get_exports() if e.name == "Export Approved Forecast")
    client.run_action(int(export.id))
    data = client.get_file(int(export.id))
    got = list(csv.DictReader(io.StringIO(data.decode())))
    expected = {k: v for k, v in sbx.app.module_cells("Plan").items() if k[-1] == "Forecast"}
    assert len(got) == len(expected)
    assert all(
        Decimal(r["Amount"]) == expected[r["Entity"], r["Account"], r["Period"], r["Version"]]["Amount"]
        for r in got
    )
    assert client._http._client._transport.rewritten > 5


def test_sdk_relogs_in_after_token_expiry(sbx: RunningSandbox) -> None:
    client = sdk_client(sbx)
    assert client.get_imports()
    sbx.app.expire_tokens()
    assert client.get_exports()
    assert sbx.app.counters["unauthorized"] == 1
    assert sbx.app.counters["tokens_minted"] == 2  # the SDK's own re-login reached the sandbox auth host

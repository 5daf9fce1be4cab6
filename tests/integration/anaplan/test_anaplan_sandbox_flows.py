"""The client against the sandbox over real HTTPS: uploads, imports, exports, dumps, tasks, list members."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from anaplan_it_support import SharedClock, make_client

from d365_anaplan.anaplan.models import Outcome
from d365_anaplan.errors import AnaplanHeaderMismatch, AnaplanNotFound
from devkit.sandbox.anaplan.harness import RunningSandbox

pytestmark = pytest.mark.integration

HEADER = b"Entity,Account,BusinessUnit,CostCenter,Department,Period,Version,Amount\n"


def actuals_file(rows: int, *, bad_every: int = 0) -> tuple[bytes, dict[tuple[str, ...], Decimal], int]:
    out = io.BytesIO()
    out.write(HEADER)
    expected: dict[tuple[str, ...], Decimal] = {}
    bad = 0
    accounts = ["110110", "401100", "501100", "601100", "606100"]
    for i in range(rows):
        account = accounts[i % len(accounts)]
        if bad_every and i % bad_every == 0:
            account = "999999"
            bad += 1
        amount = Decimal(i % 9973) / 100 + Decimal("0.01")
        month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][i % 12]
        cc = ["OU_3566", "OU_3567", "OU_3568", "OU_4803"][(i // 12) % 4]
        dept = ["022", "023", "024", "025"][(i // 48) % 4]
        bu = ["001", "002", "003", "004"][(i // 192) % 4]
        out.write(f"USMF,{account},{bu},{cc},{dept},{month} 25,Actual,{amount}\n".encode())
        if account != "999999":
            expected["USMF", account, bu, cc, dept, f"{month} 25", "Actual"] = amount
    return out.getvalue(), expected, bad


def test_list_import_creates_members_and_list_items_reads_them(
    sandbox: RunningSandbox, clock: SharedClock
) -> None:
    client = make_client(sandbox, clock)
    data = b"Code,Name\n110110,Bank account - USD\n777100,New freight account\n"
    result = client.upload_for_import("Load Accounts", [data])
    assert result.single_shot
    import_id, task_id = client.start_import("Load Accounts")
    check = client.wait_for_task("imports", import_id, task_id)
    assert check.outcome is Outcome.SUCCESS
    assert (check.counts.total, check.counts.created, check.counts.updated) == (2, 1, 1)
    codes = {i.code for i in client.list_items("Accounts")}
    assert "777100" in codes and "110110" in codes
    assert sandbox.app.counters["polls"] >= 1


def test_chunked_actuals_import_with_unknown_members_and_dump(
    sandbox: RunningSandbox, clock: SharedClock
) -> None:
    client = make_client(sandbox, clock)
    data, expected, bad = actuals_file(30_000, bad_every=997)
    assert len(data) > 1_000_000
    upload = client.upload_for_import("Load GL Actuals", io.BytesIO(data), chunk_size_mb=1)
    assert not upload.single_shot and upload.chunks == -(-len(data) // 1_000_000)
    assert sandbox.app.counters["chunks_received"] == upload.chunks
    import_id, task_id = client.start_import("Load GL Actuals")
    check = client.wait_for_task("imports", import_id, task_id)
    assert check.outcome is Outcome.SUCCESS_WITH_WARNINGS
    assert check.failure_dump_available
    assert check.counts.failed == bad and check.counts.success + bad == check.counts.total
    dump = io.BytesIO()
    client.download_dump(import_id, task_id, dump)
    rows = list(csv.reader(io.StringIO(dump.getvalue().decode())))
    assert rows[0][:3] == ["_Status_", "_Line_", "_Error_1_"]
    assert len(rows) - 1 == bad
    assert all("999999" in r[2] and r[0] == "E" for r in rows[1:])
    cells = sandbox.app.module_cells("GL Actuals")
    assert {
        k: v["Amount"] for k, v in cells.items()
    } == expected  # every row parsed, last write wins per cell
    assert len(cells) == check.counts.created


def test_header_mismatch_refused_before_upload(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    with pytest.raises(AnaplanHeaderMismatch, match=r"missing columns \['Department'\]"):
        client.upload_for_import(
            "Load GL Actuals", [b"Entity,Account,BusinessUnit,CostCenter,Period,Version,Amount\n"]
        )
    assert sandbox.app.counters["chunks_received"] == 0 and sandbox.app.counters["single_uploads"] == 0


def test_unknown_action_names_the_choices(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    with pytest.raises(AnaplanNotFound, match=r"no export named 'Export Budget'.*Export Approved Budget"):
        client.start_export("Export Budget")


def test_export_download_matches_seeded_plan(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    sandbox.app.export_chunk_size = 4096  # several chunks
    out = io.BytesIO()
    check = client.run_export("Export Approved Budget", out)
    assert check.outcome is Outcome.SUCCESS
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert list(rows[0]) == ["Entity", "Account", "Period", "Version", "Amount", "Approval"]
    expected = {k: v for k, v in sandbox.app.module_cells("Plan").items() if k[-1] == "Budget"}
    assert len(rows) == len(expected)
    for row in rows:
        cell = expected[(row["Entity"], row["Account"], row["Period"], row["Version"])]
        assert Decimal(row["Amount"]) == cell["Amount"] and row["Approval"] == cell["Approval"]
    assert {r["Approval"] for r in rows} == {"Approved", "Draft"}
    export_id = client.find_export("Export Approved Budget").id
    assert sandbox.app.counters["GET file_chunk_get"] > 1
    assert export_id.startswith("116")


def test_tasks_queue_one_at_a_time(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    sandbox.app.task_run_delay_s = 0.5
    client.upload_for_import("Load Departments", [b"Code,Name\n026,Quality\n"])
    client.upload_for_import("Load Cost Centres", [b"Code,Name\nOU_5000,Logistics\n"])
    first = client.start_import("Load Departments")
    second = client.start_import("Load Cost Centres")
    seen: set[tuple[str, str]] = set()
    for _ in range(200):
        a = client.get_task("imports", *first).task_state
        b = client.get_task("imports", *second).task_state
        seen.add((a, b))
        assert not (a == "IN_PROGRESS" and b == "IN_PROGRESS")
        if a == b == "COMPLETE":
            break
        import time

        time.sleep(0.02)
    assert ("IN_PROGRESS", "NOT_STARTED") in seen
    assert ("COMPLETE", "COMPLETE") in seen


def test_cancel_a_running_task(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    sandbox.app.task_run_delay_s = 5
    client.upload_for_import("Load Departments", [b"Code,Name\n027,Legal\n"])
    import_id, task_id = client.start_import("Load Departments")
    client.cancel_task("imports", import_id, task_id)
    check = client.wait_for_task("imports", import_id, task_id)
    assert check.outcome is Outcome.CANCELLED
    assert "027" not in sandbox.app.list_members("Departments")


def test_process_reports_nested_results(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    client.upload_for_import("Load Accounts", [b"Code,Name\n710100,Interest income\n"])
    client.upload_for_import("Load Cost Centres", [b"Code,Name\nOU_6000,Treasury\n"])
    client.upload_for_import("Load Departments", [b"Code,Name\n030,Treasury\n"])
    client.upload_for_import("Load Business Units", [b"Code,Name\n005,Export\n,blank code\n"])
    process_id, task_id = client.start_process("Load Master Data")
    check = client.wait_for_task("processes", process_id, task_id)
    assert check.outcome is Outcome.SUCCESS_WITH_WARNINGS
    bu_import = client.find_import("Load Business Units").id
    assert check.dump_object_ids == [bu_import]
    out = io.BytesIO()
    client.download_process_dump(process_id, task_id, bu_import, out)
    assert b"Code is blank" in out.getvalue()
    assert "005" in sandbox.app.list_members("Business Units")

"""Run ledger: audit round trips, idempotent writes, redrive, trace, GSI listing, pagination."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from ledger_support import FakeClock

from d365_anaplan.errors import RecordNotFound
from d365_anaplan.ledger import RunLedger


@pytest.fixture
def ledger(dynamodb: Any, table: str, clock: FakeClock) -> RunLedger:
    return RunLedger(table, client=dynamodb, clock=clock)


def tick(clock: FakeClock, seconds: float = 1) -> None:
    clock.advance(seconds)


def raw_item(dynamodb: Any, table: str, pk: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
    return item


# --- runs -------------------------------------------------------------------------------------------------


def test_start_run_is_idempotent(ledger: RunLedger, clock: FakeClock) -> None:
    first = ledger.start_run("exec-1", "acme", "actuals", "schedule", {"period": "2025-03"})
    tick(clock, 30)
    again = ledger.start_run("exec-1", "acme", "actuals", "manual", {"period": "2099-01"})
    assert again == first
    assert first.status == "RUNNING"
    assert first.redriven == 0
    assert first.detail == {"period": "2025-03"}
    assert ledger.get_run("exec-1") == first
    assert [e.detail["event"] for e in ledger.run_items("exec-1")] == ["started"]


def test_run_item_keys_and_timestamps(ledger: RunLedger, dynamodb: Any, table: str) -> None:
    ledger.start_run("exec-1", "acme", "actuals", "schedule", {})
    item = raw_item(dynamodb, table, "RUN#exec-1", "RUN")
    assert item["gsi1pk"] == {"S": "CONN#acme"}
    assert item["gsi1sk"] == {"S": "2025-04-03T06:00:00.000000Z#exec-1"}
    assert item["started_at"] == {"S": "2025-04-03T06:00:00.000000Z"}
    assert item["redriven"] == {"N": "0"}


def test_redrive_of_failed_run(ledger: RunLedger, clock: FakeClock) -> None:
    ledger.start_run("exec-1", "acme", "actuals", "schedule", {})
    tick(clock)
    failed = ledger.finish_run("exec-1", "FAILED", cause={"Error": "AnaplanModelBusy", "Cause": "busy"})
    assert failed.status == "FAILED"
    assert failed.finished_at == clock()
    assert failed.cause == {"Error": "AnaplanModelBusy", "Cause": "busy"}

    tick(clock)
    redriven = ledger.start_run("exec-1", "acme", "actuals", "schedule", {})
    assert redriven.status == "RUNNING"
    assert redriven.redriven == 1
    assert redriven.finished_at is None
    assert redriven.cause is None
    assert redriven.started_at == failed.started_at
    tick(clock)
    assert ledger.start_run("exec-1", "acme", "actuals", "schedule", {}).redriven == 1  # repeated call

    tick(clock)
    ledger.finish_run("exec-1", "FAILED", cause={"Error": "X"})
    tick(clock)
    assert ledger.start_run("exec-1", "acme", "actuals", "schedule", {}).redriven == 2
    tick(clock)
    done = ledger.finish_run("exec-1", "SUCCEEDED", summary={"rows": 12, "amount": Decimal("10.01")})
    assert done.summary == {"rows": 12, "amount": Decimal("10.01")}
    assert ledger.start_run("exec-1", "acme", "actuals", "schedule", {}) == done  # success is final

    events = ledger.run_items("exec-1")
    assert [(e.status, e.detail["event"]) for e in events] == [
        ("RUNNING", "started"),
        ("FAILED", "finished"),
        ("RUNNING", "redriven"),
        ("FAILED", "finished"),
        ("RUNNING", "redriven"),
        ("SUCCEEDED", "finished"),
    ]
    assert events[2].detail["previous_cause"] == {"Error": "AnaplanModelBusy", "Cause": "busy"}


def test_finish_run_repeated_is_noop(ledger: RunLedger, clock: FakeClock) -> None:
    ledger.start_run("exec-1", "acme", "actuals", "schedule", {})
    tick(clock)
    first = ledger.finish_run("exec-1", "SKIPPED", cause={"Error": "PeriodNotDue"})
    tick(clock)
    assert ledger.finish_run("exec-1", "SKIPPED", cause={"Error": "PeriodNotDue"}) == first
    assert [e.status for e in ledger.run_items("exec-1")] == ["RUNNING", "SKIPPED"]


def test_missing_run(ledger: RunLedger) -> None:
    with pytest.raises(RecordNotFound, match="no run 'nope'"):
        ledger.get_run("nope")
    with pytest.raises(RecordNotFound, match="no run 'nope'"):
        ledger.finish_run("nope", "SUCCEEDED")
    with pytest.raises(RecordNotFound):
        ledger.run_items("nope")
    with pytest.raises(ValueError, match="status must be one of"):
        ledger.finish_run("nope", "DONE")  # type: ignore[arg-type]


def test_list_runs_by_connection_and_time(ledger: RunLedger, clock: FakeClock) -> None:
    start = clock()
    for i in range(5):
        ledger.start_run(f"acme-{i}", "acme", "actuals", "schedule", {})
        ledger.start_run(f"other-{i}", "other", "actuals", "schedule", {})
        tick(clock, 3600)
    assert [r.run_id for r in ledger.list_runs("acme")] == [f"acme-{i}" for i in range(5)]
    window = ledger.list_runs("acme", since=start + timedelta(hours=1), until=start + timedelta(hours=3))
    assert [r.run_id for r in window] == ["acme-1", "acme-2"]  # since inclusive, until exclusive
    assert [r.run_id for r in ledger.list_runs("acme", since=start + timedelta(hours=3))] == [
        "acme-3",
        "acme-4",
    ]
    assert [r.run_id for r in ledger.list_runs("acme", until=start + timedelta(hours=1))] == ["acme-0"]
    newest = ledger.list_runs("acme", newest_first=True, limit=2)
    assert [r.run_id for r in newest] == ["acme-4", "acme-3"]
    assert ledger.list_runs("nobody") == []


# --- records ----------------------------------------------------------------------------------------------


def test_audit_round_trip(ledger: RunLedger, dynamodb: Any, table: str, clock: FakeClock) -> None:
    ledger.start_run("r", "acme", "plans", "manual", {})
    tick(clock)
    ledger.record_step("r", "Extract", "RUNNING")
    tick(clock)
    ledger.record_step("r", "Extract", "FAILED", {"error": "DynamicsThrottled"})
    tick(clock)
    ledger.record_step("r", "Extract", "SUCCEEDED", {"rows": 3}, attempt=2)
    ledger.record_file("r", "Extract", "bucket", "runs/acme/r/extract/gl.csv", 123456789012, 3, "ab" * 32)
    ledger.record_task("r", "export", "116000000001", "TASK-1", "IN_PROGRESS", None, None)
    tick(clock)
    ledger.record_task(
        "r",
        "export",
        "116000000001",
        "TASK-1",
        "COMPLETE",
        {"successful": True, "rows_ok": 10, "rows_failed": 0},
        "runs/acme/r/dump.csv",
    )
    ledger.record_journal("r", "J-USMF-1", "CREATED", "00042", {"lines": 2})
    ledger.record_journal_line(
        "r",
        "J-USMF-1",
        "USMF|6100|2025-04",
        "WRITTEN",
        {"JournalBatchNumber": "00042", "LineNumber": Decimal(1)},
        None,
        {"amount": Decimal("1234567.89"), "account": "6100"},
    )

    steps = ledger.steps("r")
    assert [(s.step, s.attempt, s.status) for s in steps] == [
        ("Extract", 1, "FAILED"),
        ("Extract", 2, "SUCCEEDED"),
    ]
    assert steps[0].detail == {"error": "DynamicsThrottled"}
    assert steps[1].detail == {"rows": 3}

    (f,) = ledger.files("r")
    assert (f.bucket, f.key, f.bytes, f.rows, f.sha256) == (
        "bucket",
        "runs/acme/r/extract/gl.csv",
        123456789012,
        3,
        "ab" * 32,
    )
    assert isinstance(f.bytes, int)

    (t,) = ledger.tasks("r")
    assert (t.action_kind, t.action_id, t.task_id, t.state, t.dump_key) == (
        "export",
        "116000000001",
        "TASK-1",
        "COMPLETE",
        "runs/acme/r/dump.csv",
    )
    assert t.result == {"successful": True, "rows_ok": 10, "rows_failed": 0}

    (j,) = ledger.journals("r")
    assert (j.journal_key, j.status, j.fo_journal_batch, j.detail) == (
        "J-USMF-1",
        "CREATED",
        "00042",
        {"lines": 2},
    )

    (line,) = ledger.journal_lines("r")
    assert line.payload == {"amount": Decimal("1234567.89"), "account": "6100"}
    assert line.fo_ids == {"JournalBatchNumber": "00042", "LineNumber": 1}

    # numbers are DynamoDB Numbers with the exact decimal text
    item = raw_item(dynamodb, table, "RUN#r", "LINE#USMF|6100|2025-04")
    assert item["payload"]["M"]["amount"] == {"N": "1234567.89"}
    assert raw_item(dynamodb, table, "RUN#r", "FILE#runs/acme/r/extract/gl.csv")["bytes"] == {
        "N": "123456789012"
    }
    assert raw_item(dynamodb, table, "RUN#r", "STEP#Extract#0002")["attempt"] == {"N": "2"}

    # the timeline: every event, oldest first
    kinds = [(e.kind, e.key, e.status) for e in ledger.run_items("r")]
    assert kinds[0] == ("RUN", "r", "RUNNING")
    assert ("TASK", "TASK-1", "IN_PROGRESS") in kinds
    assert kinds.index(("TASK", "TASK-1", "IN_PROGRESS")) < kinds.index(("TASK", "TASK-1", "COMPLETE"))
    assert len(kinds) == 9


def test_floats_are_refused(ledger: RunLedger) -> None:
    ledger.start_run("r", "acme", "plans", "manual", {})
    with pytest.raises(TypeError, match=r"payload\.amount: float"):
        ledger.record_journal_line("r", "J", "L", "FAILED", None, "x", {"amount": 0.1})
    with pytest.raises(TypeError, match="float"):
        ledger.start_run("r2", "acme", "plans", "manual", {"ratio": 1.5})
    with pytest.raises(ValueError, match="naive datetime"):
        RunLedger("t", client=object(), clock=lambda: __import__("datetime").datetime(2025, 1, 1)).start_run(
            "r3", "acme", "plans", "manual", {}
        )


def test_repeated_calls_do_not_duplicate_events(ledger: RunLedger, clock: FakeClock) -> None:
    ledger.start_run("r", "acme", "plans", "manual", {})
    for status in ("WRITING", "WRITING", "FAILED", "FAILED", "WRITING"):
        tick(clock)
        ledger.record_journal_line(
            "r", "J", "L1", status, None, "boom" if status == "FAILED" else None, {"a": 1}
        )
    assert [e.status for e in ledger.trace("r", "L1")] == ["WRITING", "FAILED", "WRITING"]
    (line,) = ledger.journal_lines("r")
    assert line.error is None  # the latest state has no error
    assert line.payload == {"a": 1}
    for _ in range(3):  # a retried handler recording the same file and task again
        tick(clock)
        ledger.record_file("r", "Extract", "b", "runs/acme/r/x.csv", 10, 2, "ff" * 32)
        ledger.record_task("r", "import", "112", "T-1", "COMPLETE", {"rows": 2}, None)
    assert len(ledger.files("r")) == 1
    assert len(ledger.tasks("r")) == 1
    assert len(ledger.trace("r", "runs/acme/r/x.csv")) == 1
    assert len(ledger.trace("r", "T-1")) == 1


# --- trace ------------------------------------------------------------------------------------------------


def _journal_story(ledger: RunLedger, clock: FakeClock) -> None:
    ledger.start_run("run-7", "acme", "plans", "schedule", {})
    tick(clock)
    ledger.record_journal("run-7", "J1", "CREATED", "00077")
    tick(clock)
    ledger.record_journal_line(
        "run-7", "J1", "L-ok", "WRITTEN", {"LineNumber": 1}, None, {"amount": Decimal("5.00")}
    )
    tick(clock)
    ledger.record_journal_line(
        "run-7", "J1", "L-bad", "FAILED", None, "Account 9999 does not exist", {"amount": Decimal("-5.00")}
    )
    tick(clock)
    ledger.record_journal("run-7", "J1", "PARTIAL")
    tick(clock)
    ledger.record_journal("run-7", "J2", "CREATED", "00078")


def test_trace_answers_what_happened_to_a_line(ledger: RunLedger, clock: FakeClock) -> None:
    _journal_story(ledger, clock)
    tick(clock)
    ledger.record_journal_line("run-7", "J2", "L-bad", "WRITTEN", {"LineNumber": 1}, None, None)  # replayed

    trace = ledger.trace("run-7", "L-bad")
    assert [(e.kind, e.key, e.status) for e in trace] == [
        ("JOURNAL", "J1", "CREATED"),
        ("LINE", "L-bad", "FAILED"),
        ("JOURNAL", "J1", "PARTIAL"),
        ("JOURNAL", "J2", "CREATED"),
        ("LINE", "L-bad", "WRITTEN"),
    ]
    assert trace[1].detail["error"] == "Account 9999 does not exist"
    assert trace[0].detail["fo_journal_batch"] == "00077"
    assert trace[-1].detail["fo_ids"] == {"LineNumber": 1}
    assert all(e.run_id == "run-7" for e in trace)
    assert [e.at for e in trace] == sorted(e.at for e in trace)


def test_trace_files_tasks_steps_and_misses(ledger: RunLedger, clock: FakeClock) -> None:
    ledger.start_run("r", "acme", "actuals", "schedule", {})
    ledger.record_file("r", "Transform", "b", "runs/acme/r/transform/actuals.csv", 10, 1, "00" * 32)
    ledger.record_task(
        "r", "import", "112000000001", "T-9", "COMPLETE", {"rows_failed": 2}, "runs/acme/r/dump-T-9.csv"
    )
    ledger.record_step("r", "Import", "SUCCEEDED")
    ledger.record_step("r", "ImportLists", "SUCCEEDED")  # must not match "Import"

    (file_event,) = ledger.trace("r", "runs/acme/r/transform/actuals.csv")
    assert file_event.kind == "FILE"
    assert file_event.detail["sha256"] == "00" * 32
    (task_event,) = ledger.trace("r", "T-9")
    assert (task_event.kind, task_event.detail["dump_key"]) == ("TASK", "runs/acme/r/dump-T-9.csv")
    assert [(e.kind, e.key) for e in ledger.trace("r", "Import")] == [("STEP", "Import")]

    with pytest.raises(RecordNotFound, match="run 'r' has no record 'L-404'"):
        ledger.trace("r", "L-404")
    with pytest.raises(RecordNotFound, match="no run 'r-404'"):
        ledger.trace("r-404", "L-404")


def test_failed_journal_lines_for_replay(ledger: RunLedger, clock: FakeClock) -> None:
    _journal_story(ledger, clock)
    (failed,) = ledger.failed_journal_lines("run-7")
    assert (failed.line_key, failed.journal_key, failed.error) == (
        "L-bad",
        "J1",
        "Account 9999 does not exist",
    )
    assert failed.payload == {"amount": Decimal("-5.00")}
    tick(clock)
    ledger.record_journal_line("run-7", "J1", "L-bad", "WRITTEN", {"LineNumber": 2}, None, None)
    assert ledger.failed_journal_lines("run-7") == []
    assert {line.line_key for line in ledger.journal_lines("run-7", journal_key="J1")} == {"L-ok", "L-bad"}


# --- pagination and retention -------------------------------------------------------------------------------


class SmallPages:
    """A DynamoDB client whose queries return at most two items per page (forces LastEvaluatedKey)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.pages = 0

    def query(self, **kwargs: Any) -> Any:
        self.pages += 1
        return self._client.query(**{**kwargs, "Limit": 2})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_reads_follow_pagination(dynamodb: Any, table: str, clock: FakeClock) -> None:
    client = SmallPages(dynamodb)
    ledger = RunLedger(table, client=client, clock=clock)
    ledger.start_run("r", "acme", "plans", "manual", {})
    for i in range(7):
        ledger.record_journal_line("r", "J", f"L{i}", "FAILED", None, "x", {"i": i})
    assert len(ledger.failed_journal_lines("r")) == 7
    assert len(ledger.run_items("r")) == 8
    assert client.pages >= 8
    for i in range(5):
        ledger.start_run(f"r{i}", "acme", "plans", "manual", {})
    assert len(ledger.list_runs("acme")) == 6


def test_retention_sets_ttl(dynamodb: Any, table: str, clock: FakeClock) -> None:
    ledger = RunLedger(table, client=dynamodb, clock=clock, retention_days=400)
    ledger.start_run("r", "acme", "plans", "manual", {})
    ledger.record_step("r", "S", "RUNNING")
    expected = str(int(clock().timestamp()) + 400 * 86400)
    assert raw_item(dynamodb, table, "RUN#r", "RUN")["ttl"] == {"N": expected}
    assert raw_item(dynamodb, table, "RUN#r", "STEP#S#0001")["ttl"] == {"N": expected}
    plain = RunLedger(table, client=dynamodb, clock=clock)
    plain.start_run("r2", "acme", "plans", "manual", {})
    assert "ttl" not in raw_item(dynamodb, table, "RUN#r2", "RUN")


def test_no_client_is_created_until_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("client created")

    monkeypatch.setattr(boto3, "client", boom)
    RunLedger("LedgerTable")  # constructing must not create a client
    with pytest.raises(AssertionError, match="client created"):
        RunLedger("LedgerTable").get_run("x")


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from d365_anaplan.errors import ConfigError
    from d365_anaplan.ledger import ModelLease, Watermarks
    from d365_anaplan.ledger.tokens import DynamoDBTokenCache

    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    with pytest.raises(ConfigError, match="LEDGER_TABLE"):
        RunLedger.from_env()
    monkeypatch.setenv("LEDGER_TABLE", "stack-LedgerTable-1")
    assert RunLedger.from_env(retention_days=30).retention_days == 30
    for cls in (RunLedger, ModelLease, Watermarks, DynamoDBTokenCache):
        assert cls.from_env().table_name == "stack-LedgerTable-1"


def test_redrive_inferred_when_start_is_not_rerun(ledger: RunLedger, clock: FakeClock) -> None:
    """A redrive resumes at the failed state, so start_run may not run again; finish_run notices."""
    ledger.start_run("exec-9", "acme", "plans", "schedule", {})
    tick(clock)
    ledger.finish_run("exec-9", "FAILED", cause={"Error": "DynamicsUnavailable"})
    tick(clock)
    repeat = ledger.finish_run("exec-9", "FAILED", cause={"Error": "DynamicsUnavailable"})  # Lambda retried
    assert repeat.redriven == 0
    tick(clock)
    again = ledger.finish_run(
        "exec-9", "FAILED", cause={"Error": "AnaplanTaskFailed"}
    )  # redriven, failed again
    assert (again.redriven, again.cause) == (1, {"Error": "AnaplanTaskFailed"})
    tick(clock)
    done = ledger.finish_run("exec-9", "SUCCEEDED", summary={"journals": 2})  # redriven, succeeded
    assert (done.status, done.redriven, done.cause, done.summary) == ("SUCCEEDED", 2, None, {"journals": 2})
    assert ledger.finish_run("exec-9", "SUCCEEDED", summary={"journals": 2}) == done
    assert [(e.status, e.detail["event"]) for e in ledger.run_items("exec-9")] == [
        ("RUNNING", "started"),
        ("FAILED", "finished"),
        ("RUNNING", "redriven"),
        ("FAILED", "finished"),
        ("RUNNING", "redriven"),
        ("SUCCEEDED", "finished"),
    ]

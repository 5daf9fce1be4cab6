"""Reading from the sandbox over HTTPS: discovery, GL routes, paging, resume, master data, throttling, faults."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.dynamics.client import DynamicsConnection
from d365_anaplan.dynamics.master_data import GLRoute
from d365_anaplan.errors import DynamicsRouteUnavailable, DynamicsUnavailable
from devkit.sandbox.dynamics import seed
from devkit.sandbox.dynamics.cli import RunningSandbox

pytestmark = pytest.mark.integration


def expected_lines(sb: RunningSandbox, companies: set[str], start: date, end: date) -> list[seed.GLLineSeed]:
    gl = sb.app.gl
    out = []
    for v in gl.iter_vouchers():
        head = gl.voucher(v.index)
        if head.company in companies and start <= head.accounting_date < end:
            out.extend(gl.voucher_lines(v.index))
    return out


def test_bi_route_reads_every_line_of_the_period(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox, dynamics={"page_size": 500})
    lines = list(conn.reader.gl_lines(date(2025, 2, 1), date(2025, 3, 1)))
    want = expected_lines(sandbox, {"USMF", "DEMF"}, date(2025, 2, 1), date(2025, 3, 1))
    assert len(lines) == len(want) > 0
    assert sorted(int(g.source_id) for g in lines) == sorted(w.recid for w in want)
    by_voucher: dict[str, Decimal] = defaultdict(Decimal)
    for g in lines:
        assert date(2025, 2, 1) <= g.accounting_date < date(2025, 3, 1)
        assert isinstance(g.amount, Decimal) and g.amount == g.amount.quantize(Decimal("0.01"))
        by_voucher[g.voucher] += g.amount
    assert set(by_voucher.values()) == {Decimal("0.00")}  # balanced vouchers
    sample = next(g for g in lines if g.dimensions.get("CostCenter"))
    assert set(sample.dimensions) <= {"BusinessUnit", "CostCenter", "Department"}
    assert (
        sandbox.app.counters["GET /data/GeneralJournalAccountEntryBiEntities"] >= 2
    )  # paged with 500-row pages


def test_company_filter_and_published_route(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    sb = make_sandbox(publish_gl_entity=True)
    conn = connect_to(sb, companies=["DEMF"])
    assert conn.reader.discover().route is GLRoute.PUBLISHED
    lines = list(conn.reader.gl_lines(date(2025, 1, 1), date(2025, 4, 1)))
    want = expected_lines(sb, {"DEMF"}, date(2025, 1, 1), date(2025, 4, 1))
    assert {g.company for g in lines} == {"DEMF"} and len(lines) == len(want)
    assert sum(g.amount for g in lines) == Decimal("0.00")
    assert sb.app.counters["GET /data/GeneralJournalEntryBiEntities"] == 0


def test_no_gl_route_is_one_clear_error(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    sb = make_sandbox(bi_entities=False)
    with pytest.raises(DynamicsRouteUnavailable, match="must publish"):
        connect_to(sb).reader.gl_lines(date(2025, 1, 1), date(2025, 2, 1))


def test_long_read_stops_and_resumes_from_continuation(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    remaining = [900.0]
    conn = connect_to(sandbox, dynamics={"page_size": 200}, remaining_time=lambda: remaining[0])
    read = conn.reader.gl_lines(date(2025, 1, 1), date(2025, 4, 1))
    got = []
    for g in read:
        got.append(g)
        if len(got) == 300:
            remaining[0] = 5.0  # the invocation is about to end
    assert read.stopped_early and read.continuation
    remaining[0] = 900.0
    conn2 = connect_to(sandbox, dynamics={"page_size": 200}, remaining_time=lambda: remaining[0])
    rest = list(conn2.reader.gl_lines(date(2025, 1, 1), date(2025, 4, 1), continuation=read.continuation))
    ids = [g.source_id for g in got + rest]
    assert len(ids) == len(set(ids)) == sandbox.app.gl.line_count


def test_master_data_and_used_only_dimension_values(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    reader = connect_to(sandbox).reader
    assert [a.account for a in reader.main_accounts()] == seed.main_account_codes()
    values = reader.dimension_values("CostCenter")
    got = [v.value for v in values.values]
    assert got == sorted(v for v, _ in seed.used_dimension_values("CostCenter"))
    assert "OU_4801" not in got and "OU_4801" in [v for v, _ in seed.dimension_values("CostCenter")]
    assert not values.complete and "unused" in values.caveat
    assert {j.name for j in reader.journal_names()} >= {"Budget", "GenJrn"}
    assert [a.name for a in reader.dimension_attributes()] == [
        "MainAccount",
        "BusinessUnit",
        "CostCenter",
        "Department",
    ]
    fmt = reader.ledger_format()
    assert (
        fmt.segments == ("MainAccount", "BusinessUnit", "CostCenter", "Department") and fmt.delimiter == "-"
    )


def test_resource_throttling_is_honoured(
    make_sandbox: Callable[..., RunningSandbox],
    connect_to: Callable[..., DynamicsConnection],
    sleeps: list[float],
) -> None:
    now = [1000.0]
    sb = make_sandbox(load_budget=3, load_window=10.0)
    sb.app.clock = lambda: now[0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    conn = connect_to(sb, dynamics={"page_size": 50}, sleep=sleep)
    accounts = list(conn.reader.main_accounts())
    assert len(accounts) == len(seed.MAIN_ACCOUNTS)
    assert sb.app.counters["429"] >= 1
    assert sleeps and all(s >= 1 for s in sleeps)  # waited Retry-After, in seconds


def test_transient_faults_are_retried(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection], sleeps: list[float]
) -> None:
    conn = connect_to(sandbox)
    sandbox.app.inject("status", status=503, times=2, path_contains="/data/MainAccounts")
    sandbox.app.inject("status", status=429, retry_after="2", times=1, path_contains="/data/MainAccounts")
    sandbox.app.inject("drop", times=1, path_contains="/data/MainAccounts")
    assert len(list(conn.reader.main_accounts())) == len(seed.MAIN_ACCOUNTS)
    assert 2.0 in sleeps and len(sleeps) == 4


def test_persistent_outage_becomes_dynamics_unavailable(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox)
    sandbox.app.inject("status", status=504, times=10, path_contains="/data/LegalEntities")
    with pytest.raises(DynamicsUnavailable, match="HTTP 504"):
        conn.reader.legal_entities()


def test_slow_page_times_out_and_is_retried(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection], sleeps: list[float]
) -> None:
    conn = connect_to(sandbox)
    conn.reader.legal_entities()  # token and discovery out of the way
    conn.session.default_timeout = 0.3
    sandbox.app.inject("slow", delay=0.6, times=1, path_contains="/data/LegalEntities")
    assert len(conn.reader.legal_entities()) == 2
    assert len(sleeps) == 1

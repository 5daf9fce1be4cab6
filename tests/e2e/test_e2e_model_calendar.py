"""Issue 12, item 4 (period labels against the model's time): a model whose fiscal year starts in July
(``modelCalendar``: FY27 = 2026-07-01..2027-06-30) with a connection configured for a January year is refused by
``check`` and by the run's metadata pre-check with the same message and remedy, before any GL is read; set to
July, ``check`` passes. Fiscal labels (``FY{fyy} {Mon}``) against a model naming its years by their first month
are refused the same way; a user who may not read the calendar (403) is not failed for it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from e2e_support import assert_failed_cleanly, manual

from devkit.commands.check import FAIL, PASS, Report, check_anaplan
from devkit.engine import LocalEngine
from devkit.sandbox.anaplan.calendar import ModelCalendar
from devkit.stack import Stack

pytestmark = pytest.mark.integration

ROW = "model calendar (fiscal year)"


@pytest.fixture
def july(stack: Stack) -> Iterator[ModelCalendar]:
    app = stack.anaplan.app
    saved = app.calendar
    app.calendar = ModelCalendar(fiscal_start_month=7, today=date(2026, 8, 14))
    yield app.calendar
    app.calendar = saved


def _check(cfg: dict[str, Any]) -> tuple[str, str, str]:
    from d365_anaplan.config import parse_connection

    report = Report()
    check_anaplan(parse_connection(copy.deepcopy(cfg)), report)
    (row,) = [(ch.status, ch.detail, ch.remedy) for ch in report.checks if ch.name == ROW]
    return row


def test_the_demo_calendar_passes(stack: Stack) -> None:
    status, detail, _ = _check(stack.connection())
    assert status == PASS and "starts in month 1" in detail, detail


def test_a_july_model_is_refused_by_check_and_run_alike_before_any_gl_is_read(
    engine: LocalEngine, stack: Stack, july: ModelCalendar
) -> None:
    status, detail, remedy = _check(stack.connection())
    assert status == FAIL, (status, detail)
    assert detail.startswith("the model's fiscal year FY27 runs 2026-07-01..2027-06-30 (starts in month 7), but "
                             "close_calendar.fiscal_year_start_month is 1"), detail  # fmt: skip
    result = engine.run("ActualsFlow", manual(), timeout=180)
    assert_failed_cleanly(engine, stack, result, "BadInputData", detail, remedy)
    assert "ExtractGL" not in result.states_entered()

    cfg = copy.deepcopy(stack.connection())
    cfg.setdefault("close_calendar", {})["fiscal_year_start_month"] = 7
    assert _check(cfg)[0] == PASS


def test_fiscal_labels_must_name_the_year_as_the_model_does(stack: Stack, july: ModelCalendar) -> None:
    cfg = copy.deepcopy(stack.connection())
    cfg.setdefault("close_calendar", {})["fiscal_year_start_month"] = 7
    cfg["mapping"]["actuals"]["period_format"] = "FY{fyy} {Mon}"
    assert (
        _check(cfg)[0] == PASS
    )  # FY27 = Jul 26..Jun 27: named by the year it ends in, as the connector does
    july.label_by = "start"  # the model calls the same year FY26
    status, detail, _ = _check(cfg)
    assert status == FAIL and "'FY{fyy} {Mon}' would label it FY27" in detail, detail


def test_a_user_who_may_not_read_the_calendar_is_not_failed_for_it(stack: Stack, july: ModelCalendar) -> None:
    july.administrators = {"admin@example.com"}
    status, detail, _ = _check(stack.connection())
    assert status == PASS and detail.startswith("not verified") and "Workspace Administrator" in detail, (
        detail
    )

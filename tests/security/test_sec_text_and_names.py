"""Formula and HTML text in data, and path-like names: refused or neutralised the way ``textsafe`` and the
key builders intend."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sec_support import good

from d365_anaplan.config import parse_connection
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.textsafe import check_code, neutralise_text
from d365_anaplan.staging import run_key
from devkit.local_state import _safe_key
from devkit.report import Reconciliation, ReportData, render

FORMULAS = ["=cmd|' /C calc'!A0", "+1+cmd|'/C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1"]


@pytest.mark.parametrize("code", FORMULAS)
def test_formula_codes_are_refused_naming_record_and_field(code: str) -> None:
    with pytest.raises(BadInputData) as info:
        check_code(code, where="GL line USMF/000123", field="MainAccount")
    assert str(info.value).startswith("GL line USMF/000123: field 'MainAccount'")


@pytest.mark.parametrize("text", [*FORMULAS, '  =HYPERLINK("https://evil.example")', "ok\n=1"])
def test_formula_descriptions_are_neutralised(text: str) -> None:
    safe = neutralise_text(text)
    assert safe.lstrip()[:1] not in "=+-@\t\r" or safe.startswith("'")
    assert "\n" not in safe and "\r" not in safe


def test_html_in_names_is_escaped_in_the_report() -> None:
    key = ("USMF", "<script>alert(1)</script>", date(2025, 1, 1))
    recon = Reconciliation(
        "<img src=x onerror=alert(2)>", "F&O", "Anaplan", {key: Decimal("1.00")}, {key: Decimal("2.00")}
    )
    data = ReportData(
        title="<b>t</b>",
        subtitle="s",
        summary=[("<i>k</i>", "v")],
        flows=[{"name": "<script>x</script>", "status": "ok", "rows": [("<a>", "1")]}],
        charts=[],
        reconciliations=[recon],
    )
    page = render(data)
    assert "<script>" not in page and "<img" not in page and "<i>k" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", "C:\\x"])
def test_path_like_names_never_leave_their_staging_prefix(name: str) -> None:
    try:
        key = run_key("contoso", "run-1", "extract", name)
    except ValueError:
        return  # refused outright
    assert key.startswith("runs/contoso/run-1/extract/")
    assert key.count("/") == 4
    assert ".." not in key.split("/")


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", ""])
def test_local_state_never_writes_a_key_outside_its_folder(key: str) -> None:
    assert not _safe_key(key)


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "EVIL", "a\\b"])
def test_connection_names_cannot_be_paths(name: str) -> None:
    data = good()
    data["name"] = name
    with pytest.raises(ConfigError) as info:
        parse_connection(data)
    assert info.value.problems[0].startswith("name: ")

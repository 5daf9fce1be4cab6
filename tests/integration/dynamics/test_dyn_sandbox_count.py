"""The $count that chooses the GL transport (``dynamics.gl_transport: auto``) against the sandbox: on the
published route the window's lines exactly; on the BI route (lines carry no date) the lines of the window's
header key range, never fewer than the window holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from d365_anaplan.dynamics.client import DynamicsConnection
from devkit.sandbox.dynamics.cli import RunningSandbox

START, END = date(2025, 2, 1), date(2025, 3, 1)


def test_published_route_counts_the_window_exactly(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(make_sandbox(publish_gl_entity=True), companies=["USMF"])
    lines = sum(1 for _ in conn.reader.gl_lines(START, END))
    assert lines and conn.reader.count_gl_lines(START, END) == lines


def test_bi_route_counts_the_header_key_range(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(make_sandbox(), dynamics={"gl_route": "bi"})
    lines = sum(1 for _ in conn.reader.gl_lines(START, END))
    counted = conn.reader.count_gl_lines(START, END)
    assert lines and lines <= counted <= lines * 1.1, (lines, counted)
    assert conn.reader.count_gl_lines(START, START) == 0

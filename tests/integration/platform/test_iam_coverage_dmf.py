"""The package routes' AWS calls are allowed by template.yaml too: ExtractGL reads back the package it staged
(ranged GETs under ``runs/*/glpackage/``), WriteJournal's package import reads only what it read before.

Same recorder and evaluator as test_iam_coverage.py, on runs with ``gl_transport: package`` and every budget
register entry through a package import."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_iam_coverage import Recorder, disallowed_calls, recording

from devkit.engine import LocalEngine
from devkit.sandbox.dynamics.dmf import DEFAULT_EXPORT_PROJECT, DEFAULT_IMPORT_PROJECT
from devkit.stack import Stack, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[LocalEngine, Recorder, Stack]]:
    with running(gl_lines=120, months=3) as stack, LocalEngine(wait_scale=0.0) as engine:
        cfg = stack.connection()
        blob = stack.dynamics.app.blob_store
        cfg["dynamics"]["gl_transport"] = "package"
        cfg["dynamics"]["journal"] = {**cfg["dynamics"]["journal"], "package_threshold_lines": 1}
        cfg["dynamics"]["package"] = {"export_project": DEFAULT_EXPORT_PROJECT, "import_project": DEFAULT_IMPORT_PROJECT,
                                      "blob_host": blob.base_url, "poll_seconds": 1}  # fmt: skip
        cfg["security"] = {"allowed_hosts": [*cfg["security"]["allowed_hosts"], blob.authority]}
        engine.install_connection(cfg)
        with recording(engine) as rec:
            manual = {
                "connection": "demo",
                "trigger": "manual",
                "periods": {"from": "2025-01", "to": "2025-02"},
            }
            for flow in ("ActualsFlow", "PlansFlow"):
                result = engine.run(flow, manual, timeout=180)
                assert result.status == "SUCCEEDED", (flow, result.error, result.cause)
        assert stack.dynamics.app.packages.counters["ExportToPackage"], "the GL came by package"
        assert stack.dynamics.app.packages.counters["ImportFromPackage"], "the plans went by package"
        yield engine, rec, stack


def test_every_call_of_the_package_routes_is_allowed_by_the_template(
    recorded: tuple[LocalEngine, Recorder, Stack],
) -> None:
    engine, rec, _ = recorded
    problems = disallowed_calls(engine, rec)
    assert not problems, "\n".join(sorted(problems))
    extract = [op for s, op, _ in rec.calls.get("ExtractGLFunction", []) if s == "s3"]
    assert "GetObject" in extract or "HeadObject" in extract, "the staged package was read back"

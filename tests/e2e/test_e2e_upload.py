"""A connection dropped in the middle of a chunked upload of the actuals file.

The GL is large enough that the actuals file exceeds the client's 1 MB single-shot limit
(``d365_anaplan.anaplan.upload.SINGLE_SHOT_LIMIT``), so it travels as gzip chunks of ``chunk_size_mb`` (1 MB
here, the minimum) and the drop really lands mid-file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import assert_actuals_match, clear_actuals, ledger, manual

from devkit.engine import LocalEngine
from devkit.stack import Stack, running

pytestmark = pytest.mark.integration

PERIODS = ("2025-01",)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=40_000, months=1) as st:
        yield st


def test_dropped_connection_mid_chunked_upload(stack: Stack) -> None:
    from d365_anaplan.anaplan.upload import SINGLE_SHOT_LIMIT

    clear_actuals(stack)
    app = stack.anaplan.app
    app.faults.drop("/chunks/1", method="PUT")
    with LocalEngine(wait_scale=0.0) as engine:
        cfg = stack.connection()
        cfg["anaplan"] = {**cfg["anaplan"], "chunk_size_mb": 1}
        engine.install_connection(cfg)
        result = engine.run("ActualsFlow", manual(PERIODS[0], PERIODS[-1]), timeout=300)
        assert result.status == "SUCCEEDED", (result.error, result.task_failures())
        assert app.counters["fault drop"] == 1, "the drop was served"
        (staged,) = [f for f in ledger(engine).files(result.name) if f.step == "PrepareActuals"]
        assert staged.bytes > SINGLE_SHOT_LIMIT, "the file must need a chunked upload"
        (upload,) = [s for s in ledger(engine).steps(result.name) if s.step == "UploadActuals"]
        assert int(upload.detail["chunks"]) >= 2
    assert_actuals_match(stack, PERIODS)

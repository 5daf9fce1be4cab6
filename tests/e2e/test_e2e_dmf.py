"""The actuals flow with posted GL through the F&O data-management package route (``dynamics.gl_transport``):
the same Anaplan cells as the OData route to the cent, polls as Wait/Check turns of the state machine, the
package fetched from the blob host without any credential, and the failures a package job can end in."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import (
    anaplan_actuals,
    assert_actuals_match,
    assert_failed_cleanly,
    clear_actuals,
    manual,
)

from d365_anaplan.runtime import clear_caches
from devkit.engine import LocalEngine
from devkit.sandbox.dynamics.dmf import DEFAULT_EXPORT_PROJECT
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def package_connection(stack: Stack, transport: str = "package", **package: Any) -> dict[str, Any]:
    cfg = stack.connection()
    blob = stack.dynamics.app.blob_store
    cfg["dynamics"] = {
        **cfg["dynamics"],
        "gl_transport": transport,
        "package": {
            "export_project": DEFAULT_EXPORT_PROJECT,
            "blob_host": blob.base_url,
            "poll_seconds": 1,
            **package,
        },
    }
    cfg["security"] = {"allowed_hosts": [*cfg["security"]["allowed_hosts"], blob.authority]}
    return cfg


def install(engine: LocalEngine, cfg: dict[str, Any]) -> None:
    engine.install_connection(cfg)
    clear_caches()  # handlers run in this process: forget the connection cached by the previous run


def run(engine: LocalEngine) -> Any:
    return engine.run("ActualsFlow", manual(), timeout=180)


def waits_of(engine: LocalEngine, result: Any) -> int:
    return sum(
        1
        for e in engine.history(result.arn)
        if e.get("type") == "WaitStateEntered"
        and e.get("stateEnteredEventDetails", {}).get("name") == "WaitGLPackage"
    )


def test_package_route_loads_the_same_cells_as_odata_to_the_cent(engine: LocalEngine, stack: Stack) -> None:
    app = stack.dynamics.app
    clear_actuals(stack)
    odata = run(engine)
    assert odata.status == "SUCCEEDED", (odata.error, odata.cause)
    by_odata = anaplan_actuals(stack)

    clear_actuals(stack)
    install(engine, package_connection(stack))
    exports, gl_reads = app.packages.counters["ExportToPackage"], app.count("GET /data/GeneralJournal")
    seen_auth = app.blob_store.authorization_seen
    result = run(engine)
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
    assert anaplan_actuals(stack) == by_odata
    assert_actuals_match(stack)
    companies = len(stack.connection()["dynamics"]["companies"])
    assert app.packages.counters["ExportToPackage"] - exports == companies, "one export per legal entity"
    assert app.count("GET /data/GeneralJournal") == gl_reads, "no GL page read over OData"
    assert app.blob_store.counters["GET blob"] >= companies
    assert app.blob_store.authorization_seen == seen_auth, "the blob host never sees a credential"
    assert waits_of(engine, result) >= companies * app.packages.polls, "polls are Wait states of the machine"


def test_auto_uses_the_package_above_the_threshold_and_odata_below(engine: LocalEngine, stack: Stack) -> None:
    app = stack.dynamics.app
    install(engine, package_connection(stack, "auto", package_threshold_lines=10_000_000))
    before = app.packages.counters["ExportToPackage"]
    below = run(engine)
    assert below.status == "SUCCEEDED", (below.error, below.cause)
    assert app.packages.counters["ExportToPackage"] == before, "below the threshold: OData"

    clear_actuals(stack)
    install(engine, package_connection(stack, "auto", package_threshold_lines=1))
    above = run(engine)
    assert above.status == "SUCCEEDED", (above.error, above.cause)
    assert app.packages.counters["ExportToPackage"] > before
    assert_actuals_match(stack)


def test_a_failed_export_fails_the_run_with_fo_s_message_and_is_not_retried(
    engine: LocalEngine, stack: Stack
) -> None:
    app = stack.dynamics.app
    install(engine, package_connection(stack))
    app.packages.fail_next_export = "Results. Field 'Ledger account' validation failed"
    exports = app.packages.counters["ExportToPackage"]
    result = run(engine)
    assert_failed_cleanly(
        engine,
        stack,
        result,
        "DynamicsPackageFailed",
        "ended Failed",
        "Field 'Ledger account' validation failed",
    )
    assert app.packages.counters["ExportToPackage"] - exports <= len(
        stack.connection()["dynamics"]["companies"]
    )


def test_an_expired_package_url_is_requested_again_once(engine: LocalEngine, stack: Stack) -> None:
    app = stack.dynamics.app
    install(engine, package_connection(stack))
    clear_actuals(stack)
    app.packages.expire_next_urls = 1
    urls, refused = app.packages.counters["GetExportedPackageUrl"], app.blob_store.counters["GET blob"]
    result = run(engine)
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
    assert_actuals_match(stack)
    companies = len(stack.connection()["dynamics"]["companies"])
    assert app.packages.counters["GetExportedPackageUrl"] - urls == companies + 1, (
        "one fresh URL for the refused one"
    )
    assert app.blob_store.counters["GET blob"] - refused == companies + 1


def test_a_url_expired_twice_fails_clearly(engine: LocalEngine, stack: Stack) -> None:
    app = stack.dynamics.app
    install(engine, package_connection(stack))
    app.packages.expire_next_urls = 100  # every URL handed out is already expired
    try:
        result = run(engine)
    finally:
        app.packages.expire_next_urls = 0
    assert_failed_cleanly(
        engine, stack, result, "DynamicsPackageUrlExpired", "refused the SAS URL", "fresh URL"
    )

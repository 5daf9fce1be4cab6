"""Drift detection through the CLI (issue 12, item 6): after a successful ``run``, a model change makes ``check``
warn with the diff (exit 1, read from the same local state) and the next ``run`` stop with MetadataDrift and
its remedy (exit 1); ``run --accept-drift`` continues and records the change, after which ``check`` passes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cli_support import Cli

EXTRA = "CC998"


def test_check_warns_run_stops_and_accept_drift_records(
    cli: Cli, stack: Any, config_file: Path, tmp_path: Path
) -> None:
    from devkit.sandbox.anaplan.seed import Member

    state = ["--state-dir", str(tmp_path / "state")]
    cfg = ["--config", str(config_file)]
    window = ["--from", "2025-01", "--to", "2025-01", "--quiet"]
    app = stack.anaplan.app
    centres = app.seed.lists["Cost Centres"]
    with app._lock:
        centres.members[EXTRA] = Member(EXTRA, "Anaplan-only member", "299998")
    try:
        first = cli("run", "actuals", *cfg, *window, *state)
        assert first.returncode == 0, first.stdout + first.stderr
        ok = cli("check", *cfg, "--only", "anaplan", *state)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert re.search(r"PASS\s+Anaplan\s+metadata drift \(actuals\)\s+unchanged since run", ok.stdout), (
            ok.stdout
        )

        with app._lock:
            del centres.members[EXTRA]
        warned = cli("check", *cfg, "--only", "anaplan", *state)
        assert warned.returncode == 1, warned.stdout + warned.stderr
        diff = f"list 'Cost Centres': 1 removed: {EXTRA}"
        assert re.search(rf"WARN\s+Anaplan\s+metadata drift \(actuals\)\s+{re.escape(diff)}", warned.stdout)
        assert "1 warned" in warned.stdout and "--accept-drift" in warned.stdout

        stopped = cli("run", "actuals", *cfg, *window, *state)
        assert stopped.returncode == 1, stopped.stdout + stopped.stderr
        assert "MetadataDrift" in stopped.stdout and diff in stopped.stdout
        assert "remedy:" in stopped.stdout and "--accept-drift" in stopped.stdout

        accepted = cli("run", "actuals", *cfg, *window, "--accept-drift", *state)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        again = cli("check", *cfg, "--only", "anaplan", *state)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        with app._lock:
            centres.members.pop(EXTRA, None)

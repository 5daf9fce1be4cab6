"""Issue 13 items 1 and 4 in the template: the dashboard is valid JSON and charts exactly metrics the code
emits; the new functions' event sources and least-privilege grants are in place."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]


def _template() -> dict[str, Any]:
    tpl, matches = decode(str(ROOT / "template.yaml"))
    assert tpl is not None, matches
    return dict(tpl)


def test_dashboard_charts_metrics_the_code_emits() -> None:
    body = _template()["Resources"]["RunsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    charted = set(re.findall(r'MetricName="(\w+)"', json.dumps(dashboard).replace('\\"', '"')))
    source = "".join(
        (ROOT / "shared" / "d365_anaplan" / f).read_text() for f in ("run_summary.py", "request_metrics.py")
    )
    emitted = set(re.findall(r'"(\w+)"', source))  # every quoted word: metric names among them
    assert charted and charted <= emitted, charted - emitted


def test_new_functions_are_triggered_and_narrowly_granted() -> None:
    res = _template()["Resources"]
    sync = res["ScheduleSyncFunction"]["Properties"]
    pattern = sync["Events"]["ConnectionChanged"]["Properties"]["Pattern"]
    assert pattern["detail-type"] == ["Object Created", "Object Deleted"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "connections/"}]
    statements = [st for p in sync["Policies"] if "Statement" in p for st in p["Statement"]]
    assert all(st["Resource"] != "*" for st in statements)
    passrole = next(st for st in statements if st["Action"] == "iam:PassRole")
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == "scheduler.amazonaws.com"
    notifier = res["RunNotifierFunction"]["Properties"]
    assert notifier["Events"]["FlowFinished"]["Properties"]["Pattern"]["detail"]["status"] == [
        "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]  # fmt: skip
    assert res["ConfigBucket"]["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }

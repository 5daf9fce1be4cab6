"""Requests and 429s per system are counted on the session and emitted as metrics (issue 13 item 4)."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from d365_anaplan.request_metrics import count_responses, emit
from d365_anaplan.steps.context import StepContext


@responses.activate
def test_answers_and_throttling_are_counted_and_emitted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    responses.add(responses.GET, "https://fo.example.test/data/MainAccounts", json={"value": []})
    responses.add(
        responses.GET, "https://fo.example.test/data/Other", status=429, headers={"Retry-After": "1"}
    )
    session = requests.Session()
    counts = count_responses(session)
    for path in ("MainAccounts", "Other", "MainAccounts"):
        session.get(f"https://fo.example.test/data/{path}", timeout=5)
    assert (counts.requests, counts.throttled) == (3, 1)

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "D365Anaplan")
    emit("acme", "dynamics", counts)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = {name: r[name] for r in records for name in ("HttpRequests", "HttpThrottled") if name in r}
    assert values in ({"HttpRequests": 3, "HttpThrottled": 1}, {"HttpRequests": [3], "HttpThrottled": [1]}), (
        values
    )
    assert all(r["connection"] == "acme" and r["system"] == "dynamics" for r in records)


def test_a_step_context_starts_with_no_counts() -> None:
    assert StepContext("acme", "arn:aws:states:eu-west-1:1:execution:x:run").responses == {}

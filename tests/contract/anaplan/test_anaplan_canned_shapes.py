"""Sandbox answers have the shapes of Anaplan Connect's canned responses (keys and value types).

Every key of a canned response must be present in the sandbox's answer with the same kind of value
(object, list, string, number, boolean); lists are compared through their first element. Extra keys in the
sandbox's answer are allowed (newer fields, e.g. ``creationTime`` on a new task).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from d365_anaplan.http import VerifiedSession
from devkit.sandbox.anaplan.harness import RunningSandbox, start

pytestmark = pytest.mark.integration

CANNED = Path(__file__).resolve().parents[2] / "fixtures" / "anaplan" / "anaplan-connect-responses"


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def shape_problems(canned: Any, actual: Any, where: str = "$") -> list[str]:
    if kind(canned) != kind(actual):
        return [f"{where}: canned {kind(canned)}, sandbox {kind(actual)}"]
    problems: list[str] = []
    if isinstance(canned, dict):
        for key, value in canned.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing in the sandbox answer")
            else:
                problems.extend(shape_problems(value, actual[key], f"{where}.{key}"))
    elif isinstance(canned, list) and canned:
        if not actual:
            problems.append(f"{where}: sandbox list is empty")
        else:
            problems.extend(shape_problems(canned[0], actual[0], f"{where}[0]"))
    return problems


def test_shape_check_can_fail() -> None:
    assert shape_problems({"a": {"b": 1}}, {"a": {"b": "1"}}) == ["$.a.b: canned number, sandbox string"]
    assert shape_problems({"a": [{"id": "1"}]}, {"a": [{}]}) == ["$.a[0].id: missing in the sandbox answer"]


@pytest.fixture(scope="module")
def answers() -> Iterator[tuple[RunningSandbox, dict[str, Any]]]:
    with start(task_start_delay_s=0.01, task_run_delay_s=0.02) as sbx:
        s = VerifiedSession(ca_bundle=sbx.ca_bundle)
        out: dict[str, Any] = {}
        auth = s.post(f"{sbx.auth_url}/token/authenticate", auth=(sbx.username, sbx.password))
        out["auth_response"] = auth.json()
        token = auth.json()["tokenInfo"]["tokenValue"]
        h = {"Authorization": f"AnaplanAuthToken {token}"}
        out["auth_refresh_token"] = s.post(f"{sbx.auth_url}/token/refresh", headers=h).json()
        ws, model = sbx.app.seed.workspace_id, sbx.app.seed.model_id
        api = sbx.api_url
        mp = f"{api}/workspaces/{ws}/models/{model}"

        def get(url: str) -> Any:
            r = s.get(url, headers=h)
            assert r.status_code == 200, (url, r.status_code, r.text)
            return r.json()

        accounts = sbx.app.import_by_name("Load Accounts")
        out["create_file_response"] = s.post(
            f"{mp}/files/{accounts.file_id}", headers=h, json={"chunkCount": -1}
        ).json()
        s.put(
            f"{mp}/files/{accounts.file_id}/chunks/0",
            headers={**h, "Content-Type": "application/octet-stream"},
            data=b"Code,Name\n",
        )
        s.put(
            f"{mp}/files/{accounts.file_id}/chunks/1",
            headers={**h, "Content-Type": "application/octet-stream"},
            data=b"123456,x\n,y\n",
        )
        s.post(f"{mp}/files/{accounts.file_id}/complete", headers=h, json={"id": accounts.file_id})
        out["file_multi_chunks_response"] = get(f"{mp}/files/{accounts.file_id}/chunks")
        task = s.post(f"{mp}/imports/{accounts.id}/tasks", headers=h, json={"localeName": "en_US"}).json()
        out["create_task_response"] = task
        task_url = f"{mp}/imports/{accounts.id}/tasks/{task['task']['taskId']}"
        for _ in range(200):
            body = get(task_url)
            if body["task"]["taskState"] == "COMPLETE":
                break
            time.sleep(0.02)
        out["task_success_response"] = body
        proc = next(iter(sbx.app.seed.processes.values()))
        ptask = s.post(f"{mp}/processes/{proc.id}/tasks", headers=h, json={"localeName": "en_US"}).json()
        for _ in range(200):
            pbody = get(f"{mp}/processes/{proc.id}/tasks/{ptask['task']['taskId']}")
            if pbody["task"]["taskState"] == "COMPLETE":
                break
            time.sleep(0.02)
        out["process_success_response"] = pbody
        single = sbx.app.import_by_name("Load Departments")
        s.put(
            f"{mp}/files/{single.file_id}",
            headers={**h, "Content-Type": "application/octet-stream"},
            data=b"Code,Name\n099,x\n",
        )
        out["file_chunks_response"] = get(f"{mp}/files/{single.file_id}/chunks")
        # the canned list answers carry meta.paging.next, present only when a next page exists: pages of one
        out["list_of_imports_response"] = get(f"{mp}/imports?limit=1")
        out["list_of_exports_response"] = get(f"{mp}/exports?limit=1")
        out["list_of_processes_response"] = get(f"{mp}/processes")
        out["list_of_files_response"] = get(f"{mp}/files?limit=1")
        out["list_of_modules_response"] = get(f"{mp}/modules?limit=1")
        out["list_of_models_response"] = get(f"{api}/workspaces/{ws}/models?limit=1")
        out["list_of_workspaces_response"] = get(f"{api}/workspaces")
        out["page1_response"] = get(f"{api}/models")
        out["model_response"] = get(f"{api}/models/{model}")
        out["workspace_response"] = get(f"{api}/workspaces/{ws}")
        out["users_me"] = get(f"{api}/users/me")
        out["empty_response"] = get(f"{mp}/actions")
        yield sbx, out


CASES = sorted(
    p.stem for p in CANNED.glob("*.json") if p.stem not in {"list_of_actions_response", "page2_response"}
)


@pytest.mark.parametrize("name", CASES)
def test_sandbox_answer_has_the_canned_shape(
    answers: tuple[RunningSandbox, dict[str, Any]], name: str
) -> None:
    _, out = answers
    canned = json.loads((CANNED / f"{name}.json").read_text())
    assert name in out, f"no sandbox answer recorded for {name}"
    assert shape_problems(canned, out[name]) == []


def test_skipped_canned_files_are_explained() -> None:
    # list_of_actions_response: the seeded model has no "other actions" (only imports, exports, a process),
    # so its list is empty and matches empty_response instead; page2_response has the shape of page1_response.
    assert {p.stem for p in CANNED.glob("*.json")} - set(CASES) == {
        "list_of_actions_response",
        "page2_response",
    }

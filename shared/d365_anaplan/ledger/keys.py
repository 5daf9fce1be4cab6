"""The ledger's item keys, in one place (layout: ``docs/ledger.md``)."""

from __future__ import annotations

from typing import Any

GSI_BY_CONNECTION = "by-connection"  # runs of a connection by start time: gsi1pk = CONN#<connection>


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def connection_pk(connection: str) -> str:
    """The ``gsi1pk`` of a run item (index :data:`GSI_BY_CONNECTION`)."""
    return f"CONN#{connection}"


def step_sk(step: str, attempt: int) -> str:
    return f"STEP#{step}#{attempt:04d}"


def step_prefix(step: str) -> str:
    """The sort-key prefix of every attempt of ``step``."""
    return f"STEP#{step}#"


def file_sk(key: str) -> str:
    return f"FILE#{key}"


def task_sk(task_id: str) -> str:
    return f"TASK#{task_id}"


def journal_sk(journal_key: str) -> str:
    return f"JOURNAL#{journal_key}"


def line_sk(line_key: str) -> str:
    return f"LINE#{line_key}"


def lease_pk(key: str) -> str:
    return f"LEASE#{key}"


def owner_pk(owner: str) -> str:
    return f"OWNER#{owner}"


def lease_key(model_key: str) -> dict[str, Any]:
    """The lease item of a model (wire format)."""
    return {"pk": {"S": lease_pk(model_key)}, "sk": {"S": "LEASE"}}


def pointer_key(owner: str, model_key: str) -> dict[str, Any]:
    """The owner's pointer to the lease it holds on a model (wire format)."""
    return {"pk": {"S": owner_pk(owner)}, "sk": {"S": lease_pk(model_key)}}


def watermark_key(connection: str, flow: str) -> dict[str, Any]:
    if not connection or not flow:
        raise ValueError(f"watermark: connection and flow must be non-empty, got {connection!r}, {flow!r}")
    return {"pk": {"S": f"WATERMARK#{connection}"}, "sk": {"S": f"FLOW#{flow}"}}

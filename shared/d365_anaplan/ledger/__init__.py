"""DynamoDB run ledger: audit trail, per-model lease, watermarks, Anaplan token cache, approved-plan state.

Key layout and access patterns: ``docs/ledger.md``. Every class takes ``table_name`` plus optional
``client`` (a low-level boto3 DynamoDB client, created lazily when omitted) and ``clock``.

Every write goes through one expression builder (``_expr.Update``), every key through ``keys``, every item read
back through ``codec``. Import the token cache from ``d365_anaplan.ledger.tokens`` (not re-exported here, so
importing the ledger stays light).
"""

from __future__ import annotations

from d365_anaplan.ledger.audit import RunLedger
from d365_anaplan.ledger.keys import GSI_BY_CONNECTION
from d365_anaplan.ledger.lease import ModelLease, model_key
from d365_anaplan.ledger.models import (
    AuditEvent,
    FileRecord,
    FinalStatus,
    JournalLineRecord,
    JournalRecord,
    Lease,
    RecordKind,
    RunRecord,
    RunStatus,
    StepRecord,
    TaskRecord,
    Watermark,
)
from d365_anaplan.ledger.watermarks import Watermarks

__all__ = [
    "GSI_BY_CONNECTION",
    "AuditEvent",
    "FileRecord",
    "FinalStatus",
    "JournalLineRecord",
    "JournalRecord",
    "Lease",
    "ModelLease",
    "RecordKind",
    "RunLedger",
    "RunRecord",
    "RunStatus",
    "StepRecord",
    "TaskRecord",
    "Watermark",
    "Watermarks",
    "model_key",
]

"""What both systems reveal to the mapping assistant, read through the layer's public client methods.

Anaplan: every import (type, ``headerNames``), every export (``headerNames`` and a few sample rows of its
file, which means running the export: read-only, but it takes the model briefly), the members of the lists
the proposal needs, and the model calendar's fiscal year when the user may read it. F&O: the legal entities,
the ledger and budget dimension formats, the dimension attributes and values, the main accounts with their
types, and the budget models and codes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.dynamics.client import DynamicsConnection

SAMPLE_ROWS = 200  # rows of each export file kept as a sample
MEMBER_SAMPLE = 5000  # members of each list kept


@dataclass(frozen=True)
class ImportMeta:
    name: str
    kind: str  # importType: MODULE_DATA, HIERARCHY_DATA, ...
    headers: list[str]


@dataclass(frozen=True)
class ExportMeta:
    name: str
    headers: list[str]
    sample: list[list[str]] = field(default_factory=list)  # data rows after the header


@dataclass
class AnaplanMeta:
    imports: list[ImportMeta] = field(default_factory=list)
    exports: list[ExportMeta] = field(default_factory=list)
    lists: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # list name -> (code, name)
    fiscal_year_start: date | None = None  # the model calendar's current fiscal year (None: not readable)
    notes: list[str] = field(default_factory=list)  # what could not be read


@dataclass
class FoMeta:
    companies: list[str] = field(default_factory=list)  # the configured companies
    legal_entities: dict[str, str] = field(default_factory=dict)  # company id -> name
    ledger_segments: list[str] = field(default_factory=list)  # the ledger integration format
    budget_segments: list[str] = field(default_factory=list)
    dimension_names: dict[str, str] = field(default_factory=dict)  # attribute name -> report column name
    dimension_values: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (value, description)
    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # account -> (name, MainAccountType)
    budget_models: dict[str, str] = field(default_factory=dict)  # id -> name
    budget_codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (type, description)
    notes: list[str] = field(default_factory=list)


def read_anaplan(client: AnaplanClient, *, run_exports: bool = True) -> AnaplanMeta:
    """Imports, exports (headers and sample rows), lists and the fiscal year of the model."""
    from d365_anaplan.errors import AnaplanError

    meta = AnaplanMeta()
    for info in client.import_catalogue():
        detail = client.import_metadata(info.id)
        headers = list(detail.source.header_names) if detail.source else []
        meta.imports.append(ImportMeta(info.name, info.import_type or detail.type or "", headers))
    for exp in client.export_catalogue():
        headers = client.export_header_names(exp.id)
        sample: list[list[str]] = []
        if run_exports:
            buf = _Sample()
            try:
                client.run_export(exp.id, buf)
            except AnaplanError as exc:
                meta.notes.append(f"export {exp.name!r} could not be run for a sample ({exc})")
            rows = list(csv.reader(io.StringIO(buf.text())))
            if rows:
                headers = headers or rows[0]
                sample = rows[1 : SAMPLE_ROWS + 1]
        meta.exports.append(ExportMeta(exp.name, headers, sample))
    for lst in client.list_catalogue():
        items = client.list_items(lst.id)
        meta.lists[lst.name] = [(i.code or i.name, i.name) for i in items[:MEMBER_SAMPLE]]
    try:
        year = client.fiscal_year()
        meta.fiscal_year_start = year.start_date if year is not None else None
    except AnaplanError as exc:
        meta.notes.append(
            f"model calendar not readable ({type(exc).__name__}); fiscal year start not proposed"
        )
    return meta


class _Sample:
    """A download writer keeping the first bytes of an export file (enough for the sample rows)."""

    LIMIT = 2_000_000

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        if self.size < self.LIMIT:
            self.parts.append(data[: self.LIMIT - self.size])
            self.size += len(self.parts[-1])
        return len(data)

    def text(self) -> str:
        raw = b"".join(self.parts).decode("utf-8", errors="replace")
        if self.size >= self.LIMIT:
            raw = raw.rsplit("\n", 1)[0]  # drop the cut line
        return raw


def read_dynamics(cfg: ConnectionConfig, conn: DynamicsConnection) -> FoMeta:
    """The F&O setup the proposal matches against."""
    reader, writer = conn.reader, conn.writer
    meta = FoMeta(companies=list(cfg.dynamics.companies))
    meta.legal_entities = {e.company: e.name for e in reader.legal_entities()}
    meta.ledger_segments = list(reader.ledger_format().segments)
    if cfg.dynamics.journal.target == "budget_register":
        meta.budget_segments = list(reader.budget_format().segments)
        meta.budget_models, meta.budget_codes = writer.budget_catalogue()
    meta.dimension_names = {a.name: a.report_column_name for a in reader.dimension_attributes()}
    for name in meta.ledger_segments:
        if name != "MainAccount":
            values = reader.dimension_values(name).values
            meta.dimension_values[name] = [(v.value, v.description) for v in values]
    meta.accounts = {a.account: (a.name, a.account_type) for a in reader.main_accounts()}
    return meta

"""Deterministic keys and texts of the entries the connector writes, so a retried or redriven step finds what it
already wrote."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import date
from decimal import Decimal

from d365_anaplan.flows.calendar import period_key

DESCRIPTION_MAX = 60


def _b32(data: bytes, length: int) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")[:length]


def cell_text(company: str, account: str, dims: Mapping[str, str], period: date, version: str) -> str:
    dim_text = "\x1e".join(f"{k}={v}" for k, v in sorted(dims.items()) if v)
    return "\x1f".join([company, account, dim_text, period.isoformat(), version])


def _hash(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def export_tag(connection: str, export_name: str) -> str:
    """``AP`` + 4 base32 characters: every header description of this export starts with ``<tag>-``."""
    return "AP" + _b32(_hash("export", connection, export_name), 4)


def entry_key(tag: str, run_id: str, company: str, fiscal_year: int, code: str) -> str:
    return f"{tag}-{_b32(_hash(tag, run_id, company, str(fiscal_year), code), 8)}"


def entry_description(
    key: str, version: str, fiscal_year: int, first: date, last: date, run_id: str, export_name: str
) -> str:
    """What a controller reads on the header: key, version, fiscal year, periods, run, export (<= 60)."""
    span = f"{period_key(first)}..{period_key(last)[5:] if first.year == last.year else period_key(last)}"
    run = run_id.rsplit(":", 1)[-1][:8]
    text = f"{key} {version} FY{fiscal_year} {span} run {run} {export_name}"
    return text[:DESCRIPTION_MAX].rstrip()


def line_key(
    entry: str, company: str, account: str, dims: Mapping[str, str], period: date, amount: Decimal
) -> str:
    """Per-line key for the ledger: ``<entry key>-<10 base32 characters>``."""
    text = cell_text(company, account, dims, period, "") + "\x1d" + _amount_text(amount)
    return f"{entry}-{_b32(_hash(entry, text), 10)}"


def _amount_text(amount: Decimal) -> str:
    return f"{amount.normalize():f}" if amount != 0 else "0"

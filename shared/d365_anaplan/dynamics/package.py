"""Reading a data-management package staged in S3 (dynamics-budget-fiscal.md §F: a zip holding
``Manifest.xml``, ``PackageHeader.xml`` and one file per entity).

The zip is read where it lies: :class:`S3RangeFile` is a seekable file whose reads are ranged GETs, so
:mod:`zipfile` finds the central directory at the end of the object and then decompresses the entity's
CSV as a stream; neither the package nor the CSV is ever held whole. :func:`entity_rows` yields the CSV's
rows keyed by the entity's field names (DMF writes staging names in upper case: ``ACCOUNTINGDATE`` ->
``AccountingDate``), dates as ISO text. :func:`write_package` builds the package of an import.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, Literal
from xml.sax.saxutils import escape

from d365_anaplan.errors import DynamicsBadResponse

MANIFEST = "Manifest.xml"
PACKAGE_HEADER = "PackageHeader.xml"
_BUFFER = 1024 * 1024
_SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s.*)?$")

# Field names of "General journal account entry" (GeneralJournalAccountEntryEntity, dynamics-fo.md §2.3).
GL_FIELDS = (
    "JournalNumber",
    "Voucher",
    "AccountingDate",
    "PostingLayer",
    "LedgerAccount",
    "AccountDisplayValue",
    "TransactionCurrencyCode",
    "TransactionCurrencyAmount",
    "AccountingCurrencyAmount",
    "ReportingCurrencyAmount",
    "Description",
    "PostingType",
    "JournalCategory",
    "IsCredit",
    "IsCorrection",
    "LedgerName",
    "DataArea",
    "GeneralJournalAccountEntryRecId",
    "FiscalCalendarPeriod",
    "LedgerDimensionValuesJson",
)
_DATE_FIELDS = ("AccountingDate",)


class S3RangeFile(io.RawIOBase):
    """A read-only, seekable view of one S3 object; every read is one ranged GET."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        self.pos = 0
        self.requests = 0
        self.fetched = 0  # bytes read from S3

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b: Any) -> int:
        if self.pos >= self.size or len(b) == 0:
            return 0
        end = min(self.size, self.pos + len(b)) - 1
        self.requests += 1
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-{end}")["Body"]
        n = 0
        for chunk in body.iter_chunks(256 * 1024):
            b[n : n + len(chunk)] = chunk
            n += len(chunk)
        self.pos += n
        self.fetched += n
        return n


@contextmanager
def open_package(s3: Any, bucket: str, key: str) -> Iterator[zipfile.ZipFile]:
    raw = S3RangeFile(s3, bucket, key)
    try:
        with zipfile.ZipFile(io.BufferedReader(raw, buffer_size=_BUFFER)) as zf:
            yield zf
    except zipfile.BadZipFile:
        raise DynamicsBadResponse(f"package s3://{bucket}/{key}: not a zip file") from None


def entity_member(zf: zipfile.ZipFile, entity: str) -> str:
    """The CSV member of ``entity`` (``<entity>.csv``, any case; else the package's only data file)."""
    names = [n for n in zf.namelist() if not n.endswith("/")]
    data = [n for n in names if n.lower() not in (MANIFEST.lower(), PACKAGE_HEADER.lower())]
    wanted = [n for n in data if n.rsplit("/", 1)[-1].lower() == f"{entity.lower()}.csv"]
    if len(wanted) == 1:
        return wanted[0]
    if len(data) == 1 and data[0].lower().endswith(".csv"):
        return data[0]
    raise DynamicsBadResponse(
        f"package: no CSV file of entity {entity!r} (members: {', '.join(sorted(names))[:300]}); the data "
        "project's source data format must be CSV"
    )


def _iso_date(value: str, order: Literal["mdy", "dmy"], what: str) -> str:
    text = value.strip()
    if not text or text[:4].isdigit():
        return text  # ISO (or empty: the reader names the field)
    m = _SLASH_DATE.match(text)
    if m is None:
        raise DynamicsBadResponse(f"{what}: {text[:30]!r} is neither an ISO date nor d/m/y or m/d/y")
    a, b, year = (int(x) for x in m.groups())
    month, day = (a, b) if order == "mdy" else (b, a)
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        raise DynamicsBadResponse(f"{what}: {text[:30]!r} is not a date in {order} order") from None


def entity_rows(
    zf: zipfile.ZipFile,
    entity: str,
    fields: Iterable[str] = GL_FIELDS,
    *,
    slash_dates: Literal["mdy", "dmy"] = "mdy",
) -> Iterator[dict[str, Any]]:
    """Rows of the entity's CSV keyed by field name (unknown columns dropped), dates as ISO text."""
    member = entity_member(zf, entity)
    by_upper = {f.upper(): f for f in fields}
    with zf.open(member) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        columns = [by_upper.get(h.strip().upper()) for h in header]
        for number, values in _numbered(reader, member):
            if not values:
                continue
            if len(values) != len(columns):
                raise DynamicsBadResponse(
                    f"package {member} line {number}: {len(values)} values for {len(columns)} columns"
                )
            row: dict[str, Any] = {name: v for name, v in zip(columns, values, strict=True) if name}
            for f in _DATE_FIELDS:
                if f in row:
                    row[f] = _iso_date(row[f], slash_dates, f"package {member} line {number} field {f}")
            row["_line"] = number
            yield row


def _numbered(reader: Any, member: str) -> Iterator[tuple[int, list[str]]]:
    """(line number of the record's end, values) of a ``csv.reader``'s data rows; a row the csv module cannot
    read is named, not raised raw."""
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DynamicsBadResponse(
                f"package {member} line {reader.line_num}: not CSV ({str(exc)[:80]})"
            ) from None
        yield reader.line_num, values


def columns_of(zf: zipfile.ZipFile, entity: str, fields: Iterable[str] = GL_FIELDS) -> frozenset[str]:
    """The entity fields the package's CSV carries."""
    member = entity_member(zf, entity)
    by_upper = {f.upper(): f for f in fields}
    with zf.open(member) as raw:
        header = next(csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")), [])
    return frozenset(by_upper[h.strip().upper()] for h in header if h.strip().upper() in by_upper)


# --- writing (imports) ----------------------------------------------------------------------------------


def write_package(
    out: Any, *, project: str, entity: str, columns: list[str], rows: Iterable[list[str]]
) -> int:
    """A package of one entity into the binary file ``out``: ``Manifest.xml``, ``PackageHeader.xml`` and
    ``<entity>.csv`` (staging names in upper case, UTF-8, ISO dates); the number of data rows."""
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, _xml("DataManagementPackageManifest",
                                   f"<DefinitionGroupName>{escape(project)}</DefinitionGroupName><PackageEntityList>"
                                   f"<DataManagementPackageEntityData><EntityName>{escape(entity)}</EntityName>"
                                   "<SourceFormat>CSV-Unicode</SourceFormat></DataManagementPackageEntityData>"
                                   "</PackageEntityList>"))  # fmt: skip
        zf.writestr(PACKAGE_HEADER, _xml("DataManagementPackageHeader",
                                         f"<Description>{escape(project)}</Description><PackageType>DefinitionGroup"
                                         "</PackageType><PackageVersion>2</PackageVersion>"))  # fmt: skip
        with zf.open(f"{entity}.csv", "w") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            w = csv.writer(text, lineterminator="\r\n")
            w.writerow([c.upper() for c in columns])
            for row in rows:
                w.writerow(row)
                count += 1
            text.flush()
            text.detach()
    return count


def _xml(root: str, inner: str) -> str:
    ns = "http://schemas.datacontract.org/2004/07/Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization"
    return f'<?xml version="1.0" encoding="utf-8"?>\n<{root} xmlns="{ns}">{inner}</{root}>\n'

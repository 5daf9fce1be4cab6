"""Reading a data-management package staged in S3 (dynamics-budget-fiscal.md §F: a zip holding
``Manifest.xml``, ``PackageHeader.xml`` and one file per entity).

The zip is read where it lies: :class:`S3RangeFile` is a seekable file whose reads are ranged GETs, so
:mod:`zipfile` finds the central directory at the end of the object and then decompresses the entity's
CSV as a stream; neither the package nor the CSV is ever held whole. :func:`entity_rows` yields the CSV's
rows keyed by the entity's field names (DMF writes staging names in upper case: ``ACCOUNTINGDATE`` ->
``AccountingDate``), dates as ISO text. :func:`write_package` builds the package of an import.

The package is F&O's answer and is not trusted: :func:`open_package` checks the member list before any
member is opened (at most :data:`MAX_MEMBERS` entries, none larger than the configured package size,
none compressed more than :data:`MAX_RATIO` to 1), :func:`entity_rows` refuses a line longer than
:data:`MAX_LINE_BYTES` before the csv module sees it, and a corrupt member (bad deflate data, not UTF-8,
encrypted, an unsupported compression) is :class:`~d365_anaplan.errors.DynamicsBadResponse` naming the
package and member.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, Literal
from xml.sax.saxutils import escape

from d365_anaplan.errors import DynamicsBadResponse

MANIFEST = "Manifest.xml"
PACKAGE_HEADER = "PackageHeader.xml"
_BUFFER = 1024 * 1024
MAX_MEMBERS = 64  # a package holds Manifest.xml, PackageHeader.xml and one file per entity
MAX_RATIO = 200  # uncompressed : compressed, for members over _RATIO_FROM bytes (a zip bomb is refused)
_RATIO_FROM = 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
# What zipfile and the decoder raise on a corrupt, encrypted or unsupported member.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError)
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
def open_package(
    s3: Any, bucket: str, key: str, *, max_member_bytes: int | None = None
) -> Iterator[zipfile.ZipFile]:
    """The staged package as a :class:`zipfile.ZipFile`, its member list checked (:func:`check_members`)."""
    raw = S3RangeFile(s3, bucket, key)
    what = f"package s3://{bucket}/{key}"
    try:
        zf = zipfile.ZipFile(io.BufferedReader(raw, buffer_size=_BUFFER))
    except (zipfile.BadZipFile, EOFError, NotImplementedError):
        raise DynamicsBadResponse(f"{what}: not a zip file") from None
    with zf:
        check_members(zf, what, max_member_bytes)
        yield zf


def check_members(zf: zipfile.ZipFile, what: str, max_member_bytes: int | None = None) -> None:
    """Refuse a package with too many entries, a member larger than ``max_member_bytes`` (the configured
    ``dynamics.package.max_package_bytes``) or one compressed more than :data:`MAX_RATIO` to 1."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DynamicsBadResponse(f"{what}: {len(infos):,} entries, more than {MAX_MEMBERS}; refused")
    for info in infos:
        name = info.filename[:120]
        if max_member_bytes is not None and info.file_size > max_member_bytes:
            raise DynamicsBadResponse(
                f"{what} member {name!r}: {info.file_size:,} bytes uncompressed, more than {max_member_bytes:,} "
                "(dynamics.package.max_package_bytes); refused"
            )
        if info.file_size > _RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise DynamicsBadResponse(
                f"{what} member {name!r}: {info.file_size:,} bytes from {info.compress_size:,} compressed, more "
                f"than {MAX_RATIO} to 1 (a zip bomb?); refused"
            )


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
    with _member_errors(member), zf.open(member) as raw:
        reader = csv.reader(_bounded_lines(raw, member))
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DynamicsBadResponse(f"package {member} line 1: not CSV ({str(exc)[:80]})") from None
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


@contextmanager
def _member_errors(member: str) -> Iterator[None]:
    """A corrupt, encrypted or unsupported member is :class:`DynamicsBadResponse` naming it."""
    try:
        yield
    except _CORRUPT as exc:
        raise DynamicsBadResponse(
            f"package member {member!r}: unreadable ({type(exc).__name__}: {str(exc)[:80]}); refused"
        ) from None


def _bounded_lines(raw: Any, member: str) -> Iterator[str]:
    """The member's text line by line (UTF-8, a leading BOM dropped); a line longer than
    :data:`MAX_LINE_BYTES` is refused before anything holds more of it."""
    number = 0
    while True:
        line = raw.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise DynamicsBadResponse(
                f"package {member} line {number}: longer than {MAX_LINE_BYTES:,} bytes; refused"
            )
        try:
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DynamicsBadResponse(
                f"package {member} line {number}: not UTF-8 text (byte {exc.start + 1}); refused"
            ) from None


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
    with _member_errors(member), zf.open(member) as raw:
        try:
            header = next(csv.reader(_bounded_lines(raw, member)), [])
        except csv.Error as exc:
            raise DynamicsBadResponse(f"package {member} line 1: not CSV ({str(exc)[:80]})") from None
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

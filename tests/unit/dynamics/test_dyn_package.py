"""Reading a data-management package where it lies in S3: ranged reads (central directory at the end),
the entity's CSV streamed, staging names mapped to field names, dates to ISO."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from d365_anaplan.dynamics.package import S3RangeFile, columns_of, entity_member, entity_rows, open_package
from d365_anaplan.errors import DynamicsBadResponse

BUCKET = "staging"
ENTITY = "General journal account entry"
MAX_LINE_BYTES = 1024 * 1024  # the line cap of package.py


def package(members: dict[str, bytes], *, stored: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def gl_csv(rows: list[str]) -> bytes:
    return (
        "\ufeffVOUCHER,ACCOUNTINGDATE,ACCOUNTINGCURRENCYAMOUNT,DATAAREA,SOMETHINGELSE\r\n" + "".join(rows)
    ).encode()


def test_the_member_list_is_read_from_the_end_without_fetching_the_package(s3: Any) -> None:
    big = bytes(range(256)) * 40_000  # 10 MB of incompressible-ish filler, stored
    data = package({"Manifest.xml": b"<m/>", "PackageHeader.xml": b"<h/>", "filler.bin": big,
                    f"{ENTITY}.csv": gl_csv(["V1,2025-01-31,10.00,usmf,x\r\n"])}, stored=True)  # fmt: skip
    s3.put_object(Bucket=BUCKET, Key="p.zip", Body=data)
    raw = S3RangeFile(s3, BUCKET, "p.zip")
    with zipfile.ZipFile(io.BufferedReader(raw, buffer_size=64 * 1024)) as zf:
        assert entity_member(zf, ENTITY) == f"{ENTITY}.csv"
        rows = list(entity_rows(zf, ENTITY))
    assert rows == [{"Voucher": "V1", "AccountingDate": "2025-01-31", "AccountingCurrencyAmount": "10.00",
                     "DataArea": "usmf", "_line": 2}]  # fmt: skip
    assert raw.fetched < len(data) // 4, "only the directory and the entity's bytes are read"


def test_slash_dates_follow_the_configured_order_and_bad_ones_are_named(s3: Any) -> None:
    data = package({f"{ENTITY}.csv": gl_csv(["V1,3/4/2025 12:00:00 AM,1,usmf,\r\n"])})
    s3.put_object(Bucket=BUCKET, Key="p.zip", Body=data)
    with open_package(s3, BUCKET, "p.zip") as zf:
        assert next(entity_rows(zf, ENTITY))["AccountingDate"] == "2025-03-04"
        assert next(entity_rows(zf, ENTITY, slash_dates="dmy"))["AccountingDate"] == "2025-04-03"
    bad = package({f"{ENTITY}.csv": gl_csv(["V1,31/12/2025,1,usmf,\r\n"])})
    s3.put_object(Bucket=BUCKET, Key="bad.zip", Body=bad)
    with (
        open_package(s3, BUCKET, "bad.zip") as zf,
        pytest.raises(DynamicsBadResponse, match="line 2 field AccountingDate"),
    ):
        list(entity_rows(zf, ENTITY))


def test_ragged_rows_other_formats_and_non_zips_are_refused(s3: Any) -> None:
    s3.put_object(
        Bucket=BUCKET, Key="ragged.zip", Body=package({f"{ENTITY}.csv": gl_csv(["V1,2025-01-31,1\r\n"])})
    )
    with (
        open_package(s3, BUCKET, "ragged.zip") as zf,
        pytest.raises(DynamicsBadResponse, match="line 2: 3 values"),
    ):
        list(entity_rows(zf, ENTITY))
    s3.put_object(Bucket=BUCKET, Key="xml.zip", Body=package({"Manifest.xml": b"", f"{ENTITY}.xml": b"<x/>"}))
    with open_package(s3, BUCKET, "xml.zip") as zf, pytest.raises(DynamicsBadResponse, match="must be CSV"):
        entity_member(zf, ENTITY)
    s3.put_object(Bucket=BUCKET, Key="junk.zip", Body=b"not a zip at all" * 100)
    with pytest.raises(DynamicsBadResponse, match="not a zip"), open_package(s3, BUCKET, "junk.zip"):
        pass


def test_a_field_past_the_csv_limit_is_named_not_raised_raw(s3: Any) -> None:
    huge = "x" * 200_000  # past the csv module's field size limit
    s3.put_object(
        Bucket=BUCKET,
        Key="huge.zip",
        Body=package({f"{ENTITY}.csv": gl_csv([f'V1,2025-01-31,1,usmf,"{huge}"\r\n'])}),
    )
    with (
        open_package(s3, BUCKET, "huge.zip") as zf,
        pytest.raises(DynamicsBadResponse, match="line 2: not CSV"),
    ):
        list(entity_rows(zf, ENTITY))


def test_a_line_past_the_line_cap_is_refused_before_the_csv_module_reads_it(s3: Any) -> None:
    """64 KiB of zip may hold a 64 MiB line: it is refused at 1 MiB, named by member and line."""
    long_line = "V1,2025-01-31,1,usmf," + "," * (MAX_LINE_BYTES + 10) + "\r\n"
    s3.put_object(
        Bucket=BUCKET, Key="long.zip", Body=package({f"{ENTITY}.csv": gl_csv([long_line])}, stored=True)
    )
    with (
        open_package(s3, BUCKET, "long.zip") as zf,
        pytest.raises(DynamicsBadResponse, match=r"line 2: longer than 1,048,576 bytes; refused"),
    ):
        list(entity_rows(zf, ENTITY))
    s3.put_object(
        Bucket=BUCKET, Key="head.zip", Body=package({f"{ENTITY}.csv": b"A," * MAX_LINE_BYTES}, stored=True)
    )
    with (
        open_package(s3, BUCKET, "head.zip") as zf,
        pytest.raises(DynamicsBadResponse, match=r"line 1: longer than"),
    ):
        columns_of(zf, ENTITY)


def test_members_are_checked_before_any_is_opened(s3: Any) -> None:
    """Too many entries, a member over the configured package size, a zip-bomb ratio: refused by name."""
    s3.put_object(Bucket=BUCKET, Key="many.zip", Body=package({f"m{i}.xml": b"<x/>" for i in range(65)}))
    many = r"package s3://staging/many.zip: 65 entries, more than 64"
    with pytest.raises(DynamicsBadResponse, match=many), open_package(s3, BUCKET, "many.zip"):
        pass
    csv_bytes = gl_csv(["V1,2025-01-31,10.00,usmf,x\r\n"] * 100)
    s3.put_object(Bucket=BUCKET, Key="big.zip", Body=package({f"{ENTITY}.csv": csv_bytes}, stored=True))
    big = r"member 'General journal account entry.csv': .* more than 2,048 \(dynamics.package.max_package_bytes\)"
    with (
        pytest.raises(DynamicsBadResponse, match=big),
        open_package(s3, BUCKET, "big.zip", max_member_bytes=2048),
    ):
        pass
    s3.put_object(Bucket=BUCKET, Key="bomb.zip", Body=package({f"{ENTITY}.csv": b"\0" * (8 * 1024 * 1024)}))
    bomb = r"more than 200 to 1 \(a zip bomb\?\); refused"
    with pytest.raises(DynamicsBadResponse, match=bomb), open_package(s3, BUCKET, "bomb.zip"):
        pass


def test_corrupt_members_are_named_not_raised_raw(s3: Any) -> None:
    good = gl_csv(["V1,2025-01-31,10.00,usmf,x\r\n"] * 50)
    data = bytearray(package({f"{ENTITY}.csv": good}))
    start = data.index(b"PK\x03\x04") + 30 + len(f"{ENTITY}.csv")  # the member's deflate stream
    data[start + 5 : start + 25] = b"\xff" * 20
    s3.put_object(Bucket=BUCKET, Key="corrupt.zip", Body=bytes(data))
    with (
        open_package(s3, BUCKET, "corrupt.zip") as zf,
        pytest.raises(
            DynamicsBadResponse, match=r"package member 'General journal account entry.csv': unreadable"
        ),
    ):
        list(entity_rows(zf, ENTITY))
    s3.put_object(
        Bucket=BUCKET,
        Key="latin.zip",
        Body=package({f"{ENTITY}.csv": gl_csv([]) + b"V1,2025-01-31,10.00,usmf,caf\xe9\r\n"}),
    )
    with (
        open_package(s3, BUCKET, "latin.zip") as zf,
        pytest.raises(DynamicsBadResponse, match=r"line 2: not UTF-8 text \(byte 29\); refused"),
    ):
        list(entity_rows(zf, ENTITY))

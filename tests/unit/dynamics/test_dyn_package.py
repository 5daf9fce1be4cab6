"""Reading a data-management package where it lies in S3: ranged reads (central directory at the end),
the entity's CSV streamed, staging names mapped to field names, dates to ISO."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from d365_anaplan.dynamics.package import S3RangeFile, entity_member, entity_rows, open_package
from d365_anaplan.errors import DynamicsBadResponse

BUCKET = "staging"
ENTITY = "General journal account entry"


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

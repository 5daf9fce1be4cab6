"""S3 staging: streamed multipart writes with exact byte/row/sha256 accounting, aborts, ranged reads."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from d365_anaplan.staging import MIN_PART, S3StreamWriter, iter_chunks, iter_lines, run_key, staged_file

BUCKET = "staging"


def test_run_key_layout_and_unsafe_segments() -> None:
    assert run_key("contoso", "run-1", "extract", "gl USMF.csv") == "runs/contoso/run-1/extract/gl_USMF.csv"
    with pytest.raises(ValueError, match="unusable"):
        run_key("contoso", "..", "extract", "x")


def test_small_file_single_put_with_counts(s3: Any) -> None:
    data = b"Code,Name\n110110,Cash\n401100,Revenue\n"
    with S3StreamWriter(s3, BUCKET, "runs/c/r/s/small.csv") as out:
        out.write(data[:7])
        out.write(data[7:])
    assert out.result is not None
    assert (out.result.bytes, out.result.rows) == (len(data), 3)
    assert out.result.sha256 == hashlib.sha256(data).hexdigest()
    assert s3.get_object(Bucket=BUCKET, Key="runs/c/r/s/small.csv")["Body"].read() == data
    assert staged_file(s3, BUCKET, "runs/c/r/s/small.csv") == out.result


def test_large_file_is_multipart_and_exact(s3: Any) -> None:
    line = b"USMF,110110,001,OU_3566,022,Jan 25,Actual,1234.56\n"
    count = (2 * MIN_PART) // len(line) + 1000
    digest = hashlib.sha256()
    with S3StreamWriter(s3, BUCKET, "runs/c/r/s/big.csv", part_size=MIN_PART) as out:
        for _ in range(count):
            out.write(line)
            digest.update(line)
    assert out._parts, "more than one part must have been uploaded"
    head = s3.head_object(Bucket=BUCKET, Key="runs/c/r/s/big.csv")
    assert head["ContentLength"] == count * len(line)
    assert out.result is not None
    assert out.result.rows == count
    assert out.result.sha256 == digest.hexdigest()
    streamed = hashlib.sha256()
    for piece in iter_chunks(s3, BUCKET, "runs/c/r/s/big.csv", chunk_size=3 * 1024 * 1024 + 7):
        assert len(piece) <= 3 * 1024 * 1024 + 7
        streamed.update(piece)
    assert streamed.hexdigest() == digest.hexdigest()


def test_exception_aborts_and_leaves_no_object(s3: Any) -> None:
    with (
        pytest.raises(RuntimeError),
        S3StreamWriter(s3, BUCKET, "runs/c/r/s/half.csv", part_size=MIN_PART) as out,
    ):
        out.write(os.urandom(MIN_PART + 10))
        raise RuntimeError("extract failed half way")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/c/r/s/half.csv").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert staged_file(s3, BUCKET, "runs/c/r/s/half.csv") is None


def test_iter_lines_keeps_line_boundaries_across_reads(s3: Any) -> None:
    lines = [f"{i},caf\u00e9 {i}\n".encode() for i in range(5000)] + [b"last-without-newline"]
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"".join(lines))
    assert list(iter_lines(s3, BUCKET, "k", chunk_size=1000)) == lines


def test_write_after_close_is_refused(s3: Any) -> None:
    out = S3StreamWriter(s3, BUCKET, "x")
    out.write(b"a\n")
    out.close()
    with pytest.raises(ValueError, match="closed"):
        out.write(b"b\n")

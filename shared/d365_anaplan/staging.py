"""S3 staging: streamed writes and reads, so extracts and files never sit whole in memory.

Key layout (deterministic, so a retried step overwrites its own output instead of adding a copy)::

    runs/<connection>/<run_id>/<step>/<name>

:class:`S3StreamWriter` uploads with the multipart API as bytes arrive (parts of ``part_size``), counting
bytes, newline-terminated rows and a SHA-256 of the content; an exception inside the ``with`` block aborts
the upload so no half-written object appears. Readers use ranged GETs and the streaming body.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIN_PART = 5 * 1024 * 1024  # S3's minimum part size (all parts but the last)
DEFAULT_PART = 8 * 1024 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


class StagedFile(BaseModel):
    """What a state passes on instead of rows."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    bytes: int
    rows: int
    sha256: str


def _segment(value: str) -> str:
    cleaned = _SAFE.sub("_", value.strip())
    if not cleaned or cleaned in (".", ".."):
        raise ValueError(f"unusable S3 key segment {value!r}")
    return cleaned


def run_key(connection: str, run_id: str, step: str, name: str) -> str:
    """The staging key of file ``name`` written by ``step`` of a run."""
    return "/".join(["runs", _segment(connection), _segment(run_id), _segment(step), _segment(name)])


def s3_client() -> S3Client:
    """A boto3 S3 client, created lazily (never at import time, so moto can intercept it)."""
    import boto3

    return boto3.client("s3")


class S3StreamWriter:
    """Write an S3 object as a stream of bytes; use as a context manager.

    >>> with S3StreamWriter(s3, "bucket", "runs/x/1/extract/gl.csv") as out:  # doctest: +SKIP
    ...     out.write(b"a,b\\n")
    >>> out.result.rows  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        *,
        part_size: int = DEFAULT_PART,
        content_type: str = "text/csv; charset=utf-8",
        metadata: dict[str, str] | None = None,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes")
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._part_size = part_size
        self._content_type = content_type
        self._metadata = metadata or {}
        self._buffer = bytearray()
        self._parts: list[CompletedPartTypeDef] = []
        self._upload_id: str | None = None
        self._sha = hashlib.sha256()
        self._bytes = 0
        self._rows = 0
        self._closed = False
        self.result: StagedFile | None = None

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed S3StreamWriter")
        self._sha.update(data)
        self._bytes += len(data)
        self._rows += data.count(b"\n")
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._flush_part(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]
        return len(data)

    def write_text(self, text: str) -> int:
        return self.write(text.encode("utf-8"))

    def _flush_part(self, chunk: bytes) -> None:
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self._content_type, Metadata=self._metadata
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=chunk
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})

    def close(self) -> StagedFile:
        if self._closed:
            assert self.result is not None
            return self.result
        if self._upload_id is None:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self._content_type,
                Metadata=self._metadata,
            )
        else:
            if self._buffer:
                self._flush_part(bytes(self._buffer))
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()
        self._closed = True
        self.result = StagedFile(
            bucket=self.bucket, key=self.key, bytes=self._bytes, rows=self._rows, sha256=self._sha.hexdigest()
        )
        # A small manifest beside the object lets a replay or a redriven step describe the file without
        # reading it again.
        self._s3.put_object(
            Bucket=self.bucket,
            Key=manifest_key(self.key),
            Body=self.result.model_dump_json().encode("utf-8"),
            ContentType="application/json",
        )
        return self.result

    def abort(self) -> None:
        self._closed = True
        self._buffer.clear()
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None

    def __enter__(self) -> S3StreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_chunks(s3: S3Client, bucket: str, key: str, chunk_size: int = DEFAULT_PART) -> Iterator[bytes]:
    """Yield the object's bytes in pieces of ``chunk_size`` (the last may be shorter), one ranged GET each."""
    size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    start = 0
    while start < size:
        end = min(start + chunk_size, size) - 1
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        try:
            yield body.read()
        finally:
            body.close()
        start = end + 1


def iter_lines(s3: S3Client, bucket: str, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    """Yield the object's lines (with their line endings) as bytes, streaming."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        pending = b""
        while True:
            data = body.read(chunk_size)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending
    finally:
        body.close()


def manifest_key(key: str) -> str:
    return f"{key}.manifest.json"


def staged_file(s3: S3Client, bucket: str, key: str) -> StagedFile | None:
    """Describe a file staged earlier by :class:`S3StreamWriter` (``None`` if it was never completed)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key(key))["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    try:
        return StagedFile.model_validate_json(body.read())
    finally:
        body.close()

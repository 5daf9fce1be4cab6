"""Anaplan file transfer: streamed uploads (one PUT below 1 MB, else gzip chunks + ``/complete``), header check
against the import's metadata, chunked downloads.

Sources and sinks are plain: uploads read an ``Iterable[bytes]`` or a binary file-like object, downloads
write to anything with ``.write(bytes)`` (an open file, ``io.BytesIO``, ``staging.S3StreamWriter``).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Protocol

from pydantic import BaseModel, ConfigDict

from d365_anaplan.anaplan.models import Chunk, ImportMetadata
from d365_anaplan.anaplan.transport import AnaplanTransport
from d365_anaplan.errors import AnaplanFileTooLarge, AnaplanHeaderMismatch

Source = Iterable[bytes] | BinaryIO
MB = 1_000_000
MAX_CHUNKS = 1000
SINGLE_SHOT_LIMIT = 1 * MB


class Writer(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class UploadResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    file_id: str
    chunks: int
    bytes_read: int  # uncompressed bytes taken from the source
    bytes_sent: int  # bytes on the wire (gzip for chunks)
    single_shot: bool

    @property
    def compression_ratio(self) -> float:
        return self.bytes_read / self.bytes_sent if self.bytes_sent else 1.0


def check_header(header_line: bytes, meta: ImportMetadata, import_name: str) -> None:
    """Refuse a file whose header row is not the import's ``headerNames`` (names the columns)."""
    source = meta.source
    if source is None or not source.header_names:
        return
    encoding = (source.text_encoding or "UTF-8").lower()
    text = header_line.decode("utf-8-sig" if encoding in ("utf-8", "utf8") else encoding, errors="replace")
    sep = source.column_separator or ","
    sep = "\t" if sep in ("\\t", "Tab") else sep
    quote = source.text_delimiter or '"'
    row = next(csv.reader(io.StringIO(text.rstrip("\r\n")), delimiter=sep[0], quotechar=quote[0]), [])
    actual = [c.strip() for c in row]
    expected = list(source.header_names)
    if actual == expected:
        return
    missing = [c for c in expected if c not in actual]
    unexpected = [c for c in actual if c not in expected]
    parts = []
    if missing:
        parts.append(f"missing columns {missing}")
    if unexpected:
        parts.append(f"unexpected columns {unexpected}")
    if not parts:
        parts.append(f"columns in a different order: file has {actual}, import expects {expected}")
    raise AnaplanHeaderMismatch(
        f"upload for import {import_name!r}: the file header does not match the import: {'; '.join(parts)}"
    )


def rechunk(source: Source, size: int) -> Iterator[bytes]:
    """Re-cut a stream into pieces of exactly ``size`` bytes (the last may be shorter); never whole-file."""
    if hasattr(source, "read"):
        reader: BinaryIO = source  # type: ignore[assignment]
        while True:
            part = reader.read(size)
            if not part:
                return
            if len(part) < size:  # short read (pipe, socket, S3 body): top it up
                buf = bytearray(part)
                del part
                while len(buf) < size and (more := reader.read(size - len(buf))):
                    buf += more
                part = bytes(buf)
                del buf
            yield part
            if len(part) < size:
                return
            del part
    buf = bytearray()
    for piece in source:
        buf += piece
        while len(buf) >= size:
            yield bytes(memoryview(buf)[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def known_size(source: Source) -> int | None:
    """Bytes left in a seekable file source, or None when that cannot be known up front."""
    fileno = getattr(source, "fileno", None)
    tell = getattr(source, "tell", None)
    if fileno is not None and tell is not None:
        try:
            return os.fstat(fileno()).st_size - int(tell())
        except (OSError, ValueError, io.UnsupportedOperation):
            return None
    return None


def _chain(holder: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield holder.pop()
    yield from rest


def upload_file(
    transport: AnaplanTransport,
    model_path: str,
    file_id: str,
    source: Source,
    *,
    chunk_size_mb: int,
    header_check: tuple[ImportMetadata, str] | None = None,
    compress_level: int = 1,
) -> UploadResult:
    """Stream ``source`` to file ``file_id``: one PUT below 1 MB, else gzip chunks + ``/complete``.

    ``header_check`` = (import metadata, import name): the first line must equal ``headerNames``.
    """
    mb = chunk_size_mb
    if not 1 <= mb <= 50:
        raise ValueError(f"chunk size must be 1-50 MB, got {mb}")
    size = mb * MB
    obj = f"file {file_id}"
    known = known_size(source)
    if known is not None and -(-known // size) > MAX_CHUNKS:
        raise AnaplanFileTooLarge(
            f"upload {obj}: {known} bytes need {-(-known // size)} chunks of {mb} MB; Anaplan accepts at most "
            f"{MAX_CHUNKS} chunks per file (raise anaplan.chunk_size_mb, at most 50)"
        )
    pieces = rechunk(source, size)
    first = next(pieces, b"")
    if header_check is not None:
        meta, import_name = header_check
        check_header(first.split(b"\n", 1)[0], meta, import_name)
    base = f"{model_path}/files/{file_id}"
    if len(first) < size and len(first) < SINGLE_SHOT_LIMIT:
        transport.send(
            "PUT",
            base,
            call=f"PUT {base}",
            obj=obj,
            expected=(200, 204),
            data=first,
            headers={"Content-Type": "application/octet-stream"},
        )
        return UploadResult(
            file_id=file_id, chunks=1, bytes_read=len(first), bytes_sent=len(first), single_shot=True
        )
    body = transport.json("POST", base, call=f"POST {base}", obj=obj, json_body={"chunkCount": -1})
    raw_meta = body.get("file")
    file_meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {"id": file_id}
    count = read = sent = 0
    holder = [first]
    del first  # the chain below owns the first chunk now; keep one chunk alive at a time
    for index, chunk in enumerate(_chain(holder, pieces)):
        if index >= MAX_CHUNKS:
            raise AnaplanFileTooLarge(
                f"upload {obj}: more than {MAX_CHUNKS} chunks of {mb} MB; Anaplan accepts at most {MAX_CHUNKS} "
                f"chunks per file (raise anaplan.chunk_size_mb, at most 50); the upload was not completed"
            )
        packed = gzip.compress(chunk, compresslevel=compress_level, mtime=0)
        path = f"{base}/chunks/{index}"
        transport.send(
            "PUT",
            path,
            call=f"PUT {path}",
            obj=f"{obj} chunk {index}",
            expected=(200, 204),
            data=packed,
            headers={"Content-Type": "application/x-gzip"},
        )
        count, read, sent = count + 1, read + len(chunk), sent + len(packed)
        del packed, chunk
    complete = {**file_meta, "id": file_id, "chunkCount": count}
    transport.json("POST", f"{base}/complete", call=f"POST {base}/complete", obj=obj, json_body=complete)
    return UploadResult(file_id=file_id, chunks=count, bytes_read=read, bytes_sent=sent, single_shot=False)


def download_chunks(transport: AnaplanTransport, base: str, writer: Writer, obj: str) -> int:
    """Every chunk under ``base`` (a file, a dump) written to ``writer`` in order; returns the bytes written."""
    call = f"GET {base}/chunks"
    rows = transport.pages(f"{base}/chunks", "chunks", call=call, obj=obj)
    chunks = [transport.parse(Chunk, r, call, obj) for r in rows]
    total = 0
    for chunk in chunks:
        path = f"{base}/chunks/{chunk.id}"
        resp = transport.send(
            "GET",
            path,
            call=f"GET {path}",
            obj=f"{obj} chunk {chunk.id}",
            headers={"Accept": "application/octet-stream"},
        )
        writer.write(resp.content)
        total += len(resp.content)
    return total

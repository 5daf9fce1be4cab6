"""The Anaplan Integration API v2 client: metadata, chunked upload, tasks, downloads, list members.

Every call goes through :meth:`AnaplanClient._send`, which

* takes a token from the :class:`~d365_anaplan.anaplan.auth.TokenManager` (re-authenticating once on 401),
* waits on the client-side :class:`~d365_anaplan.anaplan.limits.RateLimiter`,
* retries 429 (``Retry-After`` honoured, else exponential backoff with jitter), 5xx and connection errors
  a bounded number of times with tenacity (injectable ``sleep``),
* maps what is left to the named errors of :mod:`d365_anaplan.errors`, naming the call, the object and
  what Anaplan said (never a token).

Sources and sinks are plain: uploads read an ``Iterable[bytes]`` or a binary file-like object, downloads
write to anything with ``.write(bytes)`` (an open file, ``io.BytesIO``, ``staging.S3StreamWriter``).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, Literal, Protocol, TypeVar

import requests
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from d365_anaplan.anaplan.auth import (
    Authenticator,
    BasicAuthenticator,
    CertificateAuthenticator,
    DeviceGrantAuthenticator,
    TokenManager,
    http_timeout_of,
)
from d365_anaplan.anaplan.limits import RateLimiter, backoff_with_jitter, next_poll_wait
from d365_anaplan.anaplan.models import (
    TERMINAL_STATES,
    Chunk,
    ExportInfo,
    FileInfo,
    ImportInfo,
    ImportMetadata,
    ListInfo,
    ListItem,
    ModelInfo,
    ModelStatus,
    Named,
    Outcome,
    ProcessInfo,
    RowCounts,
    Task,
    TaskResult,
    Workspace,
)
from d365_anaplan.anaplan.tokens import InMemoryTokenCache, TokenCache, cache_key
from d365_anaplan.config import (
    AnaplanSettings,
    BasicAuth,
    CertificateAuth,
    ConnectionConfig,
    DeviceAuth,
    Secret,
)
from d365_anaplan.errors import (
    AnaplanAuthError,
    AnaplanError,
    AnaplanFileTooLarge,
    AnaplanHeaderMismatch,
    AnaplanModelArchived,
    AnaplanModelBusy,
    AnaplanModelLocked,
    AnaplanNotFound,
    AnaplanPollTimeout,
    AnaplanThrottled,
    AnaplanUnavailable,
    ConnectorError,
)
from d365_anaplan.http import parse_retry_after, restrict_to, session_for
from d365_anaplan.secrets import SecretResolver

log = logging.getLogger(__name__)

Kind = Literal["imports", "exports", "processes", "actions"]
Source = Iterable[bytes] | BinaryIO
MB = 1_000_000
MAX_CHUNKS = 1000
SINGLE_SHOT_LIMIT = 1 * MB
MIN_POLL_SECONDS = 5.0
T = TypeVar("T", bound=Named)
M = TypeVar("M", bound=BaseModel)

_PROCESS_TOKEN_CACHE = InMemoryTokenCache()  # shared by every client of this process (one Lambda container)


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


class TaskCheck(BaseModel):
    """One poll of a task, shaped for a Step Functions poll loop."""

    model_config = ConfigDict(frozen=True)

    kind: str
    action_id: str
    task_id: str
    state: str
    terminal: bool
    outcome: Outcome | None = None
    next_wait_seconds: int
    failure_dump_available: bool = False
    counts: RowCounts = RowCounts()
    failed_nested: list[str] = []  # object ids of failing process steps
    dump_object_ids: list[str] = []  # process steps with a failure dump
    message: str = ""


def row_counts(result: TaskResult | None) -> RowCounts:
    """Sum the ``hierarchyRowsProcessed`` details of a result (and of nested results)."""
    if result is None:
        return RowCounts()
    names = {
        "total": "totalRowCount",
        "success": "successRowCount",
        "created": "successCreateCount",
        "updated": "successUpdateCount",
        "warnings": "warningsRowCount",
        "failed": "failedCount",
        "ignored": "ignoredCount",
        "invalid": "invalidCount",
    }
    sums = dict.fromkeys(names, 0)
    stack = [result]
    while stack:
        current = stack.pop()
        stack.extend(current.nested_results)
        for detail in current.details:
            if detail.type != "hierarchyRowsProcessed":
                continue
            pairs = detail.pairs()
            for ours, theirs in names.items():
                try:
                    sums[ours] += int(pairs.get(theirs, "0"))
                except ValueError:
                    continue
    return RowCounts(**sums)


def classify(task: Task) -> Outcome | None:
    """success / success with warnings / failed / cancelled, or None while the task is not terminal."""
    if task.task_state == "CANCELLED":
        return Outcome.CANCELLED
    if task.task_state != "COMPLETE":
        return None
    result = task.result
    if result is None or not result.successful:
        return Outcome.FAILED
    if any(not n.successful for n in result.nested_results):
        return Outcome.FAILED
    counts = row_counts(result)
    dump = result.failure_dump_available or any(n.failure_dump_available for n in result.nested_results)
    if dump or counts.warnings or counts.failed or counts.ignored or counts.invalid:
        return Outcome.SUCCESS_WITH_WARNINGS
    return Outcome.SUCCESS


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


def _rechunk(source: Source, size: int) -> Iterator[bytes]:
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


def _known_size(source: Source) -> int | None:
    fileno = getattr(source, "fileno", None)
    tell = getattr(source, "tell", None)
    if fileno is not None and tell is not None:
        try:
            return os.fstat(fileno()).st_size - int(tell())
        except (OSError, ValueError, io.UnsupportedOperation):
            return None
    return None


class _Retryable(Exception):
    def __init__(
        self, status: int | None, said: str, retry_after: float | None = None, *, retry: bool = True
    ) -> None:
        super().__init__(said)
        self.status = status
        self.said = said
        self.retry_after = retry_after
        self.retry = retry


def anaplan_said(resp: requests.Response) -> str:
    """What Anaplan said in an error answer (status message of either envelope), shortened."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return text[:300] if text else (resp.reason or "")
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])[:300]
        for key in ("statusMessage", "error_description", "message", "error"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


class AnaplanClient:
    """Integration API v2 client for one connection (one workspace + model)."""

    def __init__(
        self,
        settings: AnaplanSettings,
        authenticator: Authenticator,
        *,
        session: requests.Session,
        token_cache: TokenCache | None = None,
        connection: str = "default",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        max_retry_after: float = 120.0,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
        compress_level: int = 1,
    ) -> None:
        self.settings = settings
        self.api_url = settings.api_url.rstrip("/")
        self.workspace_id = settings.workspace_id
        self.model_id = settings.model_id
        self.session = session
        self.sleep = sleep
        self.clock = clock
        self.monotonic = monotonic
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.max_retry_after = max_retry_after
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.compress_level = compress_level
        self.limiter = limiter or RateLimiter(settings.requests_per_minute, clock=monotonic, sleep=sleep)
        cache = token_cache if token_cache is not None else _PROCESS_TOKEN_CACHE
        self.tokens = TokenManager(
            authenticator,
            session,
            cache,
            cache_key(connection, settings.auth_url, authenticator.principal),
            clock=clock,
            sleep=sleep,
            http_timeout_s=http_timeout_of(session, settings.timeout_seconds),
        )
        self.requests_made = 0
        self.retries = 0
        self._catalog: dict[str, list[dict[str, Any]]] = {}
        self._last_poll: dict[str, float] = {}

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cfg: ConnectionConfig,
        *,
        resolver: SecretResolver | None = None,
        token_cache: TokenCache | None = None,
        session: requests.Session | None = None,
        **kwargs: Any,
    ) -> AnaplanClient:
        """Build a client from a connection configuration (secrets resolved through ``resolver``)."""
        resolver = resolver or SecretResolver()
        if session is not None:
            restrict_to(session, cfg)
        session = session or session_for(cfg, cfg.anaplan.timeout_seconds)
        authenticator = build_authenticator(cfg.anaplan, resolver)
        return cls(
            cfg.anaplan,
            authenticator,
            session=session,
            token_cache=token_cache,
            connection=cfg.name,
            **kwargs,
        )

    @property
    def model_path(self) -> str:
        return f"/workspaces/{self.workspace_id}/models/{self.model_id}"

    # --- request core ----------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        return backoff_with_jitter(state.attempt_number, base=self.backoff_base, rng=self.rng)

    def _send(
        self,
        method: str,
        path: str,
        *,
        call: str,
        obj: str,
        expected: tuple[int, ...] = (200,),
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        """One API call with auth, limiting, bounded retries and error mapping.

        A non-idempotent call (starting a task) is repeated only when Anaplan surely did not act on it:
        429, 503, or a connection that was never established.
        """
        url = path if path.startswith("https://") else self.api_url + path

        def attempt() -> requests.Response:
            reauthenticated = False
            while True:
                self.limiter.acquire()
                token = self.tokens.token()
                h = {"Authorization": f"AnaplanAuthToken {token}", **(headers or {})}
                if json_body is not None:
                    h.setdefault("Content-Type", "application/json")
                self.requests_made += 1
                try:
                    resp = self.session.request(
                        method, url, json=json_body, data=data, headers=h, params=params
                    )
                except (requests.ConnectionError, requests.Timeout) as exc:
                    safe = idempotent or isinstance(exc, requests.ConnectTimeout)
                    self.retries += int(safe)
                    raise _Retryable(None, f"connection error ({type(exc).__name__})", retry=safe) from None
                if resp.status_code == 401 and not reauthenticated:
                    reauthenticated = True
                    self.tokens.invalidate(token)
                    continue
                if resp.status_code == 429:
                    self.retries += 1
                    raise _Retryable(
                        429, anaplan_said(resp), parse_retry_after(resp.headers.get("Retry-After"))
                    )
                if resp.status_code >= 500:
                    safe = idempotent or resp.status_code == 503
                    self.retries += int(safe)
                    raise _Retryable(resp.status_code, anaplan_said(resp), retry=safe)
                return resp

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable) and exc.retry),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            resp = retrying(attempt)
        except _Retryable as exc:
            where = f"{call} ({obj})"
            if exc.status == 429:
                raise AnaplanThrottled(
                    f"{where}: HTTP 429 after {self.max_attempts} attempts; Anaplan said: {exc.said}"
                ) from None
            status = f"HTTP {exc.status}" if exc.status else "no answer"
            if not exc.retry:
                raise AnaplanUnavailable(
                    f"{where}: {status}; not repeated because Anaplan may have acted on it; Anaplan said: {exc.said}"
                ) from None
            raise AnaplanUnavailable(
                f"{where}: {status} after {self.max_attempts} attempts; Anaplan said: {exc.said}"
            ) from None
        if resp.status_code not in expected:
            raise self._error(resp, call, obj)
        return resp

    @staticmethod
    def _error(resp: requests.Response, call: str, obj: str) -> ConnectorError:
        message = f"{call} ({obj}): HTTP {resp.status_code}; Anaplan said: {anaplan_said(resp)}"
        status = resp.status_code
        if status == 409:
            return AnaplanModelBusy(message)
        if status == 423:
            return AnaplanModelLocked(message)
        if status == 422:
            return AnaplanModelArchived(message)
        if status == 404:
            return AnaplanNotFound(message)
        if status in (401, 403):
            return AnaplanAuthError(message)
        return AnaplanError(message)

    def _json(self, method: str, path: str, *, call: str, obj: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._send(method, path, call=call, obj=obj, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            raise AnaplanError(
                f"{call} ({obj}): HTTP {resp.status_code} with a body that is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise AnaplanError(f"{call} ({obj}): expected a JSON object")
        return body

    def _parse(self, model: type[M], data: Any, call: str, obj: str) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"])
            raise AnaplanError(
                f"{call} ({obj}): unexpected answer, field {field!r}: {first['msg']}"
            ) from None

    def _pages(
        self, path: str, key: str, *, call: str, obj: str, params: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset, limit = 0, 5000
        while True:
            body = self._json(
                "GET",
                path,
                call=call,
                obj=obj,
                params={**(params or {}), "offset": str(offset), "limit": str(limit)},
            )
            page = body.get(key) or []
            if not isinstance(page, list):
                raise AnaplanError(f"{call} ({obj}): {key!r} is not a list")
            items.extend(page)
            paging = (body.get("meta") or {}).get("paging") or {}
            total = paging.get("totalSize")
            if not page or total is None or len(items) >= int(total) or len(page) < limit:
                return items
            offset += len(page)

    # --- metadata --------------------------------------------------------------------------------

    def workspaces(self) -> list[Workspace]:
        call = "GET /workspaces"
        return [
            self._parse(Workspace, w, call, "workspaces")
            for w in self._pages("/workspaces", "workspaces", call=call, obj="workspaces")
        ]

    def models(self, workspace_id: str | None = None) -> list[ModelInfo]:
        ws = workspace_id or self.workspace_id
        call = f"GET /workspaces/{ws}/models"
        rows = self._pages(f"/workspaces/{ws}/models", "models", call=call, obj=f"workspace {ws}")
        return [self._parse(ModelInfo, m, call, f"workspace {ws}") for m in rows]

    def find_workspace(self, name_or_id: str) -> Workspace:
        for ws in self.workspaces():
            if name_or_id in (ws.id, ws.name):
                return ws
        raise AnaplanNotFound(f"GET /workspaces: no workspace named {name_or_id!r}")

    def find_model(self, name_or_id: str, workspace_id: str | None = None) -> ModelInfo:
        for model in self.models(workspace_id):
            if name_or_id in (model.id, model.name):
                return model
        raise AnaplanNotFound(
            f"GET /workspaces/{workspace_id or self.workspace_id}/models: no model named {name_or_id!r}"
        )

    def _catalogue(self, collection: str) -> list[dict[str, Any]]:
        if collection not in self._catalog:
            path = f"{self.model_path}/{collection}"
            self._catalog[collection] = self._pages(
                path, collection, call=f"GET {path}", obj=f"model {self.model_id}"
            )
        return self._catalog[collection]

    def _find(self, collection: str, model: type[T], name_or_id: str, what: str) -> T:
        rows = self._catalogue(collection)
        for row in rows:
            if row.get("name") == name_or_id or row.get("id") == name_or_id:
                return self._parse(
                    model, row, f"GET {self.model_path}/{collection}", f"{what} {name_or_id!r}"
                )
        names = sorted(str(r.get("name")) for r in rows)
        raise AnaplanNotFound(
            f"GET {self.model_path}/{collection}: no {what} named {name_or_id!r} in model {self.model_id} (have {names[:20]})"
        )

    def find_import(self, name_or_id: str) -> ImportInfo:
        return self._find("imports", ImportInfo, name_or_id, "import")

    def find_export(self, name_or_id: str) -> ExportInfo:
        return self._find("exports", ExportInfo, name_or_id, "export")

    def find_process(self, name_or_id: str) -> ProcessInfo:
        return self._find("processes", ProcessInfo, name_or_id, "process")

    def find_file(self, name_or_id: str) -> FileInfo:
        return self._find("files", FileInfo, name_or_id, "file")

    def find_list(self, name_or_id: str) -> ListInfo:
        return self._find("lists", ListInfo, name_or_id, "list")

    def import_metadata(self, import_id: str) -> ImportMetadata:
        path = f"{self.model_path}/imports/{import_id}"
        call = f"GET {path}"
        body = self._json("GET", path, call=call, obj=f"import {import_id}")
        return self._parse(ImportMetadata, body.get("importMetadata") or {}, call, f"import {import_id}")

    def model_status(self) -> ModelStatus:
        """What the model is doing now (check before retrying a busy model aggressively)."""
        path = f"/models/{self.model_id}/status"  # the described (and live-confirmed) model-direct form
        body = self._json("GET", path, call=f"GET {path}", obj=f"model {self.model_id}")
        return self._parse(
            ModelStatus, body.get("requestStatus") or {}, f"GET {path}", f"model {self.model_id}"
        )

    def list_items(self, list_name_or_id: str) -> list[ListItem]:
        """Members of a list (transactional API), resolved by list name."""
        lst = self.find_list(list_name_or_id)
        path = f"{self.model_path}/lists/{lst.id}/items"
        call = f"GET {path}"
        rows = self._pages(
            path, "listItems", call=call, obj=f"list {lst.name!r}", params={"includeAll": "true"}
        )
        return [self._parse(ListItem, r, call, f"list {lst.name!r}") for r in rows]

    # --- upload ----------------------------------------------------------------------------------

    def upload_file(
        self,
        file_id: str,
        source: Source,
        *,
        chunk_size_mb: int | None = None,
        header_check: tuple[ImportMetadata, str] | None = None,
    ) -> UploadResult:
        """Stream ``source`` to file ``file_id``: one PUT below 1 MB, else gzip chunks + ``/complete``.

        ``header_check`` = (import metadata, import name): the first line must equal ``headerNames``.
        """
        mb = chunk_size_mb if chunk_size_mb is not None else self.settings.chunk_size_mb
        if not 1 <= mb <= 50:
            raise ValueError(f"chunk size must be 1-50 MB, got {mb}")
        size = mb * MB
        obj = f"file {file_id}"
        known = _known_size(source)
        if known is not None and -(-known // size) > MAX_CHUNKS:
            raise AnaplanFileTooLarge(
                f"upload {obj}: {known} bytes need {-(-known // size)} chunks of {mb} MB; Anaplan accepts at most "
                f"{MAX_CHUNKS} chunks per file (raise anaplan.chunk_size_mb, at most 50)"
            )
        pieces = _rechunk(source, size)
        first = next(pieces, b"")
        if header_check is not None:
            meta, import_name = header_check
            check_header(first.split(b"\n", 1)[0], meta, import_name)
        base = f"{self.model_path}/files/{file_id}"
        if len(first) < size and len(first) < SINGLE_SHOT_LIMIT:
            self._send(
                "PUT", base, call=f"PUT {base}", obj=obj, expected=(200, 204),
                data=first, headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
            return UploadResult(
                file_id=file_id, chunks=1, bytes_read=len(first), bytes_sent=len(first), single_shot=True
            )
        body = self._json("POST", base, call=f"POST {base}", obj=obj, json_body={"chunkCount": -1})
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
            packed = gzip.compress(chunk, compresslevel=self.compress_level, mtime=0)
            path = f"{base}/chunks/{index}"
            self._send(
                "PUT", path, call=f"PUT {path}", obj=f"{obj} chunk {index}", expected=(200, 204),
                data=packed, headers={"Content-Type": "application/x-gzip"},
            )  # fmt: skip
            count, read, sent = count + 1, read + len(chunk), sent + len(packed)
            del packed, chunk
        complete = {**file_meta, "id": file_id, "chunkCount": count}
        self._json("POST", f"{base}/complete", call=f"POST {base}/complete", obj=obj, json_body=complete)
        return UploadResult(
            file_id=file_id, chunks=count, bytes_read=read, bytes_sent=sent, single_shot=False
        )

    def upload_for_import(
        self, import_name: str, source: Source, *, chunk_size_mb: int | None = None
    ) -> UploadResult:
        """Resolve the import, check the header against its metadata, upload to its data-source file."""
        imp = self.find_import(import_name)
        if not imp.import_data_source_id:
            raise AnaplanError(
                f"GET {self.model_path}/imports ({imp.name!r}): the import has no importDataSourceId"
            )
        meta = self.import_metadata(imp.id)
        return self.upload_file(
            imp.import_data_source_id, source, chunk_size_mb=chunk_size_mb, header_check=(meta, imp.name)
        )

    # --- tasks -----------------------------------------------------------------------------------

    def start_task(
        self, kind: Kind, action_id: str, *, mapping_parameters: list[dict[str, str]] | None = None
    ) -> str:
        """``POST …/{kind}/{id}/tasks`` with ``localeName`` (then optional ``mappingParameters``)."""
        path = f"{self.model_path}/{kind}/{action_id}/tasks"
        body: dict[str, Any] = {"localeName": self.settings.locale}
        if mapping_parameters:
            body["mappingParameters"] = mapping_parameters
        call = f"POST {path}"
        answer = self._json(
            "POST", path, call=call, obj=f"{kind[:-1]} {action_id}", json_body=body, idempotent=False
        )
        raw = answer.get("task") if isinstance(answer.get("task"), dict) else answer
        task_id = raw.get("taskId") if isinstance(raw, dict) else None
        if not task_id:
            raise AnaplanError(f"{call} ({kind[:-1]} {action_id}): the answer has no taskId")
        return str(task_id)

    def start_import(
        self, name_or_id: str, *, mapping_parameters: list[dict[str, str]] | None = None
    ) -> tuple[str, str]:
        """Start an import by name; returns (import id, task id)."""
        imp = self.find_import(name_or_id)
        return imp.id, self.start_task("imports", imp.id, mapping_parameters=mapping_parameters)

    def start_export(self, name_or_id: str) -> tuple[str, str]:
        exp = self.find_export(name_or_id)
        return exp.id, self.start_task("exports", exp.id)

    def start_process(
        self, name_or_id: str, *, mapping_parameters: list[dict[str, str]] | None = None
    ) -> tuple[str, str]:
        proc = self.find_process(name_or_id)
        return proc.id, self.start_task("processes", proc.id, mapping_parameters=mapping_parameters)

    def get_task(self, kind: Kind, action_id: str, task_id: str) -> Task:
        path = f"{self.model_path}/{kind}/{action_id}/tasks/{task_id}"
        call = f"GET {path}"
        body = self._json("GET", path, call=call, obj=f"{kind[:-1]} {action_id} task {task_id}")
        return self._parse(Task, body.get("task") or {}, call, f"task {task_id}")

    def check_task(
        self, kind: Kind, action_id: str, task_id: str, *, elapsed_seconds: float = 0.0
    ) -> TaskCheck:
        """Poll once (for a Step Functions Wait/Choice loop); ``next_wait_seconds`` is at least 5."""
        key = f"{kind}/{action_id}/{task_id}"
        last = self._last_poll.get(key)
        if last is not None:
            gap = self.monotonic() - last
            if gap < MIN_POLL_SECONDS:
                self.sleep(MIN_POLL_SECONDS - gap)
        task = self.get_task(kind, action_id, task_id)
        self._last_poll[key] = self.monotonic()
        return self._task_check(kind, action_id, task, elapsed_seconds)

    @staticmethod
    def _task_check(kind: str, action_id: str, task: Task, elapsed_seconds: float) -> TaskCheck:
        outcome = classify(task)
        result = task.result
        nested = result.nested_results if result else []
        messages = [
            d.local_message_text.strip() for d in (result.details if result else []) if d.local_message_text
        ]
        return TaskCheck(
            kind=kind,
            action_id=action_id,
            task_id=task.task_id,
            state=task.task_state,
            terminal=task.task_state in TERMINAL_STATES,
            outcome=outcome,
            next_wait_seconds=next_poll_wait(elapsed_seconds),
            failure_dump_available=bool(result and result.failure_dump_available),
            counts=row_counts(result),
            failed_nested=[n.object_id or "?" for n in nested if not n.successful],
            dump_object_ids=[n.object_id for n in nested if n.failure_dump_available and n.object_id],
            message="; ".join(messages)[:1000],
        )

    def wait_for_task(
        self, kind: Kind, action_id: str, task_id: str, *, timeout_s: float = 3600.0
    ) -> TaskCheck:
        """Poll until COMPLETE or CANCELLED (local use; in AWS the state machine loops over check_task)."""
        start = self.monotonic()
        while True:
            elapsed = self.monotonic() - start
            check = self.check_task(kind, action_id, task_id, elapsed_seconds=elapsed)
            if check.terminal:
                return check
            if elapsed + check.next_wait_seconds > timeout_s:
                raise AnaplanPollTimeout(
                    f"{kind[:-1]} {action_id} task {task_id}: still {check.state} after {int(elapsed)} s"
                )
            self.sleep(check.next_wait_seconds)

    def cancel_task(self, kind: Kind, action_id: str, task_id: str) -> Task | None:
        """``DELETE`` on the task URL; returns the task state Anaplan reports, if any."""
        path = f"{self.model_path}/{kind}/{action_id}/tasks/{task_id}"
        resp = self._send(
            "DELETE", path, call=f"DELETE {path}", obj=f"task {task_id}", expected=(200, 202, 204)
        )
        try:
            body = resp.json()
        except ValueError:
            return None
        raw = body.get("task") if isinstance(body, dict) else None
        return Task.model_validate(raw) if isinstance(raw, dict) else None

    # --- downloads -------------------------------------------------------------------------------

    def _download_chunks(self, base: str, writer: Writer, obj: str) -> int:
        call = f"GET {base}/chunks"
        rows = self._pages(f"{base}/chunks", "chunks", call=call, obj=obj)
        chunks = [self._parse(Chunk, r, call, obj) for r in rows]
        total = 0
        for chunk in chunks:
            path = f"{base}/chunks/{chunk.id}"
            resp = self._send(
                "GET",
                path,
                call=f"GET {path}",
                obj=f"{obj} chunk {chunk.id}",
                headers={"Accept": "application/octet-stream"},
            )
            writer.write(resp.content)
            total += len(resp.content)
        return total

    def download_file(self, file_id: str, writer: Writer) -> int:
        """Download a file (e.g. an export's output: its file id is the export id) chunk by chunk."""
        return self._download_chunks(f"{self.model_path}/files/{file_id}", writer, f"file {file_id}")

    def download_dump(self, import_id: str, task_id: str, writer: Writer) -> int:
        """An import's failure dump (CSV with ``_Status_``, ``_Line_``, ``_Error_1_``) in chunks."""
        base = f"{self.model_path}/imports/{import_id}/tasks/{task_id}/dump"
        return self._download_chunks(base, writer, f"import {import_id} task {task_id} dump")

    def download_process_dump(self, process_id: str, task_id: str, object_id: str, writer: Writer) -> int:
        """The failure dump of one step (``object_id`` from ``nestedResults``) of a process task."""
        base = f"{self.model_path}/processes/{process_id}/tasks/{task_id}/dumps/{object_id}"
        return self._download_chunks(
            base, writer, f"process {process_id} task {task_id} step {object_id} dump"
        )

    def run_export(self, name_or_id: str, writer: Writer, *, timeout_s: float = 3600.0) -> TaskCheck:
        """Start an export, wait for it and stream its file to ``writer`` (local use)."""
        export_id, task_id = self.start_export(name_or_id)
        check = self.wait_for_task("exports", export_id, task_id, timeout_s=timeout_s)
        if check.outcome not in (Outcome.SUCCESS, Outcome.SUCCESS_WITH_WARNINGS):
            from d365_anaplan.errors import AnaplanTaskFailed

            raise AnaplanTaskFailed(f"export {name_or_id!r} task {task_id}: {check.outcome}; {check.message}")
        self.download_file(export_id, writer)
        return check


def _chain(holder: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield holder.pop()
    yield from rest


class SecretRefreshTokenStore:
    """The device grant's refresh token behind a :class:`Secret` (Secrets Manager in AWS, a file locally)."""

    def __init__(self, resolver: SecretResolver, secret: Secret) -> None:
        self.resolver = resolver
        self.secret = secret

    def load(self) -> str:
        return self.resolver.resolve(self.secret, force_fetch=True).strip()

    def save(self, value: str) -> None:
        self.resolver.store(self.secret, value)


def build_authenticator(settings: AnaplanSettings, resolver: SecretResolver) -> Authenticator:
    """The authenticator for ``settings.auth`` (Basic, certificate, or device-grant refresh token)."""
    auth = settings.auth
    if isinstance(auth, BasicAuth):
        return BasicAuthenticator(settings.auth_url, auth.username, resolver.resolve(auth.password))
    if isinstance(auth, CertificateAuth):
        return CertificateAuthenticator(
            settings.auth_url,
            resolver.resolve(auth.cert_pem),
            resolver.resolve(auth.key_pem),
            payload=auth.payload,
        )
    if isinstance(auth, DeviceAuth):
        if auth.refresh_token is None:
            raise AnaplanAuthError(
                "anaplan.auth.refresh_token: not set; run 'd365-anaplan anaplan-login --config FILE' once to store one"
            )
        return DeviceGrantAuthenticator(
            settings.oauth_url, auth.client_id, SecretRefreshTokenStore(resolver, auth.refresh_token)
        )
    raise AnaplanAuthError(f"anaplan.auth.mode: unsupported {auth!r}")

"""The Anaplan Integration API v2 client for one connection: a thin facade over the transport, the task calls
and the file transfer, plus metadata and list members.

* :mod:`.transport` — send (auth, limiter, retries, status -> named error), parse, pages;
* :mod:`.tasks` — start, poll, wait, cancel; what a task result means;
* :mod:`.upload` — streamed uploads, header check, chunked downloads;
* :mod:`.auth` — authenticators and :func:`~.auth.build_authenticator` (the wiring from the configuration).
"""

from __future__ import annotations

from typing import Any, TypeVar, Unpack

import requests

from d365_anaplan.anaplan.auth import SecretRefreshTokenStore, build_authenticator
from d365_anaplan.anaplan.authenticators import Authenticator
from d365_anaplan.anaplan.limits import RateLimiter
from d365_anaplan.anaplan.models import (
    ExportInfo,
    FileInfo,
    FiscalYear,
    ImportInfo,
    ImportMetadata,
    ListInfo,
    ListItem,
    ModelInfo,
    ModelStatus,
    Named,
    Outcome,
    ProcessInfo,
    Task,
    Workspace,
)
from d365_anaplan.anaplan.tasks import Kind, TaskCheck, Tasks, classify, row_counts
from d365_anaplan.anaplan.token_manager import TokenManager
from d365_anaplan.anaplan.tokens import TokenCache
from d365_anaplan.anaplan.transport import AnaplanTransport, TransportOptions
from d365_anaplan.anaplan.upload import (
    SINGLE_SHOT_LIMIT,
    Source,
    UploadResult,
    Writer,
    check_header,
    download_chunks,
    upload_file,
)
from d365_anaplan.config import AnaplanSettings, ConnectionConfig
from d365_anaplan.errors import AnaplanError, AnaplanNotFound, AnaplanTaskFailed
from d365_anaplan.http import restrict_to, session_for
from d365_anaplan.secrets import SecretResolver

T = TypeVar("T", bound=Named)


class AnaplanClient:
    """Integration API v2 client for one connection (one workspace + model)."""

    def __init__(
        self,
        settings: AnaplanSettings,
        authenticator: Authenticator,
        *,
        session: requests.Session,
        compress_level: int = 1,
        **options: Unpack[TransportOptions],
    ) -> None:
        self.settings = settings
        self.workspace_id = settings.workspace_id
        self.model_id = settings.model_id
        self.compress_level = compress_level
        self.transport = AnaplanTransport(settings, authenticator, session=session, **options)
        self.tasks = Tasks(
            self.transport,
            self.model_path,
            settings.locale,
            monotonic=self.transport.monotonic,
            sleep=self.transport.sleep,
        )
        self._catalog: dict[str, list[dict[str, Any]]] = {}

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

    # --- the transport's state, as before the split ------------------------------------------------

    @property
    def session(self) -> requests.Session:
        return self.transport.session

    @property
    def tokens(self) -> TokenManager:
        return self.transport.tokens

    @property
    def limiter(self) -> RateLimiter:
        return self.transport.limiter

    @property
    def retries(self) -> int:
        return self.transport.retries

    @property
    def requests_made(self) -> int:
        return self.transport.requests_made

    @requests_made.setter
    def requests_made(self, value: int) -> None:
        self.transport.requests_made = value

    # --- metadata --------------------------------------------------------------------------------

    def workspaces(self) -> list[Workspace]:
        call = "GET /workspaces"
        return [
            self.transport.parse(Workspace, w, call, "workspaces")
            for w in self.transport.pages("/workspaces", "workspaces", call=call, obj="workspaces")
        ]

    def models(self, workspace_id: str | None = None) -> list[ModelInfo]:
        ws = workspace_id or self.workspace_id
        call = f"GET /workspaces/{ws}/models"
        rows = self.transport.pages(f"/workspaces/{ws}/models", "models", call=call, obj=f"workspace {ws}")
        return [self.transport.parse(ModelInfo, m, call, f"workspace {ws}") for m in rows]

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

    def forget_catalogue(self) -> None:
        """Drop the cached imports/exports/processes/files/lists (the next lookup reads them again)."""
        self._catalog.clear()

    def _catalogue(self, collection: str) -> list[dict[str, Any]]:
        if collection not in self._catalog:
            path = f"{self.model_path}/{collection}"
            self._catalog[collection] = self.transport.pages(
                path, collection, call=f"GET {path}", obj=f"model {self.model_id}"
            )
        return self._catalog[collection]

    def _find(self, collection: str, model: type[T], name_or_id: str, what: str) -> T:
        rows = self._catalogue(collection)
        for row in rows:
            if row.get("name") == name_or_id or row.get("id") == name_or_id:
                return self.transport.parse(
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

    def import_catalogue(self) -> list[ImportInfo]:
        """Every import action of the model (``GET …/imports``)."""
        return self._parse_all("imports", ImportInfo)

    def export_catalogue(self) -> list[ExportInfo]:
        """Every export action of the model (``GET …/exports``)."""
        return self._parse_all("exports", ExportInfo)

    def list_catalogue(self) -> list[ListInfo]:
        """Every list of the model (``GET …/lists``)."""
        return self._parse_all("lists", ListInfo)

    def _parse_all(self, collection: str, model: type[T]) -> list[T]:
        call = f"GET {self.model_path}/{collection}"
        return [
            self.transport.parse(model, r, call, f"model {self.model_id}")
            for r in self._catalogue(collection)
        ]

    def import_metadata(self, import_id: str) -> ImportMetadata:
        path = f"{self.model_path}/imports/{import_id}"
        call = f"GET {path}"
        body = self.transport.json("GET", path, call=call, obj=f"import {import_id}")
        return self.transport.parse(
            ImportMetadata, body.get("importMetadata") or {}, call, f"import {import_id}"
        )

    def export_header_names(self, export_id: str) -> list[str]:
        """``GET …/exports/{id}``: ``exportMetadata.headerNames`` (anaplan-shapes.md §1); [] when not reported."""
        path = f"{self.model_path}/exports/{export_id}"
        body = self.transport.json("GET", path, call=f"GET {path}", obj=f"export {export_id}")
        meta = body.get("exportMetadata") or {}
        names = meta.get("headerNames") if isinstance(meta, dict) else None
        return [str(n) for n in names] if isinstance(names, list) else []

    def model_status(self) -> ModelStatus:
        """What the model is doing now (check before retrying a busy model aggressively)."""
        path = f"/models/{self.model_id}/status"  # the described (and live-confirmed) model-direct form
        body = self.transport.json("GET", path, call=f"GET {path}", obj=f"model {self.model_id}")
        return self.transport.parse(
            ModelStatus, body.get("requestStatus") or {}, f"GET {path}", f"model {self.model_id}"
        )

    def fiscal_year(self) -> FiscalYear | None:
        """``GET …/modelCalendar``: the model's current fiscal year; None when its calendar has none (Weeks:
        General). Needs the Workspace Administrator role: a 403 raises AnaplanAuthError."""
        path = f"{self.model_path}/modelCalendar"
        body = self.transport.json("GET", path, call=f"GET {path}", obj=f"model {self.model_id}")
        calendar = body.get("modelCalendar") or {}
        found = calendar.get("fiscalYear") if isinstance(calendar, dict) else None
        if not found:
            return None
        return self.transport.parse(FiscalYear, found, f"GET {path}", f"model {self.model_id}")

    def time_items(self, line_item: str) -> list[str] | None:
        """The model's period labels for ``line_item`` (its id, name, or ``Module.Line item``), in the model's
        order: the items of its Time dimension (``GET …/lineItems/{id}/dimensions/{dimId}/items``, which
        serves Time where the model-level dimension call answers 400; anaplan-shapes.md §3). None when the line
        item has no Time dimension. An unknown line item raises AnaplanNotFound; no read access to its module
        answers 404 (AnaplanNotFound) or 403 (AnaplanAuthError)."""
        path = f"{self.model_path}/lineItems"
        rows = self.transport.pages(path, "items", call=f"GET {path}", obj=f"model {self.model_id}")
        found = next((r for r in rows if line_item in (r.get("id"), r.get("name"),
                                                       f"{r.get('moduleName')}.{r.get('name')}")), None)  # fmt: skip
        if found is None:
            names = sorted(f"{r.get('moduleName')}.{r.get('name')}" for r in rows)
            raise AnaplanNotFound(
                f"GET {path}: no line item {line_item!r} in model {self.model_id} (have {names[:20]})"
            )
        item = self.transport.parse(Named, found, f"GET {path}", f"line item {line_item!r}")
        dims_path = f"{path}/{item.id}/dimensions"
        dims = self.transport.pages(
            dims_path, "dimensions", call=f"GET {dims_path}", obj=f"line item {item.name!r}"
        )
        time = next((d for d in dims if d.get("name") == "Time"), None)
        if time is None:
            return None
        items_path = f"{dims_path}/{time['id']}/items"
        got = self.transport.pages(
            items_path, "items", call=f"GET {items_path}", obj=f"line item {item.name!r}"
        )
        return [
            self.transport.parse(Named, r, f"GET {items_path}", f"line item {item.name!r}").name for r in got
        ]

    def list_items(self, list_name_or_id: str) -> list[ListItem]:
        """Members of a list (transactional API), resolved by list name."""
        lst = self.find_list(list_name_or_id)
        path = f"{self.model_path}/lists/{lst.id}/items"
        call = f"GET {path}"
        rows = self.transport.pages(
            path, "listItems", call=call, obj=f"list {lst.name!r}", params={"includeAll": "true"}
        )
        return [self.transport.parse(ListItem, r, call, f"list {lst.name!r}") for r in rows]

    # --- upload ----------------------------------------------------------------------------------

    def upload_file(
        self,
        file_id: str,
        source: Source,
        *,
        chunk_size_mb: int | None = None,
        header_check: tuple[ImportMetadata, str] | None = None,
    ) -> UploadResult:
        """Stream ``source`` to file ``file_id`` (see :func:`~.upload.upload_file`)."""
        return upload_file(
            self.transport,
            self.model_path,
            file_id,
            source,
            chunk_size_mb=chunk_size_mb if chunk_size_mb is not None else self.settings.chunk_size_mb,
            header_check=header_check,
            compress_level=self.compress_level,
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
        return self.tasks.start(kind, action_id, mapping_parameters=mapping_parameters)

    def list_tasks(self, kind: Kind, action_id: str) -> list[dict[str, Any]]:
        """The tasks Anaplan lists for an action, each with a ``taskId``."""
        return self.tasks.listed(kind, action_id)

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
        return self.tasks.get(kind, action_id, task_id)

    def check_task(
        self, kind: Kind, action_id: str, task_id: str, *, elapsed_seconds: float = 0.0
    ) -> TaskCheck:
        """Poll once (for a Step Functions Wait/Choice loop); ``next_wait_seconds`` is at least 5."""
        return self.tasks.check(kind, action_id, task_id, elapsed_seconds=elapsed_seconds)

    def wait_for_task(
        self, kind: Kind, action_id: str, task_id: str, *, timeout_s: float = 3600.0
    ) -> TaskCheck:
        """Poll until COMPLETE or CANCELLED (local use; in AWS the state machine loops over check_task)."""
        return self.tasks.wait(kind, action_id, task_id, timeout_s=timeout_s)

    def cancel_task(self, kind: Kind, action_id: str, task_id: str) -> Task | None:
        """``DELETE`` on the task URL; returns the task state Anaplan reports, if any."""
        return self.tasks.cancel(kind, action_id, task_id)

    # --- downloads -------------------------------------------------------------------------------

    def download_file(self, file_id: str, writer: Writer) -> int:
        """Download a file (e.g. an export's output: its file id is the export id) chunk by chunk."""
        return download_chunks(
            self.transport, f"{self.model_path}/files/{file_id}", writer, f"file {file_id}"
        )

    def download_dump(self, import_id: str, task_id: str, writer: Writer) -> int:
        """An import's failure dump (CSV with ``_Status_``, ``_Line_``, ``_Error_1_``) in chunks."""
        base = f"{self.model_path}/imports/{import_id}/tasks/{task_id}/dump"
        return download_chunks(self.transport, base, writer, f"import {import_id} task {task_id} dump")

    def download_process_dump(self, process_id: str, task_id: str, object_id: str, writer: Writer) -> int:
        """The failure dump of one step (``object_id`` from ``nestedResults``) of a process task."""
        base = f"{self.model_path}/processes/{process_id}/tasks/{task_id}/dumps/{object_id}"
        return download_chunks(
            self.transport, base, writer, f"process {process_id} task {task_id} step {object_id} dump"
        )

    def run_export(self, name_or_id: str, writer: Writer, *, timeout_s: float = 3600.0) -> TaskCheck:
        """Start an export, wait for it and stream its file to ``writer`` (local use)."""
        export_id, task_id = self.start_export(name_or_id)
        check = self.wait_for_task("exports", export_id, task_id, timeout_s=timeout_s)
        if check.outcome not in (Outcome.SUCCESS, Outcome.SUCCESS_WITH_WARNINGS):
            raise AnaplanTaskFailed(f"export {name_or_id!r} task {task_id}: {check.outcome}; {check.message}")
        self.download_file(export_id, writer)
        return check


__all__ = [
    "SINGLE_SHOT_LIMIT",
    "AnaplanClient",
    "SecretRefreshTokenStore",
    "TaskCheck",
    "UploadResult",
    "build_authenticator",
    "check_header",
    "classify",
    "row_counts",
]

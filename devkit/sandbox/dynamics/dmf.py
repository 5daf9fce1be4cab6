"""The sandbox's data-management package API and blob store (dynamics-fo.md §4.3, dynamics-budget-fiscal.md §F).

Actions on ``DataManagementDefinitionGroups`` (POST ``/data/DataManagementDefinitionGroups/
Microsoft.Dynamics.DataEntities.<Action>``), answers wrapped in ``value``:

* ``ExportToPackage`` (definitionGroupId, packageName, executionId, reExecute, legalEntityId): the data
  project must exist; the export runs as a batch job, so ``GetExecutionSummaryStatus`` answers NotRun, then
  Executing for ``polls`` calls, then Succeeded (or Failed with ``fail_next_export``); an execution id it
  never saw is Unknown. The package is a zip of ``Manifest.xml``, ``PackageHeader.xml`` and
  ``General journal account entry.csv`` (staging names in upper case, en-US dates) of the legal entity.
* ``GetExportedPackageUrl``: empty until the package exists, then a SAS URL on the blob host (another host
  than the environment) that expires after ``url_ttl`` seconds (``expire_next_urls`` hands out expired ones).
* ``GetExecutionErrors``: a JSON text of the error messages.
* ``GetAzureWriteUrl``: ``value`` is a JSON *text* of BlobId and a writable SAS BlobUrl (Put Blob needs
  ``x-ms-blob-type: BlockBlob``); ``ImportFromPackage`` (packageUrl, definitionGroupId, executionId, execute,
  overwrite, legalEntityId) runs like an export, then puts the package's "Budget account entries" rows into the
  budget register through the same checks as OData line creation (``fail_next_import`` fails it); rows refused
  make it PartiallySucceeded (or Failed when none landed), with their errors.

The blob host (:class:`BlobStore`) answers a GET with a valid, unexpired SAS with the blob; an expired SAS
is 403 ``AuthenticationFailed``, a wrong signature too; a request carrying an ``Authorization`` header is
counted in ``authorization_seen`` (a client must send the SAS only).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from devkit.sandbox.dynamics.entities import EntityDef
from devkit.sandbox.server import Request, Response

ACTION_SET = "DataManagementDefinitionGroups"
GL_ENTITY = "General journal account entry"
DEFAULT_EXPORT_PROJECT = "AnaplanGLExport"
BUDGET_ENTITY = "Budget account entries"
DEFAULT_IMPORT_PROJECT = "AnaplanBudgetImport"
_GL_COLUMNS = (
    "JournalNumber", "Voucher", "AccountingDate", "PostingLayer", "LedgerAccount", "AccountDisplayValue",
    "TransactionCurrencyCode", "TransactionCurrencyAmount", "AccountingCurrencyAmount", "ReportingCurrencyAmount",
    "Description", "PostingType", "JournalCategory", "IsCredit", "IsCorrection", "LedgerName", "DataArea",
    "GeneralJournalAccountEntryRecId", "FiscalCalendarPeriod",
)  # fmt: skip
_XML_NS = "http://schemas.datacontract.org/2004/07/Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization"

ENTITY_DEF = EntityDef(ACTION_SET, "DataManagementDefinitionGroup", ("DefinitionGroupId",),
                       {"DefinitionGroupId": "Edm.String", "Description": "Edm.String"})  # fmt: skip


def _value(payload: Any, status: int = 200) -> Response:
    body = json.dumps({"@odata.context": "$metadata#Edm.String", "value": payload}).encode()
    return Response(
        status, body, {"Content-Type": "application/json; odata.metadata=minimal", "OData-Version": "4.0"}
    )


def _error(status: int, message: str) -> Response:
    body = {"error": {"code": "", "message": "An error has occurred.",
                      "innererror": {"message": message, "type": "Microsoft.Dynamics.Ax.Xpp.ErrorException", "stacktrace": ""}}}  # fmt: skip
    return Response(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", "OData-Version": "4.0"}
    )


def _blob_error(status: int, code: str, message: str, detail: str = "") -> Response:
    xml = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\nRequestId:'
           f"{secrets.token_hex(8)}</Message>" + (f"<AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail>" if detail else "")
           + "</Error>")  # fmt: skip
    return Response(status, xml.encode(), {"Content-Type": "application/xml", "x-ms-error-code": code})


@dataclass
class Execution:
    execution_id: str
    project: str
    company: str
    kind: str  # "export" | "import"
    status: str = "NotRun"
    polls_left: int = 2
    fail: str | None = None
    blob: str = ""
    errors: list[str] = field(default_factory=list)
    imported: int = 0


class BlobStore:
    """Azure blob storage on its own host: SAS-signed GETs of named blobs."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.base_url = "https://localhost"
        self.blobs: dict[str, bytes] = {}
        self.counters: Counter[str] = Counter()
        self.authorization_seen = 0
        self._key = secrets.token_bytes(32)

    def bind(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    @property
    def authority(self) -> str:
        return self.base_url.split("://", 1)[1]

    def handles(self, req: Request) -> bool:
        return (req.header("host") or "").lower() == self.authority.lower()

    def _sign(self, path: str, expiry: str, permissions: str) -> str:
        return hmac.new(self._key, f"{path}\n{permissions}\n{expiry}".encode(), hashlib.sha256).hexdigest()

    def sas_url(self, name: str, ttl: float, permissions: str = "r") -> str:
        path = f"/dmf/{quote(name)}"
        expiry = datetime.fromtimestamp(self.clock() + ttl, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = urlencode({"sv": "2021-08-06", "sr": "b", "sp": permissions, "se": expiry,
                           "sig": self._sign(path, expiry, permissions)})  # fmt: skip
        return f"{self.base_url}{path}?{query}"

    def handle(self, req: Request) -> Response:
        self.counters[f"{req.method} blob"] += 1
        if req.header("authorization"):
            self.authorization_seen += 1
            return _blob_error(
                400,
                "InvalidAuthenticationInfo",
                "Authentication information is not given in the correct format.",
            )
        q = dict(req.query)
        expiry, permissions, sig = q.get("se", ""), q.get("sp", ""), q.get("sig", "")
        if not sig or not hmac.compare_digest(sig, self._sign(req.path, expiry, permissions)):
            return _blob_error(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.", "Signature did not match.")  # fmt: skip
        now = datetime.fromtimestamp(self.clock(), UTC)
        if datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) <= now:
            return _blob_error(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
                               f"Signed expiry time [{expiry}] has to be after current time [{now:%a, %d %b %Y %H:%M:%S GMT}]")  # fmt: skip
        name = unquote(req.path.removeprefix("/dmf/"))
        if req.method == "PUT" and "w" in permissions:
            if req.header("x-ms-blob-type") != "BlockBlob":
                return _blob_error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.", "x-ms-blob-type")  # fmt: skip
            self.blobs[name] = req.body
            self.counters["bytes stored"] += len(req.body)
            return Response(201, b"", {"ETag": f'"{hashlib.sha256(req.body).hexdigest()[:16]}"'})
        if req.method == "GET" and "r" in permissions:
            data = self.blobs.get(name)
            if data is None:
                return _blob_error(404, "BlobNotFound", "The specified blob does not exist.")
            self.counters["bytes served"] += len(data)
            return Response(
                200, data, {"Content-Type": "application/octet-stream", "x-ms-blob-type": "BlockBlob"}
            )
        return _blob_error(403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")  # fmt: skip


class PackageService:
    """The package actions of the sandbox environment (``gl_rows(company)`` gives the entity's rows)."""

    def __init__(
        self,
        gl_rows: Callable[[str], list[dict[str, Any]]],
        companies: list[str],
        blob: BlobStore,
        importer: Callable[[str, list[dict[str, str]]], list[str]],
    ) -> None:
        self.gl_rows = gl_rows
        self.importer = importer  # (company, rows keyed by column) -> one error text per refused row
        self.companies = {c.upper() for c in companies}
        self.blob = blob
        self.projects: dict[str, str] = {
            DEFAULT_EXPORT_PROJECT: GL_ENTITY,
            DEFAULT_IMPORT_PROJECT: BUDGET_ENTITY,
        }
        self.executions: dict[str, Execution] = {}
        self.polls = 2  # GetExecutionSummaryStatus calls answered Executing before the package exists
        self.url_ttl = 3600.0
        self.fail_next_export: str | None = None  # fault: the next export fails with this message
        self.fail_next_import: str | None = None  # fault: the next import fails with this message
        self.expire_next_urls = 0  # fault: the next n package URLs are already expired
        self.counters: Counter[str] = Counter()

    def action(self, action: str, body: dict[str, Any]) -> Response:
        self.counters[action] += 1
        handler = getattr(self, f"_{action}", None)
        if handler is None:
            return _error(404, f"The action '{action}' is not bound to '{ACTION_SET}'.")
        result: Response = handler(body)
        return result

    def _text(self, body: dict[str, Any], name: str) -> str:
        value = body.get(name)
        return value if isinstance(value, str) else ""

    def _job(self, body: dict[str, Any], *, again: bool = False) -> tuple[str, str, str] | Response:
        """(project, company, execution id) of a new job, or F&O's error."""
        project = self._text(body, "definitionGroupId")
        company = self._text(body, "legalEntityId").upper()
        execution_id = self._text(body, "executionId") or f"{project}-{secrets.token_hex(6)}"
        if project not in self.projects:
            return _error(500, f"Data project '{project}' was not found.")
        if company not in self.companies:
            return _error(500, f"Company '{company}' does not exist.")
        if execution_id in self.executions and not again:
            return _error(500, f"Execution '{execution_id}' already exists.")
        return project, company, execution_id

    def _ExportToPackage(self, body: dict[str, Any]) -> Response:
        job = self._job(body, again=bool(body.get("reExecute")))
        if isinstance(job, Response):
            return job
        project, company, execution_id = job
        fail, self.fail_next_export = self.fail_next_export, None
        self.executions[execution_id] = Execution(
            execution_id, project, company, "export", polls_left=self.polls, fail=fail
        )
        return _value(execution_id)

    def _GetExecutionSummaryStatus(self, body: dict[str, Any]) -> Response:
        ex = self.executions.get(self._text(body, "executionId"))
        if ex is None:
            return _value("Unknown")
        answer = ex.status
        if ex.status == "NotRun":
            ex.status = "Executing"
        elif ex.status == "Executing":
            ex.polls_left -= 1
            if ex.polls_left <= 0:
                self._finish(ex)
        return _value(answer)

    def _GetAzureWriteUrl(self, body: dict[str, Any]) -> Response:
        name = self._text(body, "uniqueFileName") or f"{secrets.token_hex(8)}.zip"
        blob_id = "{" + secrets.token_hex(16) + "}"
        url = self.blob.sas_url(f"upload/{blob_id}/{name}", self.url_ttl, "rw")
        return _value(json.dumps({"BlobId": blob_id, "BlobUrl": url}))  # a JSON text inside value (§F)

    def _ImportFromPackage(self, body: dict[str, Any]) -> Response:
        job = self._job(body)
        if isinstance(job, Response):
            return job
        project, company, execution_id = job
        parts = urlsplit(self._text(body, "packageUrl"))
        if f"{parts.scheme}://{parts.netloc}" != self.blob.base_url or not parts.path.startswith("/dmf/"):
            return _error(500, "The package URL is not a blob of this environment's storage.")
        blob = unquote(parts.path.removeprefix("/dmf/"))
        fail, self.fail_next_import = self.fail_next_import, None
        self.executions[execution_id] = Execution(execution_id, project, company, "import", polls_left=self.polls,
                                                  fail=fail, blob=blob)  # fmt: skip
        return _value(execution_id)

    def _finish_import(self, ex: Execution) -> None:
        data = self.blob.blobs.get(ex.blob)
        if ex.fail is not None or data is None:
            ex.status = "Failed"
            ex.errors = [f"{self.projects[ex.project]}: {ex.fail or 'the package was not uploaded'}"]
            return
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            names = {n.lower(): n for n in zf.namelist()}
            member = names.get(f"{self.projects[ex.project].lower()}.csv")
            if "manifest.xml" not in names or "packageheader.xml" not in names or member is None:
                raise ValueError("the package needs Manifest.xml, PackageHeader.xml and the entity's file")
            reader = csv.reader(io.StringIO(zf.read(member).decode("utf-8-sig")))
            header = next(reader)
            rows = [dict(zip(header, values, strict=True)) for values in reader if values]
        except (ValueError, zipfile.BadZipFile, StopIteration) as exc:
            ex.status, ex.errors = "Failed", [f"The package could not be read: {exc}"]
            return
        ex.errors = self.importer(ex.company, rows)
        ex.imported = len(rows) - len(ex.errors)
        ex.status = "Succeeded" if not ex.errors else "PartiallySucceeded" if ex.imported else "Failed"

    def _finish(self, ex: Execution) -> None:
        if ex.kind == "import":
            self._finish_import(ex)
            return
        if ex.fail is not None:
            ex.status = "Failed"
            ex.errors = [f"{GL_ENTITY}: {ex.fail}"]
            return
        ex.blob = f"{ex.execution_id}/{ex.project}.zip"
        self.blob.blobs[ex.blob] = self.package(ex.project, ex.company)
        ex.status = "Succeeded"

    def _GetExportedPackageUrl(self, body: dict[str, Any]) -> Response:
        ex = self.executions.get(self._text(body, "executionId"))
        if ex is None or ex.status != "Succeeded":
            return _value("")
        ttl = self.url_ttl
        if self.expire_next_urls > 0:
            self.expire_next_urls -= 1
            ttl = -60.0
        return _value(self.blob.sas_url(ex.blob, ttl))

    def _GetExecutionErrors(self, body: dict[str, Any]) -> Response:
        ex = self.executions.get(self._text(body, "executionId"))
        return _value(json.dumps(ex.errors if ex else []))

    def package(self, project: str, company: str) -> bytes:
        """The export package of ``company``: manifest, package header and the entity's CSV."""
        entity = self.projects[project]
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("Manifest.xml", _manifest(project, entity))
            zf.writestr("PackageHeader.xml", _header(project))
            text = io.StringIO()
            w = csv.writer(text, lineterminator="\r\n")
            w.writerow([c.upper() for c in _GL_COLUMNS])
            for row in self.gl_rows(company):
                w.writerow([_csv_value(c, row.get(c)) for c in _GL_COLUMNS])
            zf.writestr(f"{entity}.csv", "\ufeff" + text.getvalue())
        return out.getvalue()


def _csv_value(column: str, value: Any) -> str:
    if column == "AccountingDate" and isinstance(value, str):
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return f"{d.month}/{d.day}/{d.year} 12:00:00 AM"  # en-US, the data format's culture
    return "" if value is None else f"{value:f}" if hasattr(value, "is_finite") else str(value)


def _manifest(project: str, entity: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><DataManagementPackageManifest xmlns="{_XML_NS}">'
            f"<DefinitionGroupName>{project}</DefinitionGroupName><PackageEntityList><DataManagementPackageEntityData>"
            f"<EntityName>{entity}</EntityName><SourceFormat>CSV-Unicode</SourceFormat>"
            "</DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>")  # fmt: skip


def _header(project: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><DataManagementPackageHeader xmlns="{_XML_NS}">'
            f"<Description>{project}</Description><PackageType>DefinitionGroup</PackageType>"
            "<PackageVersion>2</PackageVersion></DataManagementPackageHeader>")  # fmt: skip

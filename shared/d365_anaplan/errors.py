"""Named errors of the connector.

A handler lets these escape; Lambda reports the class name as ``errorType`` and Step Functions uses it as
the state's ``Error``, so ``Retry``/``Catch`` blocks in ``statemachine/*.asl.json`` match these names.
Keep names stable: renaming one is a change to every state machine that mentions it.

``Transient`` subclasses are worth retrying (the ASL retries them with back-off); everything else fails the
step and is recorded in the run ledger. Messages name the call, the object and the field, never a secret.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class Transient(ConnectorError):
    """A condition that may clear by itself: retry later (ASL Retry)."""


# --- configuration ---------------------------------------------------------------------------------------


class ConfigError(ConnectorError):
    """The connection configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], source: str = "configuration") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class SecretUnavailable(ConnectorError):
    """A credential reference could not be resolved (names the reference, never the value)."""


# --- transport safety ----------------------------------------------------------------------------------


class UnsafeDestination(ConnectorError):
    """A request would go over plain http, carry user information in its URL, or take a credential or
    token to an origin that is not allowed for it; nothing was sent."""


class RedirectRefused(ConnectorError):
    """A host answered with a redirect; the connector never follows redirects (a credential would go along)."""


class ResponseTooLarge(ConnectorError):
    """A response body (counted after decompression) exceeds ``security.max_response_bytes``; refused."""


# --- run ledger ------------------------------------------------------------------------------------------


class ModelLeaseHeld(Transient):
    """Another execution holds the lease on this Anaplan model; the ASL waits and retries."""


class LeaseLost(ConnectorError):
    """This execution no longer owns the lease it is trying to renew or release."""


class RecordNotFound(ConnectorError):
    """The ledger has no such run or record."""


class LedgerConflict(Transient):
    """A ledger item kept changing under a conditional write (concurrent writers); retry."""


# --- Anaplan ---------------------------------------------------------------------------------------------


class AnaplanError(ConnectorError):
    """Anaplan answered with an error that retrying will not fix."""


class AnaplanAuthError(AnaplanError):
    """Authentication with Anaplan failed (bad credentials, certificate, or device-grant token)."""


class AnaplanNotFound(AnaplanError):
    """A workspace, model, action or file named in the configuration does not exist."""


class AnaplanHeaderMismatch(AnaplanError):
    """A file's header does not match the columns the import action expects."""


class AnaplanFileTooLarge(AnaplanError):
    """A file would need more chunks than Anaplan accepts."""


class AnaplanModelArchived(AnaplanError):
    """HTTP 422: the model is archived; an administrator must restore it."""


class AnaplanTaskFailed(AnaplanError):
    """An Anaplan task completed unsuccessfully or was cancelled."""


class AnaplanPollTimeout(AnaplanError):
    """A task did not reach a terminal state within the poll budget."""


class AnaplanModelBusy(Transient):
    """HTTP 409: the model is busy running another action."""


class AnaplanModelLocked(Transient):
    """HTTP 423: the model is locked (e.g. by an administrator or another action)."""


class AnaplanThrottled(Transient):
    """HTTP 429 persisted past the in-call retries."""


class AnaplanUnavailable(Transient):
    """5xx or connection errors persisted past the in-call retries."""


# --- Dynamics 365 F&O ------------------------------------------------------------------------------------


class DynamicsError(ConnectorError):
    """F&O answered with an error that retrying will not fix."""


class DynamicsAuthError(DynamicsError):
    """Entra ID refused the token request, or F&O refused the token (explained in the message)."""


class DynamicsRouteUnavailable(DynamicsError):
    """The environment publishes no entity set the connector can read posted GL from."""


class DynamicsValidationError(DynamicsError):
    """F&O rejected a record (the message carries F&O's text and our record key)."""


class DynamicsBadResponse(DynamicsError):
    """F&O answered with something that is not the OData it promised (malformed JSON, missing fields, a
    next link to another host); the message names the request and what was wrong."""


class DynamicsPackageFailed(DynamicsError):
    """A data-management package job ended Failed, PartiallySucceeded or Canceled (F&O's messages included);
    not retried: the job's errors need a person."""


class DynamicsPackageUrlExpired(DynamicsError):
    """The package's blob URL was refused (SAS expired) again after a fresh URL was requested."""


class DynamicsPackageTimeout(DynamicsError):
    """A data-management package job was still running when the configured wait ran out."""


class DynamicsThrottled(Transient):
    """HTTP 429 persisted past the in-call retries (Retry-After honoured)."""


class DynamicsUnavailable(Transient):
    """503/504, timeouts or connection errors persisted past the in-call retries."""


# --- data and flows --------------------------------------------------------------------------------------


class BadInputData(ConnectorError):
    """Input rows failed validation; the message names the file, the record and the field."""


class AlignmentFailed(ConnectorError):
    """Referenced accounts or dimension values do not exist on the other side and policy is to fail."""


class ReconciliationFailed(ConnectorError):
    """Totals written do not equal totals read."""


class PreviousReconcileFailed(ConnectorError):
    """The connection's last plans run failed ReconcilePlan: writing differences again on a wrong read-back
    would repeat them (a revenue budget growing run after run). Not retried: fix and check the cause, then
    start the run with ``accept_failed_reconcile``."""


class PeriodNotDue(ConnectorError):
    """The close calendar says no period is due (scheduled runs end quietly on this)."""


class MetadataDrift(ConnectorError):
    """The model metadata a run relies on (import columns, export layouts, list members) changed since the last
    successful run; the message is the diff. Not retried: start the run with ``accept_drift`` once the change is
    understood (issue 12, item 6)."""

"""What to do about a failure: one text per cause, printed by ``check`` (per failed check) and by ``run``,
``replay`` and ``demo`` (for the error a run failed with), so both say the same thing."""

from __future__ import annotations

from typing import Any

UNREACHABLE = "the host did not answer: check the URL, the network path (VPN, proxy, firewall) and that the service is up"
TLS = "TLS verification failed: add the issuing CA to tls.ca_bundle (a PEM file) - verification is never switched off"
DYNAMICS_AUTH = (
    "check dynamics.tenant_id, client_id and the client secret/certificate of the Entra app registration "
    "(secrets expire); the app must also be listed in F&O under System administration > Setup > Microsoft "
    "Entra applications"
)
CREDENTIAL_REFERENCE = (
    "a credential reference could not be resolved: set the environment variable / file it names, or for a "
    "Secrets Manager ARN use AWS settings that may read it (AWS_PROFILE or 'aws configure')"
)
ANAPLAN_IMPORT = (
    "ask the model builder to create this import (source file columns as listed) or set the action/column "
    "names in mapping.* to match the model"
)
ANAPLAN_EXPORT = (
    "ask the model builder to create this export (CSV, one row per company/account/period) or fix the name in "
    "mapping.plans.exports / mapping.actuals.verify_export"
)
DYNAMICS_ROUTE = (
    "publish a posted-GL entity: the BI entities GeneralJournalEntryBiEntities + "
    "GeneralJournalAccountEntryBiEntities, or GeneralJournalAccountEntryEntity made public by extension; or set "
    "dynamics.gl_route to the route the environment has"
)
_BY_ERROR = {
    "DynamicsAuthError": DYNAMICS_AUTH,
    "SecretUnavailable": CREDENTIAL_REFERENCE,
    "ConfigError": "fix the configuration field the message names",
    "AnaplanHeaderMismatch": ANAPLAN_IMPORT,
    "DynamicsRouteUnavailable": DYNAMICS_ROUTE,
    "AnaplanModelArchived": "the model is archived: ask the workspace administrator to restore it, or set "
    "anaplan.model_id to the live model",
    "AlignmentFailed": "create the missing members on the other side (or fix the codes at the source); with "
    "mapping.actuals.unmapped_policy: map they go to the configured unmapped members instead",
    "MetadataDrift": "the Anaplan model changed since the last successful run (the diff is above); if the "
    "change is intended, run again with --accept-drift to accept it and record the new fingerprint, otherwise "
    "ask the model builder to undo it",
    "ReconciliationFailed": "the loaded figures differ from the source: 'd365-anaplan audit RUN' lists every "
    "difference; fix the cause, then replay the run",
    "SSLError": TLS,
}


def anaplan_auth(cfg: Any) -> str:
    mode = cfg.anaplan.auth.mode
    return {
        "basic": "check anaplan.auth.username and anaplan.auth.password (the secret the reference points at); "
        "the user must be able to sign in to Anaplan directly (not SSO-only)",
        "certificate": "check anaplan.auth.cert_pem/key_pem: a CA-issued certificate registered for the user in "
        "Anaplan Administration > Security > Certificates",
        "device": "run 'd365-anaplan anaplan-login' again to store a fresh refresh token",
    }.get(mode, "check anaplan.auth")


def for_failure(error: str, message: str, cfg: Any | None) -> str | None:
    """The remedy for a run that failed with ``error`` (the ASL Error name) and ``message``; None if none."""
    if "CERTIFICATE_VERIFY_FAILED" in message or error == "SSLError":
        return TLS
    if error in ("AnaplanUnavailable", "DynamicsUnavailable", "ConnectionError", "ConnectTimeout", "Timeout"):
        return UNREACHABLE
    if error == "AnaplanAuthError":
        return anaplan_auth(cfg) if cfg is not None else "check anaplan.auth"
    if error == "AnaplanNotFound":
        return ANAPLAN_EXPORT if "export" in message.lower() else ANAPLAN_IMPORT
    if error == "BadInputData" and ("mapping.value_maps" in message or "mapping.scopes" in message):
        from d365_anaplan.steps.mapping import SCOPE_REMEDY, VALUE_MAP_REMEDY  # the texts `check` prints

        return VALUE_MAP_REMEDY if "mapping.value_maps" in message else SCOPE_REMEDY
    if error == "BadInputData" and "model time range" in message:
        from d365_anaplan.steps.time_range import REMEDY  # the text `check` prints

        return REMEDY
    return _BY_ERROR.get(error)

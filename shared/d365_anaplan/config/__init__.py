"""Connection configuration: one pydantic model, the same locally (a YAML file) and in AWS (an S3 object).

A deployment holds several connections. Locally a YAML file holds one connection (a mapping) or several
(``connections: [...]``); in AWS each connection is ``s3://<config bucket>/connections/<name>.yaml`` (versioned,
SSE-KMS), and credentials in it may only be Secrets Manager references.

Every problem found while loading is reported as one line naming the field and the bad value (secrets are
never echoed); :class:`~d365_anaplan.errors.ConfigError` carries the list.

The model is split by section into the modules of this package; every public name is re-exported here.
"""

from __future__ import annotations

from d365_anaplan.config.anaplan import AnaplanAuth, AnaplanSettings, BasicAuth, CertificateAuth, DeviceAuth
from d365_anaplan.config.close_calendar import CloseCalendar, ScheduleSettings
from d365_anaplan.config.connection import (
    MAX_CA_BUNDLE_BYTES,
    ConnectionConfig,
    SecuritySettings,
    TlsSettings,
)
from d365_anaplan.config.dynamics import (
    CertificateCredential,
    DynamicsSettings,
    JournalSettings,
    PackageSettings,
)
from d365_anaplan.config.hosts import (
    ALLOWED_HOSTS_ENV,
    ENTRA_HOSTS,
    FO_HOST_PATTERNS,
    env_allowed_hosts,
    host_problems,
    is_anaplan_host,
    is_entra_host,
    is_fo_host,
)
from d365_anaplan.config.ledger import LedgerOptions, PeriodTypeName
from d365_anaplan.config.loading import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    load_connection_file,
    load_connections,
    parse_connection,
    parse_connections,
)
from d365_anaplan.config.mapping import (
    ActualsMapping,
    DimensionMapping,
    ListImport,
    Mappings,
    PlanExport,
    PlansMapping,
)
from d365_anaplan.config.secret_ref import SECRET_ARN, Secret

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "ENTRA_HOSTS",
    "FO_HOST_PATTERNS",
    "MAX_CA_BUNDLE_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "SECRET_ARN",
    "ActualsMapping",
    "AnaplanAuth",
    "AnaplanSettings",
    "BasicAuth",
    "CertificateAuth",
    "CertificateCredential",
    "CloseCalendar",
    "ConnectionConfig",
    "DeviceAuth",
    "DimensionMapping",
    "DynamicsSettings",
    "JournalSettings",
    "LedgerOptions",
    "ListImport",
    "Mappings",
    "PackageSettings",
    "PeriodTypeName",
    "PlanExport",
    "PlansMapping",
    "ScheduleSettings",
    "Secret",
    "SecuritySettings",
    "TlsSettings",
    "env_allowed_hosts",
    "host_problems",
    "is_anaplan_host",
    "is_entra_host",
    "is_fo_host",
    "load_connection_file",
    "load_connections",
    "parse_connection",
    "parse_connections",
]

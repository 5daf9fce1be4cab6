"""What a Lambda handler needs from its environment: resource names and the connection configuration.

Handlers stay thin: they parse their event, ask this module for settings and the connection, and call the
layer. Connection configurations live in S3 (``s3://$CONFIG_BUCKET/$CONFIG_PREFIX<name>.yaml``) and are
validated in AWS mode, so credentials in them must be Secrets Manager ARNs.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from d365_anaplan.config import MAX_CONFIG_BYTES, ConnectionConfig, parse_connections
from d365_anaplan.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CACHE_SECONDS = 60
_cache: dict[tuple[str, str, str], tuple[float, ConnectionConfig]] = {}


class Settings(BaseModel):
    """Resource names handed to every function through environment variables (see template.yaml)."""

    model_config = ConfigDict(frozen=True)

    ledger_table: str
    staging_bucket: str
    config_bucket: str
    config_prefix: str = "connections/"
    kms_key_id: str | None = None


def settings() -> Settings:
    env = os.environ
    missing = [k for k in ("LEDGER_TABLE", "STAGING_BUCKET", "CONFIG_BUCKET") if not env.get(k)]
    if missing:
        raise ConfigError([f"environment variable {k} is not set" for k in missing], "function environment")
    return Settings(
        ledger_table=env["LEDGER_TABLE"],
        staging_bucket=env["STAGING_BUCKET"],
        config_bucket=env["CONFIG_BUCKET"],
        config_prefix=env.get("CONFIG_PREFIX", "connections/"),
        kms_key_id=env.get("KMS_KEY_ID") or None,
    )


def s3() -> S3Client:
    import boto3

    return boto3.client("s3")


def config_key(name: str, prefix: str = "connections/") -> str:
    return f"{prefix}{name}.yaml"


def load_connection(name: str, *, fresh: bool = False) -> ConnectionConfig:
    """The named connection from the configuration bucket (cached for a minute per container)."""
    cfg = settings()
    cache_key = (cfg.config_bucket, cfg.config_prefix, name)
    hit = _cache.get(cache_key)
    if hit and not fresh and time.monotonic() - hit[0] < _CACHE_SECONDS:
        return hit[1]
    key = config_key(name, cfg.config_prefix)
    source = f"s3://{cfg.config_bucket}/{key}"
    client = s3()
    try:
        body = client.get_object(Bucket=cfg.config_bucket, Key=key)["Body"]
    except client.exceptions.NoSuchKey:
        raise ConfigError([f"connection {name!r}: no configuration stored at {source}"], source) from None
    try:
        data = body.read(MAX_CONFIG_BYTES + 1)  # never more than the limit allows, whatever the object's size
    finally:
        body.close()
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"the file is larger than {MAX_CONFIG_BYTES:,} characters; refused"], source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"the file is not UTF-8 text (byte {exc.start + 1})"], source) from None
    connections = parse_connections(text, aws=True, source=source)
    match = [c for c in connections if c.name == name]
    if len(match) != 1:
        raise ConfigError([f"name: the file holds {[c.name for c in connections]}, not {name!r}"], source)
    _cache[cache_key] = (time.monotonic(), match[0])
    return match[0]


def model_key_of(cfg: ConnectionConfig) -> str:
    """The lease key of the connection's Anaplan model (actions on one model are serialized)."""
    from d365_anaplan.ledger.lease import model_key

    return model_key(cfg.anaplan.workspace_id, cfg.anaplan.model_id)


def run_id_of(execution_arn: str) -> str:
    """A run is one Step Functions execution; redrive keeps the ARN, so it keeps the run id."""
    return execution_arn.rsplit(":", 1)[-1]


def clear_caches() -> None:
    """Forget cached connections and secrets (a new local engine is a new account; Lambda never needs this)."""
    from aws_lambda_powertools.utilities import parameters

    _cache.clear()
    parameters.clear_caches()  # type: ignore[no-untyped-call]

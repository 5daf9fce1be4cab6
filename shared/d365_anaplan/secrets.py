"""Resolving and storing credential references (see :class:`d365_anaplan.config.Secret`).

In AWS every reference is a Secrets Manager ARN, read through Powertools Parameters (cached, KMS-decrypted
by Secrets Manager). Locally, ``env:``, ``file:`` and inline values are allowed too. Values are returned to
the caller and never logged; errors name the reference, not the value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from d365_anaplan.config import Secret
from d365_anaplan.errors import SecretUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


def _arn_region(ref: str) -> str | None:
    """The region an ARN names (``arn:aws:secretsmanager:<region>:<account>:secret:<name>``), else None."""
    parts = ref.split(":")
    return (parts[3] or None) if len(parts) > 6 and parts[0] == "arn" else None


def _secrets_client(ref: str = "") -> SecretsManagerClient:
    """A Secrets Manager client in the region the ARN names (the AWS settings' region otherwise)."""
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client("secretsmanager", region_name=_arn_region(ref))
    except NoRegionError:
        raise SecretUnavailable(
            f"{ref or 'Secrets Manager'}: no AWS region: name the secret by its full ARN, or set AWS_REGION "
            "(or a profile's region with 'aws configure')"
        ) from None


_PROVIDERS: dict[str | None, Any] = {}  # region -> Powertools SecretsProvider (keeps its cache per region)


def _provider(ref: str) -> Any:
    from aws_lambda_powertools.utilities import parameters

    region = _arn_region(ref)
    if region not in _PROVIDERS:
        _PROVIDERS[region] = parameters.SecretsProvider(boto3_client=_secrets_client(ref))
    return _PROVIDERS[region]


class SecretResolver:
    """Turns :class:`Secret` references into values; ``allow_local`` is False in AWS."""

    def __init__(self, *, allow_local: bool = True, max_age: int = 300) -> None:
        self.allow_local = allow_local
        self.max_age = max_age

    def resolve(self, secret: Secret, *, force_fetch: bool = False) -> str:
        if secret.kind != "secretsmanager" and not self.allow_local:
            raise SecretUnavailable(f"{secret.describe()}: only Secrets Manager references are allowed here")
        if secret.kind == "inline":
            raw = secret.ref
        elif secret.kind == "env":
            value = os.environ.get(secret.ref)
            if value is None:
                raise SecretUnavailable(f"env:{secret.ref}: the environment variable is not set")
            raw = value
        elif secret.kind == "file":
            try:
                raw = Path(secret.ref).read_text(encoding="utf-8")
            except OSError as exc:
                raise SecretUnavailable(f"file:{secret.ref}: cannot read ({exc.strerror})") from None
        else:
            raw = self._from_secrets_manager(secret, force_fetch=force_fetch)
            if secret.json_key is None:
                return raw
        if secret.json_key is None:
            return raw
        try:
            value = json.loads(raw)[secret.json_key]
        except (ValueError, KeyError, TypeError):
            raise SecretUnavailable(
                f"{secret.describe()}: the secret is not JSON with key {secret.json_key!r}"
            ) from None
        return str(value)

    def _from_secrets_manager(self, secret: Secret, *, force_fetch: bool) -> str:
        from aws_lambda_powertools.utilities import parameters
        from botocore.exceptions import NoCredentialsError

        try:
            value = _provider(secret.ref).get(secret.ref, max_age=self.max_age, force_fetch=force_fetch)
        except parameters.exceptions.GetParameterError as exc:
            reason = exc.__cause__ or exc.__context__  # Powertools re-raises without "from"
            if isinstance(reason, NoCredentialsError):
                raise SecretUnavailable(
                    f"{secret.ref}: no AWS credentials to read it with: set AWS_PROFILE (or run 'aws configure'), "
                    "or use env:/file: references for local checks"
                ) from None
            raise SecretUnavailable(
                f"{secret.ref}: cannot read from Secrets Manager ({type(reason).__name__})"
            ) from None
        return value if isinstance(value, str) else bytes(value).decode("utf-8")

    def store(self, secret: Secret, value: str) -> None:
        """Write a new value (e.g. a rotated refresh token) atomically where the reference points."""
        if secret.kind == "secretsmanager":
            client = _secrets_client(secret.ref)
            if secret.json_key is None:
                client.put_secret_value(SecretId=secret.ref, SecretString=value)
            else:
                current = json.loads(client.get_secret_value(SecretId=secret.ref)["SecretString"])
                current[secret.json_key] = value
                client.put_secret_value(SecretId=secret.ref, SecretString=json.dumps(current))
            return
        if secret.kind == "file" and self.allow_local:
            target = Path(secret.ref)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(value, encoding="utf-8")
            tmp.chmod(0o600)
            os.replace(tmp, target)
            return
        raise SecretUnavailable(
            f"{secret.describe()}: this reference cannot be written; use a file: or Secrets Manager reference"
        )

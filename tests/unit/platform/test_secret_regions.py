"""A Secrets Manager ARN names its region: resolving it needs no AWS region setting (issue 13 item 2), and
missing AWS settings give one clear line instead of botocore's NoRegionError."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from d365_anaplan import secrets
from d365_anaplan.config import Secret
from d365_anaplan.secrets import SecretResolver


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    getattr(secrets, "_PROVIDERS", {}).clear()
    yield
    getattr(secrets, "_PROVIDERS", {}).clear()


def test_arn_is_read_in_its_own_region_without_region_settings(no_region: None) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="acme/dynamics", SecretString='{"client_secret": "s3cr3t"}'
        )["ARN"]
        value = SecretResolver(allow_local=True).resolve(Secret.model_validate(f"{arn}#client_secret"))
    assert value == "s3cr3t"


def test_the_arn_region_wins_over_the_default_region(
    no_region: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="ap-southeast-2").create_secret(
            Name="acme/anaplan", SecretString="pw"
        )["ARN"]
        assert SecretResolver(allow_local=True).resolve(Secret.model_validate(arn)) == "pw"

"""Fixtures shared by unit tests of several packages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

STAGING_BUCKET = "staging"


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto S3 client with the bucket ``staging``."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=STAGING_BUCKET)
        yield client

"""CLI tests: both sandboxes run in this process; the CLI runs as a subprocess against them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import ROOT, Cli, write_config


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_PROFILE", "POWERTOOLS_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        D365_ANAPLAN_STATE_DIR=str(tmp_path_factory.mktemp("default-state")),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "shared"), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    )
    return Cli(env)


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from devkit.stack import running

    with running(gl_lines=2_000) as st:
        yield st


@pytest.fixture(scope="session")
def config_file(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "connection.yaml", stack.connection())

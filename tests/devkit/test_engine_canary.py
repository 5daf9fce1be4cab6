"""Canary: the local engine patches private moto API. If moto moves these, fail loudly here first."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest


def test_moto_is_on_the_pinned_minor_series() -> None:
    major, minor, *_ = version("moto").split(".")
    assert (major, minor) == ("5", "2"), (
        "the engine was verified on moto 5.2.x; re-verify the patch points below"
    )


def test_lambda_simple_invoke_patch_point() -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    params = list(inspect.signature(LambdaSimpleBackend.invoke).parameters)
    assert params == ["self", "function_name", "qualifier", "body", "headers", "response_headers"]


def test_wait_and_retry_patch_points() -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    assert list(inspect.signature(WaitFunction._wait_interval).parameters) == ["self", "env", "wait_seconds"]
    assert retrier_decl.time.sleep is not None
    assert "time.sleep(" in inspect.getsource(retrier_decl), "retry back-off no longer sleeps via module time"


def test_execute_state_machine_switch_exists() -> None:
    from moto.core.config import default_user_config

    assert default_user_config["stepfunctions"]["execute_state_machine"] is False
    assert default_user_config["lambda"]["use_docker"] is True


@pytest.mark.parametrize(
    "module", ["moto.stepfunctions.parser.models", "moto.stepfunctions.parser.asl.antlr.runtime.ASLParser"]
)
def test_interpreter_modules_import(module: str) -> None:
    __import__(module)

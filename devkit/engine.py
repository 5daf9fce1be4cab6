"""Local Step Functions engine: the unchanged ``statemachine/*.asl.json`` on moto's ASL interpreter.

What it does (see ``../shared/reference/aws-serverless.md`` §1.6):

* reads ``template.yaml`` (cfn-lint's decoder understands ``!Ref``/``!GetAtt``/``!Sub``), applies each state
  machine's ``DefinitionSubstitutions`` with local stand-ins (function ARNs, table and bucket names);
* provisions the template's DynamoDB tables, S3 buckets, KMS key and secrets in moto (``mock_aws``);
* dispatches Lambda tasks in-process to the handlers template.yaml names (``CodeUri`` + ``Handler``), with the
  layer package on the path and the functions' environment variables applied; a handler's exception becomes
  the task's ``Error`` (its class name), exactly as Lambda reports it;
* scales Wait states and Retry back-off by ``wait_scale`` (0 = no waiting; 1 = real time);
* keeps every execution's history for tests and the CLI.

There is no second description of any flow here: only the ASL files are executed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

REGION = "us-east-1"
ACCOUNT = "123456789012"
PARTITION = "aws"
ROOT = Path(__file__).resolve().parent.parent

Handler = Callable[[dict[str, Any], Any], Any]
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


@dataclasses.dataclass
class FakeLambdaContext:
    """Enough of Lambda's context object for Powertools (logger, idempotency)."""

    function_name: str = "local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:local"
    aws_request_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    deadline_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.deadline_ms


@dataclasses.dataclass
class ExecutionResult:
    arn: str
    name: str
    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    output: Any
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]

    def states_entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]

    def task_failures(self) -> list[tuple[str, str]]:
        """(error, cause) of every failed Lambda task attempt, in order."""
        keys = ("lambdaFunctionFailedEventDetails", "taskFailedEventDetails")
        return [(e[k].get("error", ""), e[k].get("cause", "")) for e in self.history for k in keys if k in e]


class TemplateError(RuntimeError):
    pass


class Template:
    """The parts of template.yaml the engine needs, with intrinsic functions resolved to local stand-ins."""

    def __init__(self, path: Path, parameters: dict[str, str] | None = None) -> None:
        from cfnlint.decode import decode

        tpl, matches = decode(str(path))
        if tpl is None:
            raise TemplateError(f"{path}: cannot parse: {matches}")
        self.path = path
        self.root = path.parent
        self.raw: dict[str, Any] = tpl
        self.resources: dict[str, dict[str, Any]] = dict(tpl.get("Resources", {}))
        self.kms_ids: dict[str, str] = {}  # logical id -> moto key id, filled when provisioned
        self.parameters: dict[str, Any] = {
            k: v.get("Default") for k, v in dict(tpl.get("Parameters", {})).items()
        }
        unknown = sorted(set(parameters or {}) - set(self.parameters))
        if unknown:
            raise TemplateError(f"{path}: no parameters {unknown}")
        self.parameters.update(parameters or {})  # like `sam deploy --parameter-overrides`

    def of_type(self, *types_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") in types_}

    # -- local names ------------------------------------------------------------------------------------
    def physical_name(self, logical_id: str) -> str:
        res = self.resources.get(logical_id)
        if res is None:
            if logical_id in self.parameters:
                return str(self.parameters[logical_id])
            pseudo = {
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": PARTITION,
                "AWS::StackName": "d365-anaplan-local",
                "AWS::URLSuffix": "amazonaws.com",
            }
            if logical_id in pseudo:
                return pseudo[logical_id]
            raise TemplateError(f"unknown reference {logical_id!r}")
        kind = res["Type"]
        if kind == "AWS::S3::Bucket":
            return f"{logical_id.lower()}-local"
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return logical_id
        if kind == "AWS::KMS::Key":
            return self.kms_ids.get(logical_id, logical_id)
        if kind == "AWS::SecretsManager::Secret":
            return self.arn(logical_id)
        if kind == "AWS::SNS::Topic":  # Ref of a topic is its ARN
            return self.arn(logical_id)
        return logical_id

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{logical_id}"
        name = self.physical_name(logical_id) if kind != "AWS::SecretsManager::Secret" else logical_id
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if kind in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            return f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        if kind == "AWS::S3::Bucket":
            return f"arn:{PARTITION}:s3:::{name}"
        if kind == "AWS::KMS::Key":
            return f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{name}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:{logical_id}-local"
        if kind in STATE_MACHINE_TYPES:
            return f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        return f"arn:{PARTITION}:local:{REGION}:{ACCOUNT}:{name}"

    def resolve(self, value: Any) -> Any:
        """Resolve Ref / GetAtt / Sub / Join / If (condition false) to local strings."""
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.physical_name(str(arg))
            if fn == "Fn::GetAtt":
                logical, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                if attr in ("Arn", "QualifiedArn"):
                    return self.arn(logical)
                return self.physical_name(logical)
            if fn == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self._sub(text, {k: self.resolve(v) for k, v in extra.items()})
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(self.resolve(i)) for i in items)
            if fn == "Fn::If":
                return self.resolve(arg[2])
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def _sub(self, text: str, extra: dict[str, Any]) -> str:
        import re

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in extra:
                return str(extra[name])
            if "." in name:
                logical, attr = name.split(".", 1)
                return str(self.resolve({"Fn::GetAtt": [logical, attr]}))
            return self.physical_name(name)

        return re.sub(r"\$\{([^}!]+)\}", repl, text)

    # -- functions and state machines -------------------------------------------------------------------
    def function_environment(self) -> dict[str, str]:
        """Globals + every function's variables; a key with two different values is an error."""
        env: dict[str, str] = {}
        owners: dict[str, str] = {}
        glob = self.raw.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        sources = [("Globals", glob)] + [
            (lid, res.get("Properties", {}).get("Environment", {}).get("Variables", {}))
            for lid, res in self.of_type("AWS::Serverless::Function").items()
        ]
        for owner, variables in sources:
            for key, raw in dict(variables).items():
                value = str(self.resolve(raw))
                if key in env and env[key] != value and owners[key] != "Globals":
                    raise TemplateError(
                        f"environment variable {key} differs between {owners[key]} and {owner}"
                    )
                env[key] = value
                owners[key] = owner
        return env

    def handler_spec(self, logical_id: str) -> tuple[Path, str, str]:
        props = self.resources[logical_id].get("Properties", {})
        glob = self.raw.get("Globals", {}).get("Function", {})
        code_uri = props.get("CodeUri", glob.get("CodeUri"))
        handler = props.get("Handler", glob.get("Handler"))
        if not code_uri or not handler:
            raise TemplateError(f"{logical_id}: CodeUri and Handler are required")
        module, _, func = handler.rpartition(".")
        return self.root / code_uri / f"{module.replace('.', '/')}.py", module, func

    def state_machine_definition(self, logical_id: str) -> str:
        props = self.resources[logical_id]["Properties"]
        # AWS::Serverless::StateMachine names it DefinitionUri; AWS::StepFunctions::StateMachine a local
        # DefinitionS3Location that `sam package` uploads.
        uri = props.get("DefinitionUri", props.get("DefinitionS3Location"))
        if not isinstance(uri, str):
            raise TemplateError(f"{logical_id}: no local DefinitionUri/DefinitionS3Location")
        text: str = (self.root / uri).read_text(encoding="utf-8")
        subs = {k: str(self.resolve(v)) for k, v in dict(props.get("DefinitionSubstitutions", {})).items()}
        for key, value in subs.items():
            text = text.replace("${" + key + "}", value)
        if "${" in text:
            import re

            missing = sorted(set(re.findall(r"\$\{([^}]+)\}", text)))
            raise TemplateError(f"{logical_id}: no DefinitionSubstitutions for {missing}")
        return text


class LocalEngine:
    """Run the template's state machines locally. Use as a context manager.

    >>> with LocalEngine() as engine:  # doctest: +SKIP
    ...     result = engine.run("ActualsFlow", {"connection": "demo", "trigger": "manual"})
    """

    def __init__(
        self,
        root: Path = ROOT,
        *,
        wait_scale: float = 0.0,
        lambda_deadline_ms: int = 900_000,
        env: dict[str, str] | None = None,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.template = Template(root / "template.yaml", parameters)
        self.parameter_overrides = dict(parameters or {})
        self.wait_scale = wait_scale
        self.lambda_deadline_ms = lambda_deadline_ms
        self.extra_env = env or {}
        self.handlers: dict[str, Handler] = {}
        self.wrappers: dict[str, Callable[[Handler], Handler]] = {}
        self.invocations: Counter[str] = Counter()
        self.state_machine_arns: dict[str, str] = {}
        self._stack: ExitStack | None = None
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> LocalEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        import moto  # noqa: F401  (import before any boto3 client is created)
        from moto import mock_aws

        stack = ExitStack()
        self._stack = stack
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            stack.enter_context(mock.patch.dict(os.environ, {key: "testing"}))
        stack.enter_context(mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": REGION}))
        stack.enter_context(
            mock_aws(
                config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
            )
        )
        self._patch_moto(stack)
        from d365_anaplan.runtime import clear_caches

        clear_caches()
        stack.callback(clear_caches)
        self._provision()
        env = {
            **self.template.function_environment(),
            **self.extra_env,
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": "1",
            "AWS_LAMBDA_FUNCTION_NAME": "local",
        }
        stack.enter_context(mock.patch.dict(os.environ, env))
        self.environment = env
        layer = str(self.root / "shared")
        if layer not in sys.path:
            sys.path.insert(0, layer)

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    # -- moto patches -------------------------------------------------------------------------------------
    def _patch_moto(self, stack: ExitStack) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )

        engine = self

        def invoke(
            _backend: Any,
            function_name: str,
            qualifier: Any,
            body: Any,
            headers: Any,
            response_headers: dict[str, str],
        ) -> bytes:
            logical_id = function_name.split(":function:")[-1].split(":")[0]
            payload = json.loads(body or "{}")
            try:
                result = engine.invoke(logical_id, payload)
                return json.dumps(result).encode("utf-8")
            except Exception as exc:  # noqa: BLE001 - any handler error becomes a Lambda function error
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(
                    {
                        "errorType": type(exc).__name__,
                        "errorMessage": str(exc),
                        "stackTrace": traceback.format_exc().splitlines()[-12:],
                    }
                ).encode("utf-8")

        def wait_interval(_self: Any, env: Any, wait_seconds: int) -> None:
            if engine.wait_scale > 0 and wait_seconds > 0:
                env.program_state_event.wait(wait_seconds * engine.wait_scale)

        # DynamoDB applies each request atomically; moto checks a condition and writes without a lock, so
        # executions racing in threads could both win a conditional write. Serialise moto's DynamoDB calls.
        from moto.dynamodb.responses import DynamoHandler

        dynamo_lock = threading.RLock()
        original_call = DynamoHandler.call_action

        def atomic_call(handler: Any) -> Any:
            with dynamo_lock:
                return original_call(handler)

        stack.enter_context(mock.patch.object(DynamoHandler, "call_action", atomic_call))
        scaled_time = types.SimpleNamespace(
            sleep=lambda s: time.sleep(s * engine.wait_scale) if engine.wait_scale else None
        )
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", invoke))
        stack.enter_context(mock.patch.object(WaitFunction, "_wait_interval", wait_interval))
        stack.enter_context(mock.patch.object(retrier_decl, "time", scaled_time))

    # -- resources ----------------------------------------------------------------------------------------
    def _provision(self) -> None:
        import boto3

        tpl = self.template
        kms = boto3.client("kms", region_name=REGION)
        for lid in tpl.of_type("AWS::KMS::Key"):
            key_id = kms.create_key(Description=f"local {lid}")["KeyMetadata"]["KeyId"]
            tpl.kms_ids[lid] = key_id
        ddb = boto3.client("dynamodb", region_name=REGION)
        for lid, res in tpl.of_type("AWS::DynamoDB::Table").items():
            props = res.get("Properties", {})
            kwargs: dict[str, Any] = {
                "TableName": tpl.physical_name(lid),
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": "PAY_PER_REQUEST",
            }
            if props.get("GlobalSecondaryIndexes"):
                kwargs["GlobalSecondaryIndexes"] = [
                    {k: v for k, v in g.items() if k in ("IndexName", "KeySchema", "Projection")}
                    for g in props["GlobalSecondaryIndexes"]
                ]
            ddb.create_table(**kwargs)
        s3 = boto3.client("s3", region_name=REGION)
        for lid in tpl.of_type("AWS::S3::Bucket"):
            s3.create_bucket(Bucket=tpl.physical_name(lid))
        sm = boto3.client("secretsmanager", region_name=REGION)
        self.secret_arns: dict[str, str] = {}
        for lid in tpl.of_type("AWS::SecretsManager::Secret"):
            self.secret_arns[lid] = sm.create_secret(Name=f"{lid}-local", SecretString="{}")["ARN"]
        sns = boto3.client("sns", region_name=REGION)
        for lid in tpl.of_type("AWS::SNS::Topic"):
            sns.create_topic(Name=lid)
        scheduler = boto3.client("scheduler", region_name=REGION)
        for lid in tpl.of_type("AWS::Scheduler::ScheduleGroup"):
            scheduler.create_schedule_group(Name=tpl.physical_name(lid))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        role = f"arn:aws:iam::{ACCOUNT}:role/local-state-machine"
        for lid in tpl.of_type(*STATE_MACHINE_TYPES):
            arn = sfn.create_state_machine(
                name=lid, definition=tpl.state_machine_definition(lid), roleArn=role
            )["stateMachineArn"]
            self.state_machine_arns[lid] = arn

    def install_connection(self, cfg: Any) -> str:
        """Store a connection the way a deployment does: every credential moved into (moto) Secrets Manager
        and referenced by ARN, the YAML written to the config bucket. Returns the S3 key.

        Handlers then load it in strict AWS mode, exactly as they would in the cloud. Its
        ``security.allowed_hosts`` move to the functions' ``CONNECTOR_ALLOWED_HOSTS`` (what the stack
        parameter AllowedHosts sets in AWS): a stored connection may not widen the allow-list itself.
        """
        import boto3
        import yaml

        from d365_anaplan.config import ConnectionConfig
        from d365_anaplan.secrets import SecretResolver

        if not isinstance(cfg, ConnectionConfig):
            cfg = ConnectionConfig.model_validate(cfg)
        data = cfg.model_dump(mode="json")
        data.get("security", {}).pop("allowed_hosts", None)  # in AWS only the stack parameter adds hosts
        sm = boto3.client("secretsmanager", region_name=REGION)
        resolver = SecretResolver(allow_local=True)
        for field, secret in cfg.secrets():
            name = f"d365-anaplan/{cfg.name}/{field}"
            value = resolver.resolve(secret)
            try:
                arn = sm.create_secret(Name=name, SecretString=value)["ARN"]
            except sm.exceptions.ResourceExistsException:
                arn = sm.put_secret_value(SecretId=name, SecretString=value)["ARN"]
            target = data
            *parents, leaf = field.split(".")
            for part in parents:
                target = target[part]
            target[leaf] = arn
        self._deploy_allowed_hosts(cfg.security.allowed_hosts)
        bucket = self.environment["CONFIG_BUCKET"]
        key = f"{self.environment.get('CONFIG_PREFIX', 'connections/')}{cfg.name}.yaml"
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=bucket, Key=key, Body=yaml.safe_dump(data, sort_keys=False).encode("utf-8")
        )
        return key

    def _deploy_allowed_hosts(self, hosts: list[str]) -> None:
        """Deploy the connection's extra hosts the way an operator does: as the stack parameter
        ``AllowedHosts`` (unless this engine was given one), which the template hands to the functions as
        ``CONNECTOR_ALLOWED_HOSTS``. In AWS the functions take extra hosts from there only."""
        if "AllowedHosts" not in self.template.parameters or "AllowedHosts" in self.parameter_overrides:
            return
        current = [h for h in str(self.template.parameters.get("AllowedHosts") or "").split(",") if h.strip()]
        self.template.parameters["AllowedHosts"] = ",".join(dict.fromkeys([*current, *hosts]))
        env = self.template.function_environment()
        changed = {k: v for k, v in env.items() if self.environment.get(k) != v and k not in self.extra_env}
        os.environ.update(changed)
        self.environment.update(changed)

    def resource_name(self, logical_id: str) -> str:
        return self.template.physical_name(logical_id)

    # -- handlers -----------------------------------------------------------------------------------------
    def handler(self, logical_id: str) -> Handler:
        with self._lock:
            if logical_id not in self.handlers:
                path, _module, func = self.template.handler_spec(logical_id)
                name = f"_local_lambda_{logical_id}"
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    raise TemplateError(f"{logical_id}: cannot load {path}")
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
                self.handlers[logical_id] = getattr(mod, func)
            return self.handlers[logical_id]

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """Invoke a function's handler in-process, as Lambda would (used by Task states and by tests)."""
        fn = self.handler(logical_id)
        wrapper = self.wrappers.get(logical_id)
        if wrapper is not None:
            fn = wrapper(fn)
        with self._lock:
            self.invocations[logical_id] += 1
        ctx = FakeLambdaContext(
            function_name=logical_id,
            invoked_function_arn=self.template.arn(logical_id),
            deadline_ms=self.lambda_deadline_ms,
        )
        # Lambda hands the handler a fresh deserialised event; never share objects with the caller.
        return json.loads(json.dumps(fn(json.loads(json.dumps(event)), ctx)))

    # -- executions ---------------------------------------------------------------------------------------
    def _sfn(self) -> Any:
        import boto3

        return boto3.client("stepfunctions", region_name=REGION)

    def start_execution(self, state_machine: str, payload: dict[str, Any], name: str | None = None) -> str:
        arn = self.state_machine_arns[state_machine]
        resp = self._sfn().start_execution(
            stateMachineArn=arn, name=name or str(uuid.uuid4()), input=json.dumps(payload)
        )
        return str(resp["executionArn"])

    def execution_arn(self, state_machine: str, name: str) -> str:
        """The ARN of execution ``name`` of ``state_machine`` (logical id)."""
        return self.state_machine_arns[state_machine].replace(":stateMachine:", ":execution:") + f":{name}"

    def stop_execution(self, execution_arn: str, *, error: str, cause: str, timeout: float = 30.0) -> str:
        """Stop a running execution (as the console's Stop does) and wait until it is no longer RUNNING;
        returns its final status. The state running when it is stopped finishes; no further state starts."""
        sfn = self._sfn()
        if sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
            sfn.stop_execution(executionArn=execution_arn, error=error, cause=cause)
        deadline = time.monotonic() + timeout
        while (status := self.status(execution_arn)) == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
        return status

    def status(self, execution_arn: str) -> str:
        """RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED."""
        return str(self._sfn().describe_execution(executionArn=execution_arn)["status"])

    def wait(self, execution_arn: str, timeout: float = 120.0) -> ExecutionResult:
        sfn = self._sfn()
        deadline = time.monotonic() + timeout
        while True:
            desc = sfn.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout}s")
            time.sleep(0.02)
        output = json.loads(desc["output"]) if desc.get("output") else None
        return ExecutionResult(
            arn=execution_arn,
            name=desc["name"],
            status=desc["status"],
            output=output,
            error=desc.get("error"),
            cause=desc.get("cause"),
            history=list(self.history(execution_arn)),
        )

    def run(
        self, state_machine: str, payload: dict[str, Any], *, name: str | None = None, timeout: float = 120.0
    ) -> ExecutionResult:
        return self.wait(self.start_execution(state_machine, payload, name), timeout)

    def history(self, execution_arn: str) -> Iterator[dict[str, Any]]:
        pages = self._sfn().get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        for page in pages:
            yield from page["events"]

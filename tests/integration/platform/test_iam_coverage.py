"""The functions' IAM permissions in template.yaml cover what their code really calls.

template.yaml narrows every function role (ledger items by key prefix, the key only through services or the
Anaplan token cache's encryption context, secrets by role path). A narrowing that removes something a
handler needs would only show in AWS, so this test runs both flows (and replay, the failure state and the
lease janitor) on the local engine, records every AWS API call each handler makes (``BaseClient._make_api_call``,
attributed to the handler running on that thread), and evaluates each call against that function's
statements, the key policy and the secrets' resource policies with a small IAM evaluator for the statement
shapes the template uses. A call no statement allows fails the test, naming function, action, resource and
keys. S3 server-side encryption, DynamoDB table encryption and Lambda environment decryption happen inside
AWS (kms:ViaService) and are not visible here; the contract rules in tests/contract/test_template.py cover
them.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from eventbridge import execution_status_change

from devkit.engine import ACCOUNT, LocalEngine
from devkit.stack import Stack, running

pytestmark = pytest.mark.integration

STACK_NAME = "d365-anaplan-local"  # what the engine resolves AWS::StackName to


@dataclass(frozen=True)
class Request:
    """One IAM authorisation a call needs: action, resource ARN and the request's condition values."""

    action: str
    resource: str
    leading_keys: tuple[str, ...] = ()
    context: tuple[tuple[str, str], ...] = ()  # KMS encryption context


@dataclass
class Recorder:
    """AWS calls per function, made while that function's handler runs on the calling thread."""

    calls: dict[str, list[tuple[str, str, dict[str, Any]]]] = field(default_factory=dict)
    local: threading.local = field(default_factory=threading.local)

    def wrap(self, logical_id: str) -> Callable[[Any], Any]:
        def wrapper(handler: Any) -> Any:
            def run(event: dict[str, Any], context: Any) -> Any:
                from d365_anaplan.runtime import clear_caches

                clear_caches()  # a cold container: the connection and secrets are read by this function
                previous = getattr(self.local, "function", None)
                self.local.function = logical_id
                try:
                    return handler(event, context)
                finally:
                    self.local.function = previous

            return run

        return wrapper

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        fn = getattr(self.local, "function", None)
        if fn is not None:
            self.calls.setdefault(fn, []).append((service, operation, params))


# -- API calls -> IAM requests ------------------------------------------------------------------------------


def _pk(key: dict[str, Any]) -> str:
    return str(key.get("pk", {}).get("S", ""))


def _query_pk(params: dict[str, Any]) -> str:
    names = params.get("ExpressionAttributeNames", {})
    for left, right in re.findall(r"(#?\w+)\s*=\s*(:\w+)", params.get("KeyConditionExpression", "")):
        if names.get(left, left) in ("pk", "gsi1pk"):
            return str(params["ExpressionAttributeValues"][right]["S"])
    raise AssertionError(f"query without a pk condition: {params.get('KeyConditionExpression')}")


def dynamodb_requests(
    operation: str, params: dict[str, Any], table_arn: Callable[[str], str]
) -> list[Request]:
    if operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
        key = params.get("Key") or params.get("Item") or {}
        return [Request(f"dynamodb:{operation}", table_arn(params["TableName"]), (_pk(key),))]
    if operation == "Query":
        resource = table_arn(params["TableName"])
        if "IndexName" in params:  # an index is its own IAM resource; LeadingKeys is its partition key
            resource += f"/index/{params['IndexName']}"
        return [Request("dynamodb:Query", resource, (_query_pk(params),))]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        out = []
        for table, spec in params["RequestItems"].items():
            if operation == "BatchGetItem":
                keys = [_pk(k) for k in spec["Keys"]]
            else:
                keys = [_pk((r.get("PutRequest", {}).get("Item")) or r["DeleteRequest"]["Key"]) for r in spec]
            out.append(Request(f"dynamodb:{operation}", table_arn(table), tuple(keys)))
        return out
    if operation in ("TransactWriteItems", "TransactGetItems"):
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}  # fmt: skip
        out = []
        for item in params["TransactItems"]:
            ((kind, spec),) = item.items()
            key = spec.get("Key") or spec.get("Item") or {}
            out.append(Request(f"dynamodb:{kinds[kind]}", table_arn(spec["TableName"]), (_pk(key),)))
        return out
    return [Request(f"dynamodb:{operation}", table_arn(params.get("TableName", "*")))]


S3_ACTIONS = {
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject", "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
}  # fmt: skip
BUCKET_ACTIONS = ("s3:ListBucket", "s3:ListBucketVersions")  # on the bucket, not on an object


def s3_requests(operation: str, params: dict[str, Any]) -> list[Request]:
    bucket = params["Bucket"]
    if operation in ("CopyObject", "UploadPartCopy"):
        src = params["CopySource"]
        src_bucket, src_key = (src["Bucket"], src["Key"]) if isinstance(src, dict) else src.split("/", 1)
        return [Request("s3:GetObject", f"arn:aws:s3:::{src_bucket}/{src_key}"),
                Request("s3:PutObject", f"arn:aws:s3:::{bucket}/{params['Key']}")]  # fmt: skip
    action = S3_ACTIONS.get(operation, f"s3:{operation}")
    if action in BUCKET_ACTIONS:
        return [Request(action, f"arn:aws:s3:::{bucket}")]
    return [Request(action, f"arn:aws:s3:::{bucket}/{params['Key']}")]


# -- a small IAM evaluator for the statement shapes of template.yaml -------------------------------------------


def _matches(patterns: Any, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value.lower(), str(p).lower()) for p in _list(patterns))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _conditions_hold(conditions: dict[str, Any], req: Request, principal_arn: str) -> bool:
    context = dict(req.context)
    for operator, clauses in conditions.items():
        for key, want in clauses.items():
            if key == "dynamodb:LeadingKeys" and operator == "ForAllValues:StringLike":
                ok = all(_matches(want, k) for k in req.leading_keys)
            elif key == "kms:ViaService":
                ok = False  # every call recorded here is made directly by the function, not by a service
            elif key.startswith("kms:EncryptionContext:") and operator == "StringEquals":
                ok = context.get(key.removeprefix("kms:EncryptionContext:")) in [str(w) for w in _list(want)]
            elif key == "kms:CallerAccount" and operator == "StringEquals":
                ok = ACCOUNT in [str(w) for w in _list(want)]
            elif key == "aws:PrincipalArn" and operator in ("ArnLike", "ArnNotLike"):
                ok = _matches(want, principal_arn) == (operator == "ArnLike")
            else:
                raise AssertionError(f"the evaluator does not know condition {operator} {key}: extend it")
            if not ok:
                return False
    return True


def allowed(statements: list[dict[str, Any]], req: Request, principal_arn: str) -> bool:
    """Allowed by some Allow statement and denied by none (resources and conditions evaluated)."""

    def applies(st: dict[str, Any]) -> bool:
        return (
            _matches(st.get("Action"), req.action)
            and _matches(st.get("Resource", "*"), req.resource)
            and _conditions_hold(st.get("Condition") or {}, req, principal_arn)
        )

    if any(st.get("Effect") == "Deny" and applies(st) for st in statements):
        return False
    return any(st.get("Effect") == "Allow" and applies(st) for st in statements)


def policy_template_statements(name: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the SAM policy templates the template uses (samtranslator's definitions)."""
    if name == "S3ReadPolicy":
        bucket = f"arn:aws:s3:::{args['BucketName']}"
        actions = ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion",
                   "s3:GetLifecycleConfiguration"]  # fmt: skip
        return [{"Effect": "Allow", "Action": actions, "Resource": [bucket, f"{bucket}/*"]}]
    if name == "AWSSecretsManagerGetSecretValuePolicy":
        return [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": args["SecretArn"]}]
    raise AssertionError(f"SAM policy template {name} is not known to this test: add its statements")


# -- the run ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=120, months=3) as st:
        yield st


@contextmanager
def recording(engine: LocalEngine) -> Iterator[Recorder]:
    """Every AWS call of every function of ``engine`` recorded while the block runs."""
    from botocore.client import BaseClient

    rec = Recorder()
    original = BaseClient._make_api_call

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        rec.record(client.meta.service_model.service_name, operation, params)
        return original(client, operation, params)

    for lid in engine.template.of_type("AWS::Serverless::Function"):
        engine.wrappers[lid] = rec.wrap(lid)
    with mock.patch.object(BaseClient, "_make_api_call", make_api_call):
        yield rec


@pytest.fixture(scope="module")
def recorded(stack: Stack) -> Iterator[tuple[LocalEngine, Recorder]]:
    with LocalEngine(wait_scale=0.0) as engine:
        engine.install_connection(stack.connection())
        with recording(engine) as rec:
            manual = {
                "connection": "demo",
                "trigger": "manual",
                "periods": {"from": "2025-01", "to": "2025-02"},
            }
            actuals = engine.run("ActualsFlow", manual, timeout=180)
            assert actuals.status == "SUCCEEDED", (actuals.error, actuals.cause)
            # a scheduled start: the close gate reads the watermark (the flow itself is covered above)
            gate = {
                "connection": "demo",
                "flow": "actuals",
                "trigger": "schedule",
                "now": "2025-04-10T06:00:00Z",
            }
            engine.invoke("CloseGateFunction", gate)
            plans = engine.run("PlansFlow", manual, timeout=180)
            assert plans.status == "SUCCEEDED", (plans.error, plans.cause)
            # rejected-line replay first: once a later plans run has written the differences, it is refused
            lines = {
                "connection": "demo",
                "trigger": "replay",
                "replay_of": plans.name,
                "failed_lines_only": True,
            }
            assert engine.run("PlansFlow", lines, timeout=180).status == "SUCCEEDED"
            for flow, original_run in (("ActualsFlow", actuals), ("PlansFlow", plans)):
                replay = {"connection": "demo", "trigger": "replay", "replay_of": original_run.name}
                assert engine.run(flow, replay, timeout=180).status == "SUCCEEDED"
            # the failure state (RecordFailure releases the lease) and the janitor for an ended execution
            engine.wrappers["PrepareActualsFunction"] = _failing(rec.wrap("PrepareActualsFunction"))
            failed = engine.run("ActualsFlow", manual, timeout=180)
            assert failed.status == "FAILED"
            engine.invoke(
                "LeaseJanitorFunction", execution_status_change(failed.arn, "FAILED", error="X", cause="y")
            )
            # after a run: its summary (ledger, config, report in S3, SNS); and a full schedule sync
            engine.invoke("RunNotifierFunction", execution_status_change(actuals.arn, "SUCCEEDED"))
            engine.invoke("ScheduleSyncFunction", {"sync": "all"})
        yield engine, rec


def _failing(wrap: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapper(handler: Any) -> Any:
        def boom(event: dict[str, Any], context: Any) -> Any:
            from d365_anaplan.errors import BadInputData

            raise BadInputData("injected failure: the flow must record it and release the lease")

        return wrap(boom)

    return wrapper


def _secret_logical_id(name_or_arn: str) -> str:
    """The engine stores each credential field as its own secret (``d365-anaplan/<c>/<field>``); in AWS the
    template's two secrets hold them. Map a field back to the template secret that would hold it."""
    field_name = name_or_arn.split("/")[-1].rsplit("-", 1)[0] if "/" in name_or_arn else name_or_arn
    if field_name.startswith("dynamics.") or "DynamicsCredentialsSecret" in name_or_arn:
        return "DynamicsCredentialsSecret"
    if field_name.startswith("anaplan.") or "AnaplanCredentialsSecret" in name_or_arn:
        return "AnaplanCredentialsSecret"
    raise AssertionError(f"secret {name_or_arn} belongs to no template secret")


def requests_of(engine: LocalEngine, service: str, operation: str, params: dict[str, Any]) -> list[Request]:
    tpl = engine.template
    tables = {tpl.physical_name(t): tpl.arn(t) for t in tpl.of_type("AWS::DynamoDB::Table")}
    if service == "dynamodb":
        return dynamodb_requests(operation, params, lambda name: tables.get(name, name))
    if service == "s3":
        return s3_requests(operation, params)
    if service == "kms":
        key = tpl.arn(next(iter(tpl.of_type("AWS::KMS::Key"))))
        context = tuple(sorted(params.get("EncryptionContext", {}).items()))
        return [Request(f"kms:{operation}", key, (), context)]
    if service == "secretsmanager":
        return [Request(f"secretsmanager:{operation}", tpl.arn(_secret_logical_id(str(params["SecretId"]))))]
    return [Request(f"{service}:{operation}", "*")]


def function_statements(engine: LocalEngine, lid: str) -> list[dict[str, Any]]:
    tpl = engine.template
    out: list[dict[str, Any]] = []
    for entry in tpl.resources[lid]["Properties"].get("Policies", []):
        if "Statement" in entry:
            out.extend(tpl.resolve(entry["Statement"]))
        else:
            ((name, args),) = entry.items()
            out.extend(policy_template_statements(name, tpl.resolve(args)))
    return out


def role_arn(engine: LocalEngine, lid: str) -> str:
    path = engine.template.resolve(engine.template.resources[lid]["Properties"].get("RolePath", "/"))
    return f"arn:aws:iam::{ACCOUNT}:role{path}{STACK_NAME}-{lid}Role-ABC123"


def resource_policy(engine: LocalEngine, req: Request) -> list[dict[str, Any]]:
    """Key policy for KMS calls, the secret's resource policy for Secrets Manager calls."""
    tpl = engine.template
    if req.action.startswith("kms:"):
        key = next(iter(tpl.of_type("AWS::KMS::Key")))
        return list(tpl.resolve(tpl.resources[key]["Properties"]["KeyPolicy"]["Statement"]))
    if req.action.startswith("secretsmanager:"):
        return [
            st
            for res in tpl.of_type("AWS::SecretsManager::ResourcePolicy").values()
            if tpl.resolve(res["Properties"]["SecretId"]) == req.resource
            for st in tpl.resolve(res["Properties"]["ResourcePolicy"]["Statement"])
        ]
    return []


def _key_policy_allows(statements: list[dict[str, Any]], req: Request, principal: str) -> bool:
    """A key policy statement for the account (IAM-delegated) whose conditions hold, and no deny."""
    return allowed([{**st, "Resource": "*"} for st in statements if "AWS" in st.get("Principal", {})
                    or st.get("Effect") == "Deny"], req, principal)  # fmt: skip


CHECKED = ("dynamodb", "kms", "secretsmanager", "s3")


def test_every_call_of_every_function_is_allowed_by_the_template(
    recorded: tuple[LocalEngine, Recorder],
) -> None:
    engine, rec = recorded
    problems = disallowed_calls(engine, rec)
    assert not problems, "\n".join(sorted(problems))


def disallowed_calls(engine: LocalEngine, rec: Recorder) -> set[str]:
    """One line per recorded call that a function's role, the key policy or a secret's policy refuses."""
    problems: set[str] = set()
    for lid, calls in rec.calls.items():
        statements = function_statements(engine, lid)
        principal = role_arn(engine, lid)
        for service, operation, params in calls:
            if service not in CHECKED:
                continue
            for req in requests_of(engine, service, operation, params):
                where = f"{lid}: {req.action} on {req.resource} keys={list(req.leading_keys)} ctx={dict(req.context)}"
                if not allowed(statements, req, principal):
                    problems.add(f"{where}: not allowed by its role")
                policy = resource_policy(engine, req)
                if req.action.startswith("kms:") and not _key_policy_allows(policy, req, principal):
                    problems.add(f"{where}: not allowed by the key policy")
                if (
                    req.action.startswith("secretsmanager:")
                    and policy
                    and not allowed(
                        [*policy, {"Effect": "Allow", "Action": "*", "Resource": "*"}], req, principal
                    )
                ):
                    problems.add(f"{where}: denied by the secret's resource policy")
    return problems


def test_the_run_exercised_every_function_and_the_token_cache(recorded: tuple[LocalEngine, Recorder]) -> None:
    """The coverage above means something only if every function ran and the token cache was used."""
    engine, rec = recorded
    functions = set(engine.template.of_type("AWS::Serverless::Function"))
    assert functions - set(rec.calls) == set(), "functions that made no AWS call in the recorded runs"
    direct_kms = {lid for lid, calls in rec.calls.items() if any(s == "kms" for s, _, _ in calls)}
    assert direct_kms, "no function used the Anaplan token cache (kms:Encrypt/Decrypt)"
    granted = {
        lid
        for lid in functions
        if any(
            "kms:EncryptionContext:purpose" in str(st.get("Condition"))
            for st in function_statements(engine, lid)
        )
    }
    assert direct_kms == granted, "the token-cache grant goes to exactly the functions that use the cache"


def test_the_evaluator_refuses_what_the_template_does_not_grant(
    recorded: tuple[LocalEngine, Recorder],
) -> None:
    """The evaluator can fail: a flow step deleting a run item, a non-Anaplan function decrypting a token, a
    decrypt for another purpose than the token cache and a function reading the other system's secret are all refused."""
    engine, _ = recorded
    table = engine.template.arn("LedgerTable")
    key = engine.template.arn(next(iter(engine.template.of_type("AWS::KMS::Key"))))
    ctx = (("cache_key", "anaplan-token#demo#0"), ("connection", "demo"), ("purpose", "anaplan-token"))
    delete_run = Request("dynamodb:DeleteItem", table, ("RUN#x",))
    decrypt = Request("kms:Decrypt", key, (), ctx)
    # any connection of the stack (uploaded ones too), but only for the token cache's purpose
    other_connection = Request("kms:Decrypt", key, (), (*ctx[:1], ("connection", "other"), ctx[2]))
    other_purpose = Request("kms:Decrypt", key, (), (*ctx[:2], ("purpose", "something-else")))
    secret = Request("secretsmanager:GetSecretValue", engine.template.arn("AnaplanCredentialsSecret"))
    assert not allowed(function_statements(engine, "WriteJournalFunction"), delete_run, "")
    assert not allowed(function_statements(engine, "ExtractGLFunction"), decrypt, "")
    # ExtractGL writes its GL parts and packages only: not the manifest the Distributed Map reads, nor a file
    # Anaplan imports
    bucket = engine.resource_name("StagingBucket")
    for name in ("extract/items.json", "actuals/actuals.csv", "gl/USMF-0-00000.jsonl"):
        put = Request("s3:PutObject", f"arn:aws:s3:::{bucket}/runs/demo/run-1/{name}")
        assert allowed(function_statements(engine, "ExtractGLFunction"), put, "") is name.startswith("gl/"), (
            name
        )
    assert allowed(function_statements(engine, "AnaplanStartFunction"), decrypt, "")
    assert allowed(function_statements(engine, "AnaplanStartFunction"), other_connection, "")
    assert not allowed(function_statements(engine, "AnaplanStartFunction"), other_purpose, "")
    policy = resource_policy(engine, secret)
    assert policy, "the Anaplan secret has a resource policy"
    everything = [*policy, {"Effect": "Allow", "Action": "*", "Resource": "*"}]
    assert not allowed(everything, secret, role_arn(engine, "ExtractGLFunction"))
    assert allowed(everything, secret, role_arn(engine, "AnaplanStartFunction"))

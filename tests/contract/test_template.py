"""Security and wiring contract of ``template.yaml``.

Each rule is a function that takes the decoded template (``cfnlint.decode.decode``, which understands the
short-form intrinsics) and returns a list of problems, one line each. The ``test_*_holds`` tests assert the
real template has none; the ``test_rule_catches_*`` tests break a copy of the template and assert the same
rule reports it, so every rule is shown to be able to fail.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

Template = dict[str, Any]
Rule = Callable[[Template], list[str]]

# Logical IDs other code depends on (devkit's local engine maps DefinitionSubstitutions through them).
CONTRACT_IDS = {
    "ConnectorKey": "AWS::KMS::Key",
    "ConnectorKeyAlias": "AWS::KMS::Alias",
    "StagingBucket": "AWS::S3::Bucket",
    "LedgerTable": "AWS::DynamoDB::Table",
    "DynamicsCredentialsSecret": "AWS::SecretsManager::Secret",
    "AnaplanCredentialsSecret": "AWS::SecretsManager::Secret",
    "ConnectorLayer": "AWS::Serverless::LayerVersion",
    "RunLedgerFunction": "AWS::Serverless::Function",
    "ModelLeaseFunction": "AWS::Serverless::Function",
    "LeaseJanitorFunction": "AWS::Serverless::Function",
    "CloseGateFunction": "AWS::Serverless::Function",
    # Plain Step Functions resources: the SAM transform has no EncryptionConfiguration for its state machine.
    "ActualsFlow": "AWS::StepFunctions::StateMachine",
    "PlansFlow": "AWS::StepFunctions::StateMachine",
    "FailedExecutionsAlarm": "AWS::CloudWatch::Alarm",
    "AlarmTopic": "AWS::SNS::Topic",
}
FUNCTION_ENV = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LEDGER_TABLE",
    "STAGING_BUCKET",
    "CONFIG_BUCKET",
    "CONFIG_PREFIX",
    "KMS_KEY_ID",
}
# The flows, each deployed from its own statemachine/*.asl.json; the breakage tests below run once per flow.
FLOWS = ("ActualsFlow", "PlansFlow")
# Placeholders in an ASL file: ${Name}; JSONPath never produces "${".
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


# -- helpers ------------------------------------------------------------------------------------------------


def load() -> Template:
    tpl, matches = decode(str(TEMPLATE))
    assert tpl is not None, f"template.yaml does not parse: {matches}"
    return json.loads(json.dumps(tpl))  # plain dicts/lists/str: easy to copy and mutate


def resources(tpl: Template, *kinds: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl.get("Resources", {}).items() if not kinds or v.get("Type") in kinds}


def props(res: dict[str, Any]) -> dict[str, Any]:
    return dict(res.get("Properties") or {})


def is_ref(value: Any, logical_id: str) -> bool:
    """``!Ref X`` or ``!GetAtt X.Arn`` (either identifies the resource for KMS key / bucket arguments)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((fn, arg),) = value.items()
    if fn == "Ref":
        return arg == logical_id
    if fn == "Fn::GetAtt":
        parts = arg.split(".", 1) if isinstance(arg, str) else list(arg)
        return parts[0] == logical_id
    return False


def ref_target(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref" and isinstance(arg, str):
            return arg
        if fn == "Fn::GetAtt":
            return (arg.split(".", 1) if isinstance(arg, str) else list(arg))[0]
    return None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def cmk_id(tpl: Template) -> str:
    keys = list(resources(tpl, "AWS::KMS::Key"))
    return keys[0] if len(keys) == 1 else "ConnectorKey"


def function_globals(tpl: Template) -> dict[str, Any]:
    return dict((tpl.get("Globals") or {}).get("Function") or {})


STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


def machines(tpl: Template) -> dict[str, dict[str, Any]]:
    return resources(tpl, *STATE_MACHINE_TYPES)


def asl_path(res: dict[str, Any]) -> Path | None:
    p = props(res)
    uri = p.get("DefinitionUri", p.get("DefinitionS3Location"))
    return ROOT / uri if isinstance(uri, str) else None


def machine_logging(res: dict[str, Any]) -> dict[str, Any]:
    p = props(res)
    return dict(p.get("Logging") or p.get("LoggingConfiguration") or {})


def machine_tracing(res: dict[str, Any]) -> dict[str, Any]:
    p = props(res)
    return dict(p.get("Tracing") or p.get("TracingConfiguration") or {})


def machine_kind(res: dict[str, Any]) -> Any:
    p = props(res)
    return p.get("Type") if res.get("Type") == "AWS::Serverless::StateMachine" else p.get("StateMachineType")


def role_statements(tpl: Template, role_ref: Any) -> list[dict[str, Any]]:
    """Inline policy statements of an AWS::IAM::Role of the template (``!GetAtt Role.Arn``)."""
    role = resources(tpl, "AWS::IAM::Role").get(ref_target(role_ref) or "", {})
    return [
        st
        for pol in props(role).get("Policies", [])
        for st in as_list(pol.get("PolicyDocument", {}).get("Statement", []))
    ]


def machine_statements(tpl: Template, res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every inline statement of a state machine's permissions (SAM ``Policies`` or its IAM role)."""
    p = props(res)
    if res.get("Type") == "AWS::Serverless::StateMachine":
        return [
            st
            for pol in p.get("Policies", [])
            if isinstance(pol, dict)
            for st in as_list(pol.get("Statement", []))
        ]
    return role_statements(tpl, p.get("RoleArn"))


def invokable_functions(tpl: Template, res: dict[str, Any]) -> set[str | None]:
    p = props(res)
    found = {
        ref_target(pol["LambdaInvokePolicy"].get("FunctionName"))
        for pol in p.get("Policies", [])
        if isinstance(pol, dict) and "LambdaInvokePolicy" in pol
    }
    for st in machine_statements(tpl, res):
        if st.get("Effect") == "Allow" and "lambda:InvokeFunction" in as_list(st.get("Action")):
            found |= {ref_target(r) for r in as_list(st.get("Resource"))}
    return found


def machine_schedules(tpl: Template, lid: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, settings) of each schedule that starts state machine ``lid``: SAM ``ScheduleV2`` events or
    ``AWS::Scheduler::Schedule`` resources, normalised to ScheduleExpressionTimezone / RetryPolicy / Input /
    Unnamed (a fixed name makes two stacks collide)."""
    out: list[tuple[str, dict[str, Any]]] = []
    res = machines(tpl).get(lid, {})
    for name, ev in props(res).get("Events", {}).items():
        if ev.get("Type") == "ScheduleV2":
            ep = ev.get("Properties", {})
            out.append((f"{lid}.{name}", {**ep, "Unnamed": ep.get("OmitName") is True}))
    for sid, sched in resources(tpl, "AWS::Scheduler::Schedule").items():
        sp = props(sched)
        target = sp.get("Target", {})
        if is_ref(target.get("Arn"), lid):
            out.append((sid, {
                "ScheduleExpressionTimezone": sp.get("ScheduleExpressionTimezone"),
                "RetryPolicy": target.get("RetryPolicy"),
                "Input": target.get("Input"),
                "Unnamed": "Name" not in sp,
            }))  # fmt: skip
    return out


# -- rules --------------------------------------------------------------------------------------------------


def rule_contract_ids(tpl: Template) -> list[str]:
    res = resources(tpl)
    return [
        f"{lid}: missing or not {kind} (got {res.get(lid, {}).get('Type')})"
        for lid, kind in CONTRACT_IDS.items()
        if res.get(lid, {}).get("Type") != kind
    ]


def rule_kms_rotation(tpl: Template) -> list[str]:
    out = []
    keys = resources(tpl, "AWS::KMS::Key")
    if not keys:
        out.append("no AWS::KMS::Key in the template")
    for lid, res in keys.items():
        p = props(res)
        if p.get("EnableKeyRotation") is not True:
            out.append(f"{lid}: EnableKeyRotation is not true")
        for st in p.get("KeyPolicy", {}).get("Statement", []):
            principal = st.get("Principal")
            if st.get("Effect") == "Allow" and (principal == "*" or principal == {"AWS": "*"}):
                out.append(f"{lid}: key policy statement {st.get('Sid')} allows any principal")
    return out


def _bucket_policy_statements(tpl: Template, bucket: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in resources(tpl, "AWS::S3::BucketPolicy").values():
        p = props(res)
        if is_ref(p.get("Bucket"), bucket):
            out.extend(p.get("PolicyDocument", {}).get("Statement", []))
    return out


def _denies_insecure_transport(st: dict[str, Any]) -> bool:
    cond = st.get("Condition", {}).get("Bool", {})
    actions = as_list(st.get("Action"))
    return (
        st.get("Effect") == "Deny"
        and st.get("Principal") in ("*", {"AWS": "*"})
        and str(cond.get("aws:SecureTransport")).lower() == "false"
        and ("s3:*" in actions or "*" in actions)
    )


def rule_buckets(tpl: Template) -> list[str]:
    out = []
    key = cmk_id(tpl)
    buckets = resources(tpl, "AWS::S3::Bucket")
    if "StagingBucket" not in buckets:
        out.append("StagingBucket missing")
    for lid, res in buckets.items():
        p = props(res)
        rules = p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not rules:
            out.append(f"{lid}: no default encryption")
        # Data buckets use the connector key; only the access-log bucket may use SSE-S3 (S3 server access
        # log delivery does not support SSE-KMS destinations).
        is_log_target = any(
            is_ref(b.get("Properties", {}).get("LoggingConfiguration", {}).get("DestinationBucketName"), lid)
            for b in buckets.values()
        )
        for r in rules:
            default = r.get("ServerSideEncryptionByDefault", {})
            if is_log_target and default.get("SSEAlgorithm") == "AES256":
                continue
            if default.get("SSEAlgorithm") != "aws:kms" or not is_ref(default.get("KMSMasterKeyID"), key):
                out.append(f"{lid}: not SSE-KMS with {key}")
            if r.get("BucketKeyEnabled") is not True:
                out.append(f"{lid}: BucketKeyEnabled is not true")
        if not is_log_target and not is_ref(
            p.get("LoggingConfiguration", {}).get("DestinationBucketName"), "AccessLogsBucket"
        ):
            out.append(f"{lid}: server access logging is not enabled")
        if p.get("VersioningConfiguration", {}).get("Status") != "Enabled":
            out.append(f"{lid}: versioning is not enabled")
        pab = p.get("PublicAccessBlockConfiguration", {})
        out.extend(
            f"{lid}: PublicAccessBlockConfiguration.{flag} is not true"
            for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
            if pab.get(flag) is not True
        )
        ownership = [r.get("ObjectOwnership") for r in p.get("OwnershipControls", {}).get("Rules", [])]
        if ownership != ["BucketOwnerEnforced"]:
            out.append(f"{lid}: ObjectOwnership is {ownership}, not BucketOwnerEnforced")
        if not any(_denies_insecure_transport(st) for st in _bucket_policy_statements(tpl, lid)):
            out.append(f"{lid}: no bucket policy statement denying aws:SecureTransport=false")
    return out


def rule_data_buckets_deny_unencrypted_uploads(tpl: Template) -> list[str]:
    out = []
    for lid in ("StagingBucket", "ConfigBucket"):
        if lid not in resources(tpl, "AWS::S3::Bucket"):
            continue
        ok = any(
            st.get("Effect") == "Deny"
            and "s3:PutObject" in as_list(st.get("Action"))
            and st.get("Condition", {}).get("StringNotEquals", {}).get("s3:x-amz-server-side-encryption")
            == "aws:kms"
            for st in _bucket_policy_statements(tpl, lid)
        )
        if not ok:
            out.append(f"{lid}: no statement denying uploads not encrypted with aws:kms")
    return out


def rule_staging_lifecycle(tpl: Template) -> list[str]:
    out = []
    staging = props(resources(tpl).get("StagingBucket", {}))
    lifecycle = staging.get("LifecycleConfiguration", {}).get("Rules", [])
    runs = [
        r for r in lifecycle if r.get("Prefix") == "runs/" or r.get("Filter", {}).get("Prefix") == "runs/"
    ]
    if len(runs) != 1:
        return ["StagingBucket: expected exactly one lifecycle rule for runs/"]
    days = runs[0].get("ExpirationInDays")
    param = tpl.get("Parameters", {}).get(ref_target(days) or "", {})
    if ref_target(days) is None or not param:
        out.append("StagingBucket: runs/ expiration is not a template parameter")
    elif int(param.get("Default", 0)) < 365:
        out.append(f"StagingBucket: runs/ kept {param.get('Default')} days by default, auditors need a year")
    for r in lifecycle:
        prefix = r.get("Prefix", r.get("Filter", {}).get("Prefix", ""))
        if "ExpirationInDays" in r and not prefix:
            out.append(
                f"StagingBucket: rule {r.get('Id')} expires every object (connections/ must never expire)"
            )
        if "ExpirationInDays" in r and "connections/".startswith(prefix):
            out.append(f"StagingBucket: rule {r.get('Id')} expires connections/ config objects")
    if not any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") for r in lifecycle):
        out.append("StagingBucket: noncurrent versions never expire")
    if not any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") for r in lifecycle):
        out.append("StagingBucket: incomplete multipart uploads are never aborted")
    # Config objects, wherever they live, never expire.
    config = props(resources(tpl).get("ConfigBucket", {}))
    out.extend(
        f"ConfigBucket: rule {r.get('Id')} expires current config objects"
        for r in config.get("LifecycleConfiguration", {}).get("Rules", [])
        if "ExpirationInDays" in r or "ExpirationDate" in r
    )
    return out


def rule_tables(tpl: Template) -> list[str]:
    out = []
    key = cmk_id(tpl)
    tables = resources(tpl, "AWS::DynamoDB::Table")
    for lid, res in tables.items():
        p = props(res)
        sse = p.get("SSESpecification", {})
        if sse.get("SSEEnabled") is not True or sse.get("SSEType") != "KMS":
            out.append(f"{lid}: SSE is not KMS")
        if not is_ref(sse.get("KMSMasterKeyId"), key):
            out.append(f"{lid}: not encrypted with the customer-managed key {key}")
        if p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is not True:
            out.append(f"{lid}: point-in-time recovery is off")
    ledger = props(tables.get("LedgerTable", {}))
    if ledger.get("DeletionProtectionEnabled") is not True:
        out.append("LedgerTable: DeletionProtectionEnabled is not true")
    if ledger.get("TimeToLiveSpecification", {}).get("AttributeName") != "ttl":
        out.append("LedgerTable: TTL attribute is not ttl")
    gsis = {g.get("IndexName"): g for g in ledger.get("GlobalSecondaryIndexes", [])}
    if set(gsis) != {"by-connection"}:
        out.append(f"LedgerTable: GSIs are {sorted(gsis)}, expected exactly by-connection")
    return out


def rule_secrets(tpl: Template) -> list[str]:
    out = []
    key = cmk_id(tpl)
    for lid, res in resources(tpl, "AWS::SecretsManager::Secret").items():
        p = props(res)
        if not is_ref(p.get("KmsKeyId"), key):
            out.append(f"{lid}: not encrypted with {key}")
        if "SecretString" in p:
            out.append(f"{lid}: a literal SecretString is committed in the template")
    return out


def rule_queues_and_topics(tpl: Template) -> list[str]:
    kinds = ("AWS::SQS::Queue", "AWS::SNS::Topic")
    return [
        f"{lid}: not KMS-encrypted (KmsMasterKeyId)"
        for lid, res in resources(tpl, *kinds).items()
        if not props(res).get("KmsMasterKeyId")
    ]


def rule_function_log_groups(tpl: Template) -> list[str]:
    out = []
    key = cmk_id(tpl)
    groups = resources(tpl, "AWS::Logs::LogGroup")
    for lid, res in resources(tpl, "AWS::Serverless::Function").items():
        p = props(res)
        target = ref_target(p.get("LoggingConfig", {}).get("LogGroup"))
        if target not in groups:
            out.append(f"{lid}: LoggingConfig.LogGroup does not reference a log group in this template")
            continue
        g = props(groups[target])
        if not g.get("RetentionInDays"):
            out.append(f"{lid}: log group {target} has no RetentionInDays")
        if not is_ref(g.get("KmsKeyId"), key):
            out.append(f"{lid}: log group {target} is not encrypted with {key}")
        name = g.get("LogGroupName")
        fn_name = p.get("FunctionName")
        expected = None
        if isinstance(fn_name, dict) and "Fn::Sub" in fn_name and isinstance(fn_name["Fn::Sub"], str):
            expected = {"Fn::Sub": "/aws/lambda/" + fn_name["Fn::Sub"]}
        if expected is None or name != expected:
            out.append(f"{lid}: log group name {name} is not /aws/lambda/<function name>")
    for lid, res in machines(tpl).items():
        dests = machine_logging(res).get("Destinations", [])
        targets = [ref_target(d.get("CloudWatchLogsLogGroup", {}).get("LogGroupArn")) for d in dests]
        if not targets or any(t not in groups for t in targets):
            out.append(f"{lid}: no log group from this template")
        out.extend(
            f"{lid}: log group {t} has no RetentionInDays"
            for t in targets
            if t in groups and not props(groups[t]).get("RetentionInDays")
        )
    return out


def _wildcard(value: Any) -> bool:
    return any(isinstance(v, str) and (v == "*" or v.endswith(":*")) for v in as_list(value))


def rule_function_policies(tpl: Template) -> list[str]:
    """Functions use SAM policy templates or scoped inline statements: no ``*`` resources or actions."""
    out = []
    for lid, res in resources(tpl, "AWS::Serverless::Function").items():
        policies = props(res).get("Policies", [])
        if isinstance(policies, (str, dict)):
            policies = [policies]
        for entry in policies:
            if isinstance(entry, str):
                out.append(f"{lid}: managed policy {entry} (use a SAM policy template)")
                continue
            if not isinstance(entry, dict):
                out.append(f"{lid}: unexpected policy entry {entry!r}")
                continue
            statements = entry.get("Statement")
            if statements is None:
                continue  # a SAM policy template, scoped by its own arguments
            for st in as_list(statements):
                if st.get("Effect") != "Allow":
                    continue
                if _wildcard(st.get("Resource")):
                    out.append(f"{lid}: inline statement {st.get('Action')} on Resource {st.get('Resource')}")
                if _wildcard(st.get("Action")):
                    out.append(f"{lid}: inline statement with wildcard action {st.get('Action')}")
    return out


def rule_function_globals(tpl: Template) -> list[str]:
    out = []
    g = function_globals(tpl)
    expected = {"Runtime": "python3.13", "Architectures": ["arm64"], "Tracing": "Active"}
    out += [f"Globals.Function.{k} is {g.get(k)!r}, not {v!r}" for k, v in expected.items() if g.get(k) != v]
    if not is_ref(g.get("KmsKeyArn"), cmk_id(tpl)):
        out.append(
            "Globals.Function.KmsKeyArn: environment variables are not encrypted with the connector key"
        )
    if not any(is_ref(layer, "ConnectorLayer") for layer in g.get("Layers", [])):
        out.append("Globals.Function.Layers does not include ConnectorLayer")
    env = set(g.get("Environment", {}).get("Variables", {}))
    if missing := sorted(FUNCTION_ENV - env):
        out.append(f"Globals.Function environment lacks {missing}")
    if g.get("Environment", {}).get("Variables", {}).get("CONFIG_PREFIX") != "connections/":
        out.append("CONFIG_PREFIX is not connections/")
    for lid, res in resources(tpl, "AWS::Serverless::Function").items():
        p = props(res)
        code = p.get("CodeUri", "")
        if not (isinstance(code, str) and re.fullmatch(r"functions/[a-z0-9_]+/", code)):
            out.append(f"{lid}: CodeUri {code!r} is not functions/<name>/")
        if p.get("Handler", g.get("Handler")) != "app.lambda_handler":
            out.append(f"{lid}: handler is not app.lambda_handler")
    layer = props(resources(tpl).get("ConnectorLayer", {}))
    if layer.get("ContentUri") != "shared/":
        out.append("ConnectorLayer: ContentUri is not shared/")
    if resources(tpl).get("ConnectorLayer", {}).get("Metadata", {}).get("BuildMethod") != "python3.13":
        out.append("ConnectorLayer: Metadata.BuildMethod is not python3.13")
    return out


def rule_state_machines(tpl: Template) -> list[str]:
    out = []
    functions = resources(tpl, "AWS::Serverless::Function")
    for lid, res in machines(tpl).items():
        p = props(res)
        if machine_kind(res) != "STANDARD":
            out.append(f"{lid}: Type is not STANDARD")
        if {"Definition", "DefinitionString"} & set(p) or asl_path(res) is None:
            out.append(
                f"{lid}: the definition must come from statemachine/*.asl.json (DefinitionUri/S3Location)"
            )
        subs = dict(p.get("DefinitionSubstitutions", {}))
        path = asl_path(res)
        if path is not None and path.exists():
            used = set(PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
            if used != set(subs):
                out.append(
                    f"{lid}: {path.name} uses {sorted(used)} but DefinitionSubstitutions has {sorted(subs)}"
                )
            text = path.read_text(encoding="utf-8")
            if re.search(
                r"arn:aws[a-z-]*:(lambda|dynamodb|s3|sns|sqs|secretsmanager):[a-z0-9-]+:\d{12}", text
            ):
                out.append(f"{lid}: {path.name} hard-codes an account-specific ARN")
        invokable = invokable_functions(tpl, res)
        for key, value in subs.items():
            target = ref_target(value)
            if isinstance(value, str) and value.startswith("arn:"):
                out.append(f"{lid}: substitution {key} is a hard-coded ARN")
            if target in functions and target not in invokable:
                out.append(f"{lid}: substitutes {target} but may not invoke it (lambda:InvokeFunction)")
        logging = machine_logging(res)
        if logging.get("Level") not in ("ERROR", "ALL") or logging.get("IncludeExecutionData") is not False:
            out.append(f"{lid}: Logging must be ERROR/ALL with IncludeExecutionData false")
        if machine_tracing(res).get("Enabled") is not True:
            out.append(f"{lid}: tracing is not enabled")
    return out


def rule_schedules(tpl: Template) -> list[str]:
    out = []
    schedules = 0
    for lid, res in machines(tpl).items():
        for name, ev in props(res).get("Events", {}).items():
            if ev.get("Type") == "Schedule":
                out.append(f"{lid}.{name}: rule-based Schedule evaluates cron in UTC; use ScheduleV2")
        for name, ep in machine_schedules(tpl, lid):
            schedules += 1
            if not ep.get("ScheduleExpressionTimezone"):
                out.append(f"{name}: schedule has no ScheduleExpressionTimezone")
            if ep.get("Unnamed") is not True:
                out.append(f"{name}: schedule has a fixed name (two stacks would collide)")
            if not ep.get("RetryPolicy"):
                out.append(f"{name}: no RetryPolicy")
            if not ep.get("Input"):
                out.append(f"{name}: no Input naming the connection")
    if schedules == 0:
        out.append("no EventBridge Scheduler schedule starts any state machine")
    return out


def rule_alarms(tpl: Template) -> list[str]:
    alarms = resources(tpl, "AWS::CloudWatch::Alarm")
    metrics = {(props(a).get("Namespace"), props(a).get("MetricName")) for a in alarms.values()}
    out = [
        f"no alarm on AWS/States {metric}"
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut")
        if ("AWS/States", metric) not in metrics
    ]
    for machine in machines(tpl):
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
            watched = any(
                props(a).get("MetricName") == metric
                and any(is_ref(d.get("Value"), machine) for d in props(a).get("Dimensions", []))
                for a in alarms.values()
            )
            if not watched:
                out.append(f"{machine}: no alarm on its {metric}")
    for lid, a in alarms.items():
        if not any(is_ref(x, "AlarmTopic") for x in props(a).get("AlarmActions", [])):
            out.append(f"{lid}: does not notify AlarmTopic")
    if not props(resources(tpl).get("AlarmTopic", {})).get("KmsMasterKeyId"):
        out.append("AlarmTopic: not KMS-encrypted")
    return out


_READ_KEYS = ("InputPath", "Variable", "OutputPath", "SecondsPath", "TimestampPath", "ItemsPath")


def asl_input_keys(definition: Any) -> set[str]:
    """Top-level input keys the flow reads (``$.x``) that no state writes first (via ``ResultPath``)."""
    reads: set[str] = set()
    writes: set[str] = set()

    def top(path: str) -> str:
        return path[2:].split(".")[0].split("[")[0]

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key in ("ResultSelector", "ItemProcessor", "Iterator", "Branches"):
                continue  # the task result, or a nested scope whose input is not the execution input
            if key == "ResultPath" and isinstance(value, str) and value.startswith("$."):
                writes.add(top(value))
            elif (
                isinstance(value, str)
                and value.startswith("$.")
                and (key.endswith(".$") or key in _READ_KEYS)
            ):
                reads.add(top(value))
            else:
                walk(value)

    walk(definition.get("States", {}))
    return reads - writes


def _schedule_input(tpl: Template, value: Any) -> Any:
    text = value.get("Fn::Sub") if isinstance(value, dict) else value
    if not isinstance(text, str):
        raise ValueError(f"Input is not a string or !Sub string: {value!r}")
    params = tpl.get("Parameters", {})
    return json.loads(re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: str(params[m.group(1)]["Default"]), text))


def rule_schedule_input(tpl: Template) -> list[str]:
    """A scheduled start must carry every input key the flow reads, or the execution dies in States.Runtime."""
    out = []
    params = tpl.get("Parameters", {})
    for lid, res in machines(tpl).items():
        path = asl_path(res)
        needed = (
            asl_input_keys(json.loads(path.read_text(encoding="utf-8"))) if path and path.exists() else set()
        )
        for name, ev in machine_schedules(tpl, lid):
            try:
                payload = _schedule_input(tpl, ev.get("Input"))
            except (ValueError, KeyError) as exc:
                out.append(f"{name}: Input is not JSON after substitution ({exc})")
                continue
            if payload.get("connection") != params.get("ConnectionName", {}).get("Default"):
                out.append(f"{name}: Input does not name the stack's connection")
            if payload.get("trigger") != "schedule":
                out.append(f"{name}: Input trigger is not schedule")
            if missing := sorted(needed - set(payload)):
                out.append(f"{name}: Input lacks {missing}, which {path.name if path else ''} reads")
    return out


def rule_every_definition_deployed(tpl: Template) -> list[str]:
    """Every flow definition in statemachine/ is deployed by exactly one state machine of the template."""
    deployed: dict[str, list[str]] = {}
    for lid, res in machines(tpl).items():
        path = asl_path(res)
        if path is not None:
            deployed.setdefault(path.resolve().relative_to(ROOT).as_posix(), []).append(lid)
    out = []
    for path in sorted((ROOT / "statemachine").glob("*.asl.json")):
        rel = path.relative_to(ROOT).as_posix()
        by = deployed.get(rel, [])
        if len(by) != 1:
            out.append(f"{rel}: deployed by {by or 'no state machine'}, expected exactly one")
    return out


def rule_janitor_watches_every_flow(tpl: Template) -> list[str]:
    """A lease held by a dead execution of any flow must be released by the janitor."""
    janitor = props(resources(tpl).get("LeaseJanitorFunction", {}))
    patterns = [
        ev.get("Properties", {}).get("Pattern", {})
        for ev in janitor.get("Events", {}).values()
        if ev.get("Type") == "EventBridgeRule"
    ]
    watched = {
        ref_target(arn) for p in patterns for arn in as_list(p.get("detail", {}).get("stateMachineArn", []))
    }
    statuses = {s for p in patterns for s in as_list(p.get("detail", {}).get("status", []))}
    out = [
        f"LeaseJanitorFunction: rule does not watch {machine}"
        for machine in machines(tpl)
        if machine not in watched
    ]
    if not {"FAILED", "TIMED_OUT", "ABORTED"} <= statuses:
        out.append(f"LeaseJanitorFunction: rule statuses {sorted(statuses)} miss FAILED/TIMED_OUT/ABORTED")
    return out


# -- least privilege and deploy-time trust (issue 9) ---------------------------------------------------------

# The functions that talk to Anaplan and so use the KMS-encrypted token cache (steps/context.py: ctx.anaplan).
# tests/integration/platform/test_iam_coverage.py checks against the running flows that exactly these do.
ANAPLAN_FUNCTIONS = frozenset(
    {
        "AnaplanUploadFunction",
        "AnaplanStartFunction",
        "AnaplanCheckFunction",
        "PrepareActualsFunction",
        "MetadataPrecheckFunction",
    }
)
# Functions that manage leases and watermarks; every other function is a flow step.
PLATFORM_FUNCTIONS = frozenset({"RunLedgerFunction", "ModelLeaseFunction", "LeaseJanitorFunction"})
# Key prefixes (docs/ledger.md) whose items may be deleted: leases, their owner pointers, token locks.
DELETABLE_PREFIXES = frozenset({"LEASE#*", "OWNER#*", "TOKEN#*"})
_KMS_USE = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt", "kms:GenerateDataKey")
_DDB_WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
_S3_WRITE = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:*", "*")
# Stand-ins for pseudo parameters when a policy's ARN pattern is matched against a role ARN.
_PSEUDO = {"AWS::Partition": "aws", "AWS::AccountId": "111122223333", "AWS::StackName": "stack",
           "AWS::Region": "eu-west-2"}  # fmt: skip


def kms_use(actions: Any) -> bool:
    return any(a in ("*", "kms:*") or str(a).startswith(_KMS_USE) for a in as_list(actions))


def condition(st: dict[str, Any], key: str) -> Any:
    """The value a statement's Condition gives ``key`` under any operator (None when absent)."""
    for clauses in (st.get("Condition") or {}).values():
        if isinstance(clauses, dict) and key in clauses:
            return clauses[key]
    return None


def function_entries(res: dict[str, Any]) -> list[Any]:
    policies = props(res).get("Policies", [])
    return [policies] if isinstance(policies, (str, dict)) else list(policies)


def function_statements(res: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        st
        for entry in function_entries(res)
        if isinstance(entry, dict)
        for st in as_list(entry.get("Statement", []))
    ]


def function_templates(res: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [entry[name] for entry in function_entries(res) if isinstance(entry, dict) and name in entry]


def key_policy(tpl: Template) -> list[dict[str, Any]]:
    key = props(resources(tpl).get(cmk_id(tpl), {}))
    return list(key.get("KeyPolicy", {}).get("Statement", []))


def sub_text(value: Any) -> str:
    """A ``!Sub`` string with pseudo parameters filled in (other references left as they are)."""
    text = value.get("Fn::Sub") if isinstance(value, dict) else value
    if not isinstance(text, str):
        return ""
    return re.sub(r"\$\{(AWS::[A-Za-z]+)\}", lambda m: _PSEUDO.get(m.group(1), m.group(0)), text)


def role_arn_of(lid: str, res: dict[str, Any]) -> str:
    """The ARN the role of a function (RolePath) or an AWS::IAM::Role (Path) will have, name made up."""
    p = props(res)
    path = sub_text(p.get("RolePath") or p.get("Path") or "/")
    return f"arn:aws:iam::{_PSEUDO['AWS::AccountId']}:role{path}{lid}Role-ABC123"


def rule_allowed_hosts(tpl: Template) -> list[str]:
    """Extra hosts are a stack parameter handed to every function that loads the connection."""
    out = []
    param = tpl.get("Parameters", {}).get("AllowedHosts")
    if param is None:
        return ["no AllowedHosts stack parameter: extra hosts would come from the connection YAML"]
    if param.get("Type") != "String" or param.get("Default") != "":
        out.append("AllowedHosts: must be a String defaulting to empty (no extra hosts)")
    glob = function_globals(tpl).get("Environment", {}).get("Variables", {})
    for lid, res in resources(tpl, "AWS::Serverless::Function").items():
        env = {**glob, **props(res).get("Environment", {}).get("Variables", {})}
        loads = any(
            is_ref(t.get("BucketName"), "ConfigBucket") for t in function_templates(res, "S3ReadPolicy")
        )
        value = env.get("CONNECTOR_ALLOWED_HOSTS")
        if loads and value != {"Ref": "AllowedHosts"}:
            out.append(
                f"{lid}: loads the connection but CONNECTOR_ALLOWED_HOSTS is {value!r}, not !Ref AllowedHosts"
            )
        elif value is not None and value != {"Ref": "AllowedHosts"}:
            out.append(f"{lid}: CONNECTOR_ALLOWED_HOSTS is {value!r}, not !Ref AllowedHosts")
    return out


def rule_config_writers(tpl: Template) -> list[str]:
    """Only the principals a stack parameter names may change connections/*; functions only read it."""
    out = []
    params = set(tpl.get("Parameters", {}))
    guarded = False
    for st in _bucket_policy_statements(tpl, "ConfigBucket"):
        actions = set(as_list(st.get("Action")))
        resources_ = [sub_text(r) for r in as_list(st.get("Resource"))]
        who = condition(st, "aws:PrincipalArn")
        operator_ok = any(op in (st.get("Condition") or {}) for op in ("ArnNotLike", "ArnNotEquals"))
        if (
            st.get("Effect") == "Deny"
            and st.get("Principal") in ("*", {"AWS": "*"})
            and {"s3:PutObject", "s3:DeleteObject"} <= actions
            and any(r.endswith(("/connections/*", "}/*")) for r in resources_)
            and operator_ok
            and ref_target(who) in params
        ):
            guarded = True
    if not guarded:
        out.append(
            "ConfigBucket: no statement denying PutObject/DeleteObject on connections/* to every principal "
            "but those a stack parameter names (aws:PrincipalArn)"
        )
    for lid, res in resources(tpl, "AWS::Serverless::Function").items():
        out.extend(
            f"{lid}: {name} on ConfigBucket (functions only read connections)"
            for name in ("S3CrudPolicy", "S3WritePolicy", "S3FullAccessPolicy")
            if any(is_ref(t.get("BucketName"), "ConfigBucket") for t in function_templates(res, name))
        )
        out.extend(
            f"{lid}: statement {st.get('Sid')} writes to ConfigBucket"
            for st in function_statements(res)
            if st.get("Effect") == "Allow"
            and any(a in _S3_WRITE for a in as_list(st.get("Action")))
            and any("ConfigBucket" in json.dumps(r) for r in as_list(st.get("Resource")))
        )
    return out


def rule_kms_key_use(tpl: Template) -> list[str]:
    """The key is used through services, except the Anaplan token cache: Anaplan functions, its context only."""
    from d365_anaplan.ledger.tokens import encryption_context

    context = encryption_context("anaplan-token#demo#0123456789abcdef")
    out = []
    for lid, res in resources(tpl, "AWS::Serverless::Function").items():
        out.extend(
            f"{lid}: {name} lets it use the key directly (token cache included)"
            for name in ("KMSDecryptPolicy", "KMSEncryptPolicy")
            if function_templates(res, name)
        )
        has_token_grant = False
        for st in function_statements(res):
            if st.get("Effect") != "Allow" or not kms_use(st.get("Action")):
                continue
            if condition(st, "kms:ViaService"):
                continue
            purpose = condition(st, "kms:EncryptionContext:purpose")
            if lid not in ANAPLAN_FUNCTIONS:
                out.append(
                    f"{lid}: statement {st.get('Sid')} uses the key directly but {lid} is no Anaplan function"
                )
            elif purpose != context["purpose"]:
                out.append(
                    f"{lid}: statement {st.get('Sid')} uses the key directly without the token cache's "
                    f"encryption context (purpose={context['purpose']})"
                )
            elif not set(as_list(st.get("Action"))) <= {"kms:Encrypt", "kms:Decrypt"}:
                out.append(
                    f"{lid}: statement {st.get('Sid')} grants {st.get('Action')}, the cache needs Encrypt/Decrypt"
                )
            else:
                has_token_grant = True
        if lid in ANAPLAN_FUNCTIONS and not has_token_grant:
            out.append(f"{lid}: no kms:Encrypt/Decrypt for the Anaplan token cache (its context)")
    for st in key_policy(tpl):
        principal = st.get("Principal", {})
        if st.get("Effect") != "Allow" or not isinstance(principal, dict) or "AWS" not in principal:
            continue
        if not kms_use(st.get("Action")):
            continue
        conds = {k for clauses in (st.get("Condition") or {}).values() for k in clauses}
        if "kms:ViaService" not in conds and not any(k.startswith("kms:EncryptionContext:") for k in conds):
            out.append(
                f"{cmk_id(tpl)}: key policy statement {st.get('Sid')} lets principals use the key directly, "
                "without kms:ViaService or an encryption-context condition"
            )
        if (
            "kms:EncryptionContext:purpose" in conds
            and condition(st, "kms:EncryptionContext:purpose") != context["purpose"]
        ):
            out.append(f"{cmk_id(tpl)}: statement {st.get('Sid')} names another purpose than the token cache")
    return out


def rule_key_administrators(tpl: Template) -> list[str]:
    """Key administrators (a stack parameter, default the account root) cannot use the key."""
    out = []
    param = tpl.get("Parameters", {}).get("KeyAdminArn")
    if param is None or param.get("Default") != "":
        out.append("no KeyAdminArn stack parameter defaulting to empty (the account root)")
    admins = [
        st
        for st in key_policy(tpl)
        if st.get("Effect") == "Allow" and "KeyAdminArn" in json.dumps(st.get("Principal"))
    ]
    if not admins:
        out.append(f"{cmk_id(tpl)}: no key policy statement for the KeyAdminArn principal")
    for st in admins:
        actions = set(as_list(st.get("Action")))
        if kms_use(sorted(actions)) or {"kms:Create*", "kms:CreateGrant"} & actions:
            out.append(
                f"{cmk_id(tpl)}: administrators ({st.get('Sid')}) may also use the key: {sorted(actions)}"
            )
        if not ({"kms:Put*", "kms:PutKeyPolicy"} & actions and {"kms:ScheduleKeyDeletion"} & actions):
            out.append(
                f"{cmk_id(tpl)}: administrators ({st.get('Sid')}) cannot manage the key policy and deletion"
            )
    out.extend(
        f"{cmk_id(tpl)}: statement {st.get('Sid')} grants kms:*"
        for st in key_policy(tpl)
        if st.get("Effect") == "Allow" and {"kms:*", "*"} & set(as_list(st.get("Action")))
    )
    return out


def rule_ledger_access(tpl: Template) -> list[str]:
    """Ledger access by key prefix (dynamodb:LeadingKeys); no deletes of run, audit or watermark items."""
    out = []
    for lid, res in resources(tpl, "AWS::Serverless::Function").items():
        out.extend(
            f"{lid}: {name} on LedgerTable (every key, no LeadingKeys condition)"
            for name in ("DynamoDBCrudPolicy", "DynamoDBWritePolicy", "DynamoDBReadPolicy")
            if any(is_ref(t.get("TableName"), "LedgerTable") for t in function_templates(res, name))
        )
        for st in function_statements(res):
            actions = [str(a) for a in as_list(st.get("Action"))]
            on_ledger = any(
                is_ref(r, "LedgerTable") or "LedgerTable" in json.dumps(r)
                for r in as_list(st.get("Resource"))
            )
            if (
                st.get("Effect") != "Allow"
                or not on_ledger
                or not any(a.startswith("dynamodb:") or a == "*" for a in actions)
            ):
                continue
            keys = set(
                as_list(
                    (st.get("Condition") or {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
                )
            )
            keys.discard(None)
            if not keys:
                out.append(
                    f"{lid}: statement {st.get('Sid')} on LedgerTable has no dynamodb:LeadingKeys condition"
                )
            bad = [a for a in actions if a in ("*", "dynamodb:*", "dynamodb:BatchWriteItem", "dynamodb:Scan")
                   or a.startswith("dynamodb:PartiQL") or a.endswith("Table")]  # fmt: skip
            if bad:
                out.append(f"{lid}: statement {st.get('Sid')} grants {bad} on LedgerTable")
            if "dynamodb:DeleteItem" in actions and not keys <= DELETABLE_PREFIXES:
                out.append(
                    f"{lid}: statement {st.get('Sid')} may delete {sorted(keys - DELETABLE_PREFIXES)} items"
                )
            if (
                lid not in PLATFORM_FUNCTIONS
                and "dynamodb:DeleteItem" in actions
                and keys & {"LEASE#*", "OWNER#*"}
            ):
                out.append(f"{lid}: a flow step may delete model leases")
            if lid == "CloseGateFunction" and any(a in _DDB_WRITE for a in actions):
                out.append(f"{lid}: writes the ledger; the close gate only reads watermarks")
    return out


def rule_secret_readers(tpl: Template) -> list[str]:
    """Each secret's resource policy lets exactly the functions that read it call GetSecretValue."""
    out = []
    functions = resources(tpl, "AWS::Serverless::Function")
    principals = {**functions, **resources(tpl, "AWS::IAM::Role")}
    policies = resources(tpl, "AWS::SecretsManager::ResourcePolicy")
    for secret in resources(tpl, "AWS::SecretsManager::Secret"):
        readers = {
            lid
            for lid, res in functions.items()
            if any(
                is_ref(t.get("SecretArn"), secret)
                for t in function_templates(res, "AWSSecretsManagerGetSecretValuePolicy")
            )
        }
        denies = [
            st
            for pol in policies.values()
            if is_ref(props(pol).get("SecretId"), secret)
            for st in as_list(props(pol).get("ResourcePolicy", {}).get("Statement", []))
            if st.get("Effect") == "Deny"
            and st.get("Principal") in ("*", {"AWS": "*"})
            and {"secretsmanager:GetSecretValue", "secretsmanager:*"} & set(as_list(st.get("Action")))
            and (st.get("Condition") or {}).get("ArnNotLike", {}).get("aws:PrincipalArn")
        ]
        if len(denies) != 1:
            out.append(f"{secret}: no resource policy denying GetSecretValue to all but its readers")
            continue
        patterns = [sub_text(p) for p in as_list(denies[0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"])]
        for lid, res in principals.items():
            allowed = any(fnmatch.fnmatchcase(role_arn_of(lid, res), p) for p in patterns)
            if lid in readers and not allowed:
                out.append(f"{secret}: resource policy denies its reader {lid}")
            elif lid not in readers and allowed:
                out.append(f"{secret}: resource policy lets {lid} read it, which does not use it")
    return out


def rule_tracer_captures_nothing(tpl: Template) -> list[str]:
    """X-Ray segments are not encrypted with the connector key: handler results and errors stay out."""
    out = []
    glob = function_globals(tpl).get("Environment", {}).get("Variables", {})
    for var in ("POWERTOOLS_TRACER_CAPTURE_RESPONSE", "POWERTOOLS_TRACER_CAPTURE_ERROR"):
        if str(glob.get(var)).lower() != "false":
            out.append(f"Globals.Function: {var} is {glob.get(var)!r}, not 'false'")
        for lid, res in resources(tpl, "AWS::Serverless::Function").items():
            value = props(res).get("Environment", {}).get("Variables", {}).get(var)
            if value is not None and str(value).lower() != "false":
                out.append(f"{lid}: {var} is {value!r}")
    return out


def rule_state_machines_encrypted(tpl: Template) -> list[str]:
    """Both flows encrypt definition and history with the connector key; role and key policy allow it."""
    out = []
    key = cmk_id(tpl)
    policy = key_policy(tpl)
    for lid, res in machines(tpl).items():
        p = props(res)
        enc = p.get("EncryptionConfiguration") or {}
        if enc.get("Type") != "CUSTOMER_MANAGED_KMS_KEY" or not is_ref(enc.get("KmsKeyId"), key):
            out.append(f"{lid}: not encrypted with {key} (EncryptionConfiguration CUSTOMER_MANAGED_KMS_KEY)")
            continue
        arn = f"stateMachine:{sub_text(p.get('StateMachineName', p.get('Name')))}"
        statements = machine_statements(tpl, res)

        def grants(sts: list[dict[str, Any]], actions: set[str], ctx_key: str, want: str) -> bool:
            return any(
                st.get("Effect") == "Allow"
                and actions <= set(as_list(st.get("Action")))
                and any(want in sub_text(v) for v in as_list(condition(st, ctx_key)))
                for st in sts
            )

        ctx_key = "kms:EncryptionContext:aws:states:stateMachineArn"
        if not grants(statements, {"kms:Decrypt", "kms:GenerateDataKey"}, ctx_key, arn):
            out.append(f"{lid}: its role may not Decrypt/GenerateDataKey with {ctx_key} = its ARN")
        if not grants(policy, {"kms:Decrypt", "kms:GenerateDataKey"}, ctx_key, arn):
            out.append(f"{key}: key policy does not allow {lid}'s execution data ({ctx_key})")
        if machine_logging(res).get("Destinations"):
            if not grants(statements, {"kms:GenerateDataKey"}, "kms:EncryptionContext:SourceArn", ":logs:"):
                out.append(f"{lid}: logs to CloudWatch but its role may not GenerateDataKey for log delivery")
            delivery = any(
                st.get("Effect") == "Allow"
                and st.get("Principal") == {"Service": "delivery.logs.amazonaws.com"}
                and "kms:Decrypt" in as_list(st.get("Action"))
                for st in policy
            )
            if not delivery:
                out.append(
                    f"{key}: key policy does not let delivery.logs.amazonaws.com decrypt {lid}'s log records"
                )
    return out


RULES: dict[str, Rule] = {
    "contract_ids": rule_contract_ids,
    "kms_rotation": rule_kms_rotation,
    "buckets": rule_buckets,
    "unencrypted_uploads": rule_data_buckets_deny_unencrypted_uploads,
    "staging_lifecycle": rule_staging_lifecycle,
    "tables": rule_tables,
    "secrets": rule_secrets,
    "queues_and_topics": rule_queues_and_topics,
    "function_log_groups": rule_function_log_groups,
    "function_policies": rule_function_policies,
    "function_globals": rule_function_globals,
    "state_machines": rule_state_machines,
    "schedules": rule_schedules,
    "schedule_input": rule_schedule_input,
    "alarms": rule_alarms,
    "janitor": rule_janitor_watches_every_flow,
    "definitions_deployed": rule_every_definition_deployed,
    "allowed_hosts": rule_allowed_hosts,
    "config_writers": rule_config_writers,
    "kms_key_use": rule_kms_key_use,
    "key_administrators": rule_key_administrators,
    "ledger_access": rule_ledger_access,
    "secret_readers": rule_secret_readers,
    "tracer_captures_nothing": rule_tracer_captures_nothing,
    "state_machines_encrypted": rule_state_machines_encrypted,
}


# -- the real template ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> Template:
    return load()


@pytest.mark.parametrize("name", list(RULES))
def test_rule_holds(template: Template, name: str) -> None:
    assert RULES[name](template) == []


def test_every_state_machine_definition_is_checked_when_present(template: Template) -> None:
    """The substitution check above is skipped for a missing file; say so instead of passing silently."""
    for lid, res in machines(template).items():
        path = asl_path(res)
        assert path is not None, f"{lid}: no DefinitionUri/DefinitionS3Location"
        if not path.exists():
            pytest.skip(f"{lid}: {path.relative_to(ROOT)} not written yet")


# -- each rule can fail -----------------------------------------------------------------------------------


def _res(tpl: Template, lid: str) -> dict[str, Any]:
    return dict(tpl["Resources"][lid]["Properties"])


def _set(tpl: Template, lid: str, path: str, value: Any) -> None:
    node = tpl["Resources"][lid]["Properties"]
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()


def _first_function(tpl: Template) -> str:
    return sorted(resources(tpl, "AWS::Serverless::Function"))[0]


def _break_tls_deny(tpl: Template) -> None:
    for res in resources(tpl, "AWS::S3::BucketPolicy").values():
        if is_ref(res["Properties"]["Bucket"], "StagingBucket"):
            res["Properties"]["PolicyDocument"]["Statement"] = [
                st
                for st in res["Properties"]["PolicyDocument"]["Statement"]
                if not _denies_insecure_transport(st)
            ]


def _add_wildcard_statement(tpl: Template) -> None:
    fn = _first_function(tpl)
    tpl["Resources"][fn]["Properties"]["Policies"].append(
        {"Statement": [{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}]}
    )


def _drop_log_retention(tpl: Template) -> None:
    fn = _first_function(tpl)
    group = ref_target(tpl["Resources"][fn]["Properties"]["LoggingConfig"]["LogGroup"])
    assert group is not None
    del tpl["Resources"][group]["Properties"]["RetentionInDays"]


def _schedules_of(tpl: Template, flow: str) -> list[dict[str, Any]]:
    """The properties of the AWS::Scheduler::Schedule resources that start ``flow`` (mutable)."""
    return [
        res["Properties"]
        for res in resources(tpl, "AWS::Scheduler::Schedule").values()
        if is_ref(res["Properties"].get("Target", {}).get("Arn"), flow)
    ]


def _drop_timezone(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for ev in tpl["Resources"][flow]["Properties"].get("Events", {}).values():
            ev.get("Properties", {}).pop("ScheduleExpressionTimezone", None)
        for sched in _schedules_of(tpl, flow):
            sched.pop("ScheduleExpressionTimezone", None)

    return mutate


def _extra_substitution(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        tpl["Resources"][flow]["Properties"]["DefinitionSubstitutions"]["UnusedArn"] = {
            "Fn::GetAtt": ["CloseGateFunction", "Arn"]
        }

    return mutate


def _drop_substitution(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        subs = tpl["Resources"][flow]["Properties"]["DefinitionSubstitutions"]
        subs.pop(sorted(subs)[-1])

    return mutate


def _drop_invoke_policy(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        p = tpl["Resources"][flow]["Properties"]
        p["Policies"] = [
            pol
            for pol in p.get("Policies", [])
            if not (isinstance(pol, dict) and "LambdaInvokePolicy" in pol)
        ]
        role = tpl["Resources"].get(ref_target(p.get("RoleArn")) or "", {})
        for pol in role.get("Properties", {}).get("Policies", []):
            doc = pol["PolicyDocument"]
            doc["Statement"] = [
                st
                for st in as_list(doc["Statement"])
                if "lambda:InvokeFunction" not in as_list(st.get("Action"))
            ]

    return mutate


def _unwatched_by_janitor(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for ev in tpl["Resources"]["LeaseJanitorFunction"]["Properties"]["Events"].values():
            detail = ev.get("Properties", {}).get("Pattern", {}).get("detail", {})
            if "stateMachineArn" in detail:
                detail["stateMachineArn"] = [
                    a for a in as_list(detail["stateMachineArn"]) if not is_ref(a, flow)
                ]

    return mutate


def _unalarmed(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for lid, a in resources(tpl, "AWS::CloudWatch::Alarm").items():
            if any(is_ref(d.get("Value"), flow) for d in props(a).get("Dimensions", [])):
                del tpl["Resources"][lid]

    return mutate


def _undeployed(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        del tpl["Resources"][flow]

    return mutate


def _expire_everything(tpl: Template) -> None:
    tpl["Resources"]["StagingBucket"]["Properties"]["LifecycleConfiguration"]["Rules"].append(
        {"Id": "Everything", "Status": "Enabled", "ExpirationInDays": 30}
    )


def _schedule_without_connection(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for ev in tpl["Resources"][flow]["Properties"].get("Events", {}).values():
            ev["Properties"]["Input"] = '{"trigger": "schedule", "periods": null}'
        for sched in _schedules_of(tpl, flow):
            sched["Target"]["Input"] = '{"trigger": "schedule", "periods": null}'

    return mutate


def _second_machine(tpl: Template) -> None:
    tpl["Resources"]["OtherFlow"] = copy.deepcopy(tpl["Resources"]["ActualsFlow"])


def _statement(tpl: Template, lid: str, sid: str) -> dict[str, Any]:
    for entry in tpl["Resources"][lid]["Properties"]["Policies"]:
        for st in entry.get("Statement", []) if isinstance(entry, dict) else []:
            if st.get("Sid") == sid:
                return dict(st)
    raise KeyError(f"{lid} has no statement {sid}")


def _add_statement(tpl: Template, lid: str, st: dict[str, Any]) -> None:
    tpl["Resources"][lid]["Properties"]["Policies"].append({"Statement": [copy.deepcopy(st)]})


def _edit_statement(lid: str, sid: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for entry in tpl["Resources"][lid]["Properties"]["Policies"]:
            for st in entry.get("Statement", []) if isinstance(entry, dict) else []:
                if st.get("Sid") == sid:
                    edit(st)

    return mutate


def _drop_config_guard(tpl: Template) -> None:
    for res in resources(tpl, "AWS::S3::BucketPolicy").values():
        if is_ref(res["Properties"]["Bucket"], "ConfigBucket"):
            doc = res["Properties"]["PolicyDocument"]
            doc["Statement"] = [st for st in doc["Statement"] if "aws:PrincipalArn" not in json.dumps(st)]


def _key_statement(sid: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for st in tpl["Resources"]["ConnectorKey"]["Properties"]["KeyPolicy"]["Statement"]:
            if st.get("Sid") == sid:
                edit(st)

    return mutate


def _root_uses_key(tpl: Template) -> None:
    tpl["Resources"]["ConnectorKey"]["Properties"]["KeyPolicy"]["Statement"].append(
        {
            "Sid": "Root",
            "Effect": "Allow",
            "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},
            "Action": ["kms:Decrypt"],
            "Resource": "*",
        }
    )


def _drop_role_statement(role: str, sid: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for pol in tpl["Resources"][role]["Properties"]["Policies"]:
            doc = pol["PolicyDocument"]
            doc["Statement"] = [st for st in doc["Statement"] if st.get("Sid") != sid]

    return mutate


BREAKAGES: dict[str, tuple[str, Callable[[Template], None]]] = {
    "rotation off": ("kms_rotation", lambda t: _set(t, "ConnectorKey", "EnableKeyRotation", False)),
    "bucket SSE-S3": (
        "buckets",
        lambda t: _set(
            t,
            "StagingBucket",
            "BucketEncryption.ServerSideEncryptionConfiguration.0.ServerSideEncryptionByDefault",
            {"SSEAlgorithm": "AES256"},
        ),
    ),
    "versioning suspended": (
        "buckets",
        lambda t: _set(t, "StagingBucket", "VersioningConfiguration.Status", "Suspended"),
    ),
    "public policy allowed": (
        "buckets",
        lambda t: _set(t, "StagingBucket", "PublicAccessBlockConfiguration.BlockPublicPolicy", False),
    ),
    "no TLS deny": ("buckets", _break_tls_deny),
    "runs/ kept 30 days": (
        "staging_lifecycle",
        lambda t: t["Parameters"]["StagingRetentionDays"].update(Default=30),
    ),
    "connections/ expire": ("staging_lifecycle", _expire_everything),
    "table on AWS-owned key": (
        "tables",
        lambda t: _set(t, "LedgerTable", "SSESpecification", {"SSEEnabled": True}),
    ),
    "PITR off": (
        "tables",
        lambda t: _set(
            t, "LedgerTable", "PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled", False
        ),
    ),
    "secret on default key": ("secrets", lambda t: _set(t, "AnaplanCredentialsSecret", "KmsKeyId", _DELETE)),
    "queue unencrypted": (
        "queues_and_topics",
        lambda t: _set(t, "LeaseJanitorDeadLetterQueue", "KmsMasterKeyId", _DELETE),
    ),
    "log group without retention": ("function_log_groups", _drop_log_retention),
    "wildcard resource": ("function_policies", _add_wildcard_statement),
    "managed policy": (
        "function_policies",
        lambda t: t["Resources"][_first_function(t)]["Properties"]["Policies"].append("AdministratorAccess"),
    ),
    "env not on CMK": ("function_globals", lambda t: t["Globals"]["Function"].pop("KmsKeyArn")),
    "flow without alarms": ("alarms", _second_machine),
    "flow the janitor ignores": ("janitor", _second_machine),
    "renamed function": (
        "contract_ids",
        lambda t: t["Resources"].update(RunLedger=t["Resources"].pop("RunLedgerFunction")),
    ),
    # least privilege and deploy-time trust (issue 9)
    "extra hosts not passed to a function": (
        "allowed_hosts",
        lambda t: t["Resources"]["AnaplanCheckFunction"]["Properties"].pop("Environment"),
    ),
    "extra hosts by default": (
        "allowed_hosts",
        lambda t: t["Parameters"]["AllowedHosts"].update(Default="evil.example"),
    ),
    "anyone may write connections": ("config_writers", _drop_config_guard),
    "a function may write connections": (
        "config_writers",
        lambda t: t["Resources"]["RunLedgerFunction"]["Properties"]["Policies"].append(
            {"S3CrudPolicy": {"BucketName": {"Ref": "ConfigBucket"}}}
        ),
    ),
    "KMSDecryptPolicy for a flow step": (
        "kms_key_use",
        lambda t: t["Resources"]["CloseGateFunction"]["Properties"]["Policies"].append(
            {"KMSDecryptPolicy": {"KeyId": {"Ref": "ConnectorKey"}}}
        ),
    ),
    "token cache key without context": (
        "kms_key_use",
        _edit_statement("AnaplanStartFunction", "AnaplanTokenCacheKey", lambda st: st.pop("Condition")),
    ),
    "token cache key for an F&O function": (
        "kms_key_use",
        lambda t: _add_statement(
            t, "ExtractGLFunction", _statement(t, "AnaplanUploadFunction", "AnaplanTokenCacheKey")
        ),
    ),
    "account root decrypts directly": ("kms_key_use", _root_uses_key),
    "administrators decrypt": (
        "key_administrators",
        _key_statement("KeyAdministration", lambda st: st["Action"].append("kms:Decrypt")),
    ),
    "administrators may grant themselves use": (
        "key_administrators",
        _key_statement("KeyAdministration", lambda st: st["Action"].append("kms:Create*")),
    ),
    "administrators are everyone": (
        "key_administrators",
        _key_statement("KeyAdministration", lambda st: st.update(Action="kms:*")),
    ),
    "ledger CRUD for a flow step": (
        "ledger_access",
        lambda t: t["Resources"]["PlanJournalsFunction"]["Properties"]["Policies"].append(
            {"DynamoDBCrudPolicy": {"TableName": {"Ref": "LedgerTable"}}}
        ),
    ),
    "flow step deletes audit items": (
        "ledger_access",
        _edit_statement(
            "WriteJournalFunction", "LedgerRunRecords", lambda st: st["Action"].append("dynamodb:DeleteItem")
        ),
    ),
    "flow step batch-writes (and so may batch-delete)": (
        "ledger_access",
        _edit_statement(
            "ReplayLinesFunction",
            "LedgerRunRecords",
            lambda st: st["Action"].append("dynamodb:BatchWriteItem"),
        ),
    ),
    "ledger statement for every key": (
        "ledger_access",
        _edit_statement("ExtractGLFunction", "LedgerRunRecords", lambda st: st.pop("Condition")),
    ),
    "close gate writes": (
        "ledger_access",
        _edit_statement(
            "CloseGateFunction", "LedgerWatermarksRead", lambda st: st["Action"].append("dynamodb:UpdateItem")
        ),
    ),
    "secret without resource policy": (
        "secret_readers",
        lambda t: t["Resources"].pop("AnaplanCredentialsSecretPolicy"),
    ),
    "F&O function on the Anaplan role path": (
        "secret_readers",
        lambda t: _set(
            t, "ExtractGLFunction", "RolePath", {"Fn::Sub": "/d365-anaplan/${AWS::StackName}/anaplan/"}
        ),
    ),
    "tracer captures responses": (
        "tracer_captures_nothing",
        lambda t: t["Globals"]["Function"]["Environment"]["Variables"].update(
            POWERTOOLS_TRACER_CAPTURE_RESPONSE="true"
        ),
    ),
    "flow on the AWS-owned key": (
        "state_machines_encrypted",
        lambda t: _set(t, "PlansFlow", "EncryptionConfiguration", _DELETE),
    ),
    "flow role without the key": (
        "state_machines_encrypted",
        _drop_role_statement("ActualsFlowRole", "ExecutionDataKey"),
    ),
    "key policy without the flows": (
        "state_machines_encrypted",
        lambda t: t["Resources"]["ConnectorKey"]["Properties"]["KeyPolicy"]["Statement"].__setitem__(
            slice(None),
            [
                st
                for st in t["Resources"]["ConnectorKey"]["Properties"]["KeyPolicy"]["Statement"]
                if st.get("Sid") != "StateMachinesEncryptExecutionData"
            ],
        ),
    ),
}
# Per-flow breakages: each flow is shown to be covered by the same rules (the ASL-dependent ones skip while
# the flow's definition file is missing).
_PER_FLOW: dict[str, tuple[str, Callable[[str], Callable[[Template], None]]]] = {
    "extra substitution": ("state_machines", _extra_substitution),
    "missing substitution": ("state_machines", _drop_substitution),
    "no invoke policy": ("state_machines", _drop_invoke_policy),
    "no timezone": ("schedules", _drop_timezone),
    "schedule input without connection": ("schedule_input", _schedule_without_connection),
    "janitor ignores it": ("janitor", _unwatched_by_janitor),
    "no alarms": ("alarms", _unalarmed),
    "definition not deployed": ("definitions_deployed", _undeployed),
}
BREAKAGE_FLOW: dict[str, str] = {}
for _flow in FLOWS:
    for _name, (_rule, _make) in _PER_FLOW.items():
        BREAKAGES[f"{_flow}: {_name}"] = (_rule, _make(_flow))
        BREAKAGE_FLOW[f"{_flow}: {_name}"] = _flow


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_rule_catches(template: Template, breakage: str) -> None:
    rule, mutate = BREAKAGES[breakage]
    broken = copy.deepcopy(template)
    if rule in ("state_machines", "schedule_input", "definitions_deployed"):
        path = asl_path(broken["Resources"][BREAKAGE_FLOW.get(breakage, "ActualsFlow")])
        if path is None or not path.exists():
            pytest.skip("the ASL file is not there to compare substitutions with")
    mutate(broken)
    assert RULES[rule](broken), f"rule {rule} did not notice: {breakage}"

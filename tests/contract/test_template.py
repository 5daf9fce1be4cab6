"""Security and wiring contract of ``template.yaml``.

Each rule is a function that takes the decoded template (``cfnlint.decode.decode``, which understands the
short-form intrinsics) and returns a list of problems, one line each. The ``test_*_holds`` tests assert the
real template has none; the ``test_rule_catches_*`` tests break a copy of the template and assert the same
rule reports it, so every rule is shown to be able to fail.
"""

from __future__ import annotations

import copy
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
    "IdempotencyTable": "AWS::DynamoDB::Table",
    "DynamicsCredentialsSecret": "AWS::SecretsManager::Secret",
    "AnaplanCredentialsSecret": "AWS::SecretsManager::Secret",
    "ConnectorLayer": "AWS::Serverless::LayerVersion",
    "RunLedgerFunction": "AWS::Serverless::Function",
    "ModelLeaseFunction": "AWS::Serverless::Function",
    "LeaseJanitorFunction": "AWS::Serverless::Function",
    "CloseGateFunction": "AWS::Serverless::Function",
    "ActualsFlow": "AWS::Serverless::StateMachine",
    "PlansFlow": "AWS::Serverless::StateMachine",
    "FailedExecutionsAlarm": "AWS::CloudWatch::Alarm",
    "AlarmTopic": "AWS::SNS::Topic",
}
FUNCTION_ENV = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LEDGER_TABLE",
    "IDEMPOTENCY_TABLE",
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


def asl_path(res: dict[str, Any]) -> Path | None:
    uri = props(res).get("DefinitionUri")
    return ROOT / uri if isinstance(uri, str) else None


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
    idem = props(tables.get("IdempotencyTable", {}))
    if [k.get("AttributeName") for k in idem.get("KeySchema", [])] != ["id"]:
        out.append("IdempotencyTable: key is not id")
    if idem.get("TimeToLiveSpecification", {}).get("AttributeName") != "expiration":
        out.append("IdempotencyTable: TTL attribute is not expiration")
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
    for lid, res in resources(tpl, "AWS::Serverless::StateMachine").items():
        dests = props(res).get("Logging", {}).get("Destinations", [])
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
    machines = resources(tpl, "AWS::Serverless::StateMachine")
    for lid, res in machines.items():
        p = props(res)
        if p.get("Type") != "STANDARD":
            out.append(f"{lid}: Type is not STANDARD")
        if "Definition" in p or not isinstance(p.get("DefinitionUri"), str):
            out.append(f"{lid}: the definition must come from DefinitionUri statemachine/*.asl.json")
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
        invokable = {
            ref_target(pol["LambdaInvokePolicy"].get("FunctionName"))
            for pol in p.get("Policies", [])
            if isinstance(pol, dict) and "LambdaInvokePolicy" in pol
        }
        for key, value in subs.items():
            target = ref_target(value)
            if isinstance(value, str) and value.startswith("arn:"):
                out.append(f"{lid}: substitution {key} is a hard-coded ARN")
            if target in functions and target not in invokable:
                out.append(f"{lid}: substitutes {target} but has no LambdaInvokePolicy for it")
        logging = p.get("Logging", {})
        if logging.get("Level") not in ("ERROR", "ALL") or logging.get("IncludeExecutionData") is not False:
            out.append(f"{lid}: Logging must be ERROR/ALL with IncludeExecutionData false")
        if p.get("Tracing", {}).get("Enabled") is not True:
            out.append(f"{lid}: tracing is not enabled")
    return out


def rule_schedules(tpl: Template) -> list[str]:
    out = []
    schedules = 0
    for lid, res in resources(tpl, "AWS::Serverless::StateMachine").items():
        for name, ev in props(res).get("Events", {}).items():
            if ev.get("Type") == "Schedule":
                out.append(f"{lid}.{name}: rule-based Schedule evaluates cron in UTC; use ScheduleV2")
            if ev.get("Type") != "ScheduleV2":
                continue
            schedules += 1
            ep = ev.get("Properties", {})
            if not ep.get("ScheduleExpressionTimezone"):
                out.append(f"{lid}.{name}: ScheduleV2 has no ScheduleExpressionTimezone")
            if ep.get("OmitName") is not True:
                out.append(f"{lid}.{name}: OmitName is not true (two stacks would collide)")
            if not ep.get("RetryPolicy"):
                out.append(f"{lid}.{name}: no RetryPolicy")
            if not ep.get("Input"):
                out.append(f"{lid}.{name}: no Input naming the connection")
    if schedules == 0:
        out.append("no ScheduleV2 event starts any state machine")
    return out


def rule_alarms(tpl: Template) -> list[str]:
    alarms = resources(tpl, "AWS::CloudWatch::Alarm")
    metrics = {(props(a).get("Namespace"), props(a).get("MetricName")) for a in alarms.values()}
    out = [
        f"no alarm on AWS/States {metric}"
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut")
        if ("AWS/States", metric) not in metrics
    ]
    for machine in resources(tpl, "AWS::Serverless::StateMachine"):
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
    for lid, res in resources(tpl, "AWS::Serverless::StateMachine").items():
        path = asl_path(res)
        needed = (
            asl_input_keys(json.loads(path.read_text(encoding="utf-8"))) if path and path.exists() else set()
        )
        for name, ev in props(res).get("Events", {}).items():
            if ev.get("Type") != "ScheduleV2":
                continue
            try:
                payload = _schedule_input(tpl, ev.get("Properties", {}).get("Input"))
            except (ValueError, KeyError) as exc:
                out.append(f"{lid}.{name}: Input is not JSON after substitution ({exc})")
                continue
            if payload.get("connection") != params.get("ConnectionName", {}).get("Default"):
                out.append(f"{lid}.{name}: Input does not name the stack's connection")
            if payload.get("trigger") != "schedule":
                out.append(f"{lid}.{name}: Input trigger is not schedule")
            if missing := sorted(needed - set(payload)):
                out.append(f"{lid}.{name}: Input lacks {missing}, which {path.name if path else ''} reads")
    return out


def rule_every_definition_deployed(tpl: Template) -> list[str]:
    """Every flow definition in statemachine/ is deployed by exactly one state machine of the template."""
    deployed: dict[str, list[str]] = {}
    for lid, res in resources(tpl, "AWS::Serverless::StateMachine").items():
        path = asl_path(res)
        if path is not None:
            deployed.setdefault(path.resolve().relative_to(ROOT).as_posix(), []).append(lid)
    out = []
    for path in sorted((ROOT / "statemachine").glob("*.asl.json")):
        rel = path.relative_to(ROOT).as_posix()
        machines = deployed.get(rel, [])
        if len(machines) != 1:
            out.append(f"{rel}: deployed by {machines or 'no state machine'}, expected exactly one")
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
        for machine in resources(tpl, "AWS::Serverless::StateMachine")
        if machine not in watched
    ]
    if not {"FAILED", "TIMED_OUT", "ABORTED"} <= statuses:
        out.append(f"LeaseJanitorFunction: rule statuses {sorted(statuses)} miss FAILED/TIMED_OUT/ABORTED")
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
    for lid, res in resources(template, "AWS::Serverless::StateMachine").items():
        path = asl_path(res)
        assert path is not None, f"{lid}: no DefinitionUri"
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


def _drop_timezone(flow: str) -> Callable[[Template], None]:
    def mutate(tpl: Template) -> None:
        for ev in tpl["Resources"][flow]["Properties"].get("Events", {}).values():
            ev.get("Properties", {}).pop("ScheduleExpressionTimezone", None)

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
            pol for pol in p["Policies"] if not (isinstance(pol, dict) and "LambdaInvokePolicy" in pol)
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
        ev = tpl["Resources"][flow]["Properties"]["Events"]["Schedule"]["Properties"]
        ev["Input"] = '{"trigger": "schedule", "periods": null}'

    return mutate


def _second_machine(tpl: Template) -> None:
    tpl["Resources"]["OtherFlow"] = copy.deepcopy(tpl["Resources"]["ActualsFlow"])


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
            t, "IdempotencyTable", "PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled", False
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

"""Parsing and loading connections from YAML (bounded) or a mapping; one line per problem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from d365_anaplan.config.anaplan import AnaplanSettings
from d365_anaplan.config.connection import ConnectionConfig
from d365_anaplan.config.hosts import ALLOWED_HOSTS_ENV, host_problems
from d365_anaplan.config.secret_ref import SECRET_ARN
from d365_anaplan.errors import ConfigError


def _raw_host_problems(data: Any, aws: bool = False) -> list[str]:
    """Host checks on unvalidated input, so they are reported alongside other problems."""
    if not isinstance(data, dict):
        return []

    def section(name: str) -> dict[str, Any]:
        value = data.get(name)
        return value if isinstance(value, dict) else {}

    dyn, ana, sec = section("dynamics"), section("anaplan"), section("security")
    hosts = sec.get("allowed_hosts")
    allowed = [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []
    env_url = dyn.get("environment_url") if isinstance(dyn.get("environment_url"), str) else None
    authority = dyn.get("authority_host", "https://login.microsoftonline.com")
    defaults = AnaplanSettings.model_fields
    urls: dict[str, str] = {}
    for f in ("auth_url", "api_url", "oauth_url"):
        given = ana.get(f)
        urls[f] = given if isinstance(given, str) else str(defaults[f].default)
    return host_problems(env_url, authority if isinstance(authority, str) else None, urls, allowed, aws=aws)


def _problem_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(
            str(p) for p in err["loc"] if not (isinstance(p, str) and p in ("basic", "certificate", "device"))
        )
        msg = err["msg"].removeprefix("Value error, ")
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "connection"
        secretish = any(s in loc for s in ("password", "secret", "key_pem", "refresh_token", "cert_pem"))
        if err["type"] in ("missing",):
            lines.append(f"{where}: required setting is missing")
            continue
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown setting")
            continue
        if err["type"] == "value_error" and (not loc or "\n" in msg):
            # model-level checks already name their fields, one problem per line
            lines.extend(f"{prefix}{m}" if not loc else f"{where}: {m}" for m in msg.splitlines())
            continue
        value = "" if secretish or "input" not in err else f" (got {err['input']!r})"
        if isinstance(err.get("input"), dict | list):
            value = ""
        lines.append(f"{where}: {msg}{value}")
    return lines


def parse_connection(data: Any, *, aws: bool = False, source: str = "configuration") -> ConnectionConfig:
    """Validate one connection mapping; in AWS mode credentials must be Secrets Manager ARNs."""
    widened = _yaml_allowed_hosts(data) if aws else []
    try:
        cfg = ConnectionConfig.model_validate(data, context={"aws": aws})
    except ValidationError as exc:
        problems = widened + _problem_lines(exc)
        problems += [p for p in _raw_host_problems(data, aws) if p not in problems]
        raise ConfigError(problems, source) from None
    if widened:
        raise ConfigError(widened, source)
    if aws:
        problems = [
            f"{field}: in AWS credentials must be Secrets Manager ARNs, got a {secret.kind} reference"
            for field, secret in cfg.secrets()
            if secret.kind != "secretsmanager"
            or not SECRET_ARN.match(secret.ref + (f"#{secret.json_key}" if secret.json_key else ""))
        ]
        if problems:
            raise ConfigError(problems, source)
    return cfg


def _yaml_allowed_hosts(data: Any) -> list[str]:
    """In AWS the allow-list is deploy-time: a connection object may not widen it (it lives in the same
    bucket it would police)."""
    section = data.get("security") if isinstance(data, dict) else None
    if isinstance(section, dict) and section.get("allowed_hosts"):
        return [
            "security.allowed_hosts: not allowed in a connection stored in AWS; list extra hosts in the "
            f"stack parameter AllowedHosts (function environment {ALLOWED_HOSTS_ENV})"
        ]
    return []


MAX_CONFIG_BYTES = 1_000_000
MAX_YAML_DEPTH = 50
MAX_YAML_NODES = 100_000  # after alias expansion: a configuration has a few hundred


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses alias bombs (expansion beyond :data:`MAX_YAML_NODES`), recursive
    aliases and nesting deeper than :data:`MAX_YAML_DEPTH`, before anything is constructed."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_YAML_DEPTH} levels; refused", mark
                )
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _expanded_size(node)
        return node


def _expanded_size(root: yaml.Node) -> int:
    """Nodes the document has once every alias is expanded (shared nodes counted at each use)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise yaml.composer.ComposerError(None, None, "a recursive alias; refused", node.start_mark)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?); refused",
                node.start_mark,
            )
        sizes[key] = total
        return total

    return size(root)


def parse_connections(
    text: str, *, aws: bool = False, source: str = "configuration"
) -> list[ConnectionConfig]:
    """Parse YAML holding one connection, or ``connections:`` with several."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([f"the file is larger than {MAX_CONFIG_BYTES:,} characters; refused"], source)
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}not valid YAML ({problem})"], source) from None
    if not isinstance(data, dict):
        raise ConfigError(["the file must hold a mapping (one connection) or 'connections: [...]'"], source)
    items = data.get("connections", [data])
    if not isinstance(items, list) or not items:
        raise ConfigError(["connections: must be a non-empty list"], source)
    configs: list[ConnectionConfig] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        prefix = f"connections[{i}]." if "connections" in data else ""
        try:
            configs.append(parse_connection(item, aws=aws, source=source))
        except ConfigError as exc:
            problems.extend(f"{prefix}{p}" for p in exc.problems)
    names = [c.name for c in configs]
    problems.extend(
        f"name: {n!r} is used by more than one connection"
        for n in sorted({n for n in names if names.count(n) > 1})
    )
    if problems:
        raise ConfigError(problems, source)
    return configs


def load_connections(path: str | os.PathLike[str]) -> list[ConnectionConfig]:
    """Read a local YAML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file ({exc.strerror})"], str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError(["the file is not UTF-8 text"], str(p)) from None
    return parse_connections(text, source=str(p))


def load_connection_file(path: str | os.PathLike[str], name: str | None = None) -> ConnectionConfig:
    """Read one connection from a local file (by name when the file holds several)."""
    configs = load_connections(path)
    if name is None:
        if len(configs) > 1:
            raise ConfigError(
                [f"the file holds {len(configs)} connections; name one of {[c.name for c in configs]}"],
                str(path),
            )
        return configs[0]
    for cfg in configs:
        if cfg.name == name:
            return cfg
    raise ConfigError([f"name: no connection named {name!r} (have {[c.name for c in configs]})"], str(path))

"""Which hosts credentials may go to: F&O, Entra ID and Anaplan host patterns, the allowed-hosts list."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from d365_anaplan.urls import UrlProblem, parse_allowed_host, parse_base_url
from d365_anaplan.urls import allowed as allowed_origin

FO_HOST_PATTERNS = (
    re.compile(r"^[a-z0-9-]+(\.sandbox)?\.operations(\.[a-z]{2,4})?\.dynamics\.com$"),
    re.compile(r"^[a-z0-9-]+(\.sandbox)?\.operations\.dynamics\.cn$"),
    re.compile(r"^[a-z0-9-]+\.cloudax\.dynamics\.com$"),
    re.compile(r"^[a-z0-9-]+\.axcloud\.dynamics\.com$"),
    re.compile(r"^[a-z0-9-]+\.cloud\.onebox\.dynamics\.com$"),
)
ENTRA_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
    }
)

# Extra hosts in AWS come from the stack parameter AllowedHosts through this function environment variable
# (comma separated host or host:port); a connection stored in S3 may not widen the list itself.
ALLOWED_HOSTS_ENV = "CONNECTOR_ALLOWED_HOSTS"


def is_fo_host(host: str) -> bool:
    return any(p.match(host) for p in FO_HOST_PATTERNS)


def is_entra_host(host: str) -> bool:
    return host in ENTRA_HOSTS


def is_anaplan_host(host: str) -> bool:
    return host == "anaplan.com" or host.endswith(".anaplan.com")


def _safe_repr(url: str) -> str:
    return repr(url) if "@" not in url else "(URL with user information not shown)"


def normalised_url(value: str, *, keep_path: bool) -> str:
    """The canonical form of a URL that parses strictly; anything else is left for the host checks."""
    try:
        base = parse_base_url(value)
    except UrlProblem:
        return value
    return base.url if keep_path else base.root


def env_allowed_hosts() -> tuple[list[tuple[str, int]], list[str]]:
    """(host, port) pairs from ``CONNECTOR_ALLOWED_HOSTS`` and one problem line per unreadable entry."""
    pairs: list[tuple[str, int]] = []
    problems: list[str] = []
    for entry in (os.environ.get(ALLOWED_HOSTS_ENV) or "").split(","):
        if not entry.strip():
            continue
        try:
            pairs.append(parse_allowed_host(entry))
        except UrlProblem as exc:
            problems.append(f"{ALLOWED_HOSTS_ENV}: {exc}")
    return pairs, problems


# Azure Storage endpoints: where F&O's data-management packages are handed out, never a credential's destination.
STORAGE_HOST_SUFFIXES = (
    ".blob.core.windows.net",
    ".dfs.core.windows.net",
    ".file.core.windows.net",
    ".queue.core.windows.net",
    ".table.core.windows.net",
)


def host_problems(
    environment_url: str | None,
    authority_host: str | None,
    anaplan_urls: dict[str, str],
    allowed: list[str],
    *,
    aws: bool = False,
    package_blob_host: str | None = None,
) -> list[str]:
    """One line per endpoint that does not parse strictly or is not on a known host (unless allowed).

    ``allowed`` are the connection's own ``security.allowed_hosts`` (ignored in AWS, where the list is
    deploy-time); ``CONNECTOR_ALLOWED_HOSTS`` adds to it in both modes.
    """
    extra, problems = env_allowed_hosts()
    if not aws:
        for entry in allowed:
            try:
                extra.append(parse_allowed_host(entry))
            except UrlProblem:
                continue  # reported by SecuritySettings
    remedy = (
        "add it to the stack parameter AllowedHosts if it is yours"
        if aws
        else "add it to security.allowed_hosts if it is yours"
    )
    endpoints: list[tuple[str, str, Callable[[str], bool], str]] = []
    if environment_url is not None:
        endpoints.append(
            (
                "dynamics.environment_url",
                environment_url,
                is_fo_host,
                "is not a known Dynamics 365 F&O host (e.g. <name>.operations.dynamics.com)",
            )
        )
    if authority_host is not None:
        endpoints.append(
            (
                "dynamics.authority_host",
                authority_host,
                is_entra_host,
                "is not a Microsoft Entra ID authority host",
            )
        )
    for field, url in anaplan_urls.items():
        endpoints.append((f"anaplan.{field}", url, is_anaplan_host, "is not under anaplan.com"))
    if package_blob_host is not None:  # never built in: the storage account must be allowed explicitly
        endpoints.append(
            (
                "dynamics.package.blob_host",
                package_blob_host,
                lambda _host: False,
                "is the F&O package blob host; it must be allowed explicitly",
            )
        )
    blob_origin = None
    if package_blob_host is not None:
        try:
            blob_origin = parse_base_url(package_blob_host).origin
        except UrlProblem:
            blob_origin = None  # reported below
    for field, url, builtin, what in endpoints:
        try:
            origin = parse_base_url(url).origin
        except UrlProblem as exc:
            text = str(exc)
            problems.append(
                f"{field}: {_safe_repr(url)} must use https"
                if text == "must use https"
                else f"{field}: {text}"
            )
            continue
        if field != "dynamics.package.blob_host" and (
            origin.host.endswith(STORAGE_HOST_SUFFIXES)
            or (
                blob_origin is not None and (origin.host, origin.port) == (blob_origin.host, blob_origin.port)
            )
        ):
            # Allowing the package blob host must not make it a place credentials can be sent to.
            problems.append(
                f"{field}: host {origin.host!r} is a storage host (F&O packages are downloaded from it without "
                "credentials); a credential never goes there: use the service's own host"
            )
            continue
        if allowed_origin(origin, builtin, extra):
            continue
        where = f"{origin.host}:{origin.port}" if origin.port != 443 else origin.host
        if builtin(origin.host):
            problems.append(
                f"{field}: port {origin.port} of {origin.host!r}: known hosts are allowed on port 443 only; "
                + remedy.replace("add it", f"add {where!r}")
            )
        else:
            problems.append(f"{field}: host {where!r} {what}; {remedy}")
    return problems

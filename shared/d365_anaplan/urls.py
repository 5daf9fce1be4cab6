"""One URL parser for every URL a credential is sent to: the parser that sends.

A configured base URL (``dynamics.environment_url``, ``dynamics.authority_host``, ``anaplan.auth_url`` /
``api_url`` / ``oauth_url``) is read by :func:`parse_base_url` into an :class:`Origin` (scheme, host, port)
with ``urllib3.util.parse_url`` - the parser urllib3 connects with - after ``requests`` has prepared it the
way it will when sending, and it must read the same origin as this module's strict pattern. Anything two
parsers could read differently is refused outright: user information (``user:pass@``), backslashes,
percent-encoded or non-ASCII characters, whitespace and control characters, queries and fragments, a
non-canonical port. An allow-list entry ``host`` means that host on port 443 only; ``host:port`` names
another port. :class:`~d365_anaplan.http.VerifiedSession` checks every request's final URL with
:func:`origin_of` before sending a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

HTTPS_PORT = 443
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_AUTHORITY = re.compile(rf"^(?P<host>{_LABEL}(?:\.{_LABEL})*)(?::(?P<port>[1-9][0-9]{{0,4}}))?$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:-]*)*$")


class UrlProblem(ValueError):
    """A URL (or allow-list entry) that the connector refuses; the message never repeats user information."""


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + ("" if self.port == HTTPS_PORT else f":{self.port}")


class BaseUrl(NamedTuple):
    origin: Origin
    authority: str  # host or host:port exactly as configured (lowercase)
    path: str  # without trailing slash

    @property
    def root(self) -> str:
        return f"https://{self.authority}"

    @property
    def url(self) -> str:
        return self.root + self.path


def _bad_character(value: str) -> str | None:
    for ch in value:
        if ch == "\\":
            return "a backslash"
        if ch.isspace():
            return "whitespace"
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return "a control character"
        if ord(ch) > 0x7E:
            return f"the non-ASCII character {ch!r} (write an internationalised host in its xn-- form)"
    return None


def parse_base_url(value: object) -> BaseUrl:
    """Parse a configured base URL strictly; raise :class:`UrlProblem` saying what is wrong."""
    if not isinstance(value, str) or not value:
        raise UrlProblem("must be an https URL")
    bad = _bad_character(value)
    if bad:
        raise UrlProblem(f"contains {bad}; refused")
    if "@" in value:
        raise UrlProblem("user information (user:password@) is not allowed in a URL")
    if "%" in value:
        raise UrlProblem("percent-encoded characters are not allowed in a URL")
    if "?" in value:
        raise UrlProblem("a query (?...) is not allowed in a base URL")
    if "#" in value:
        raise UrlProblem("a fragment (#...) is not allowed in a base URL")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() != "https":
        raise UrlProblem("must use https")
    authority, slash, path = rest.partition("/")
    m = _AUTHORITY.match(authority.lower())
    if m is None:
        raise UrlProblem("the host must be a DNS name or IPv4 address, optionally with :port (1-65535)")
    port = int(m.group("port") or HTTPS_PORT)
    if port > 65535:
        raise UrlProblem(f"port {port} is out of range")
    path = (slash + path).rstrip("/")
    if path and not _PATH.match(path):
        raise UrlProblem("the path holds characters that are not allowed")
    origin = Origin("https", m.group("host"), port)
    # The parsers that send (requests' preparation, then urllib3) must read it as the pattern above does.
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(value, None)
        sent = origin_of(str(prepared.url))
    except (requests.RequestException, LocationParseError, ValueError, UrlProblem):
        raise UrlProblem("is not a URL the HTTP client can read unambiguously") from None
    if sent != origin:
        raise UrlProblem("is read differently by different URL parsers; refused")
    return BaseUrl(origin, authority.lower(), path)


def origin_of(url: str) -> Origin:
    """The origin urllib3 will connect to for ``url`` (refuses user information: requests would send it)."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        raise UrlProblem("is not a URL") from None
    if parts.auth is not None:
        raise UrlProblem("user information (user:password@) is not allowed in a URL")
    scheme = (parts.scheme or "").lower()
    host = (parts.host or "").lower()
    if not host:
        raise UrlProblem("has no host")
    default = HTTPS_PORT if scheme == "https" else 80
    return Origin(scheme, host, parts.port or default)


def parse_allowed_host(entry: object) -> tuple[str, int]:
    """An allow-list entry: ``host`` (port 443 only) or ``host:port``."""
    if not isinstance(entry, str):
        raise UrlProblem("must be host or host:port")
    m = _AUTHORITY.match(entry.strip().lower())
    if m is None or int(m.group("port") or HTTPS_PORT) > 65535:
        raise UrlProblem(f"{entry!r} is not host or host:port (no scheme, path or user information)")
    return m.group("host"), int(m.group("port") or HTTPS_PORT)


def allowed(origin: Origin, builtin: Callable[[str], bool], extra: Iterable[tuple[str, int]]) -> bool:
    """https, and either a built-in host on 443 or exactly a (host, port) of ``extra``."""
    if origin.scheme != "https":
        return False
    if origin.port == HTTPS_PORT and builtin(origin.host):
        return True
    return (origin.host, origin.port) in set(extra)


def redacted(url: str) -> str:
    """``url`` safe to print: origin and path only (no user information, query or fragment)."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        return "<unreadable URL>"
    host = parts.host or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or ''}://{host}{port}{parts.path or ''}"

"""HTTP sessions with the connector's TLS and destination rules.

TLS verification is never turned off. ``tls.ca_bundle`` adds trust (a private CA or a sandbox's throwaway
CA) to the public roots; the session ignores ``REQUESTS_CA_BUNDLE`` and friends (``trust_env=False``) so the
configured trust is the one used, and every request passes ``verify`` explicitly.

Every request is checked on its final, prepared URL (the one urllib3 connects to): https only (no ``http://``
adapter is mounted), no user information, and - when the session has :class:`Destinations` - only to the
origins allowed for the credential it carries (``Authorization`` header, or a refresh token / client secret /
client assertion / device code in the body, as msal's token requests through ``http_client`` do). Redirects
are never followed: a 3xx is :class:`~d365_anaplan.errors.RedirectRefused`. Response bodies are read as a
stream and counted after decompression; past ``max_response_bytes`` the read stops with
:class:`~d365_anaplan.errors.ResponseTooLarge`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import certifi
import requests
from requests.adapters import HTTPAdapter

from d365_anaplan.errors import RedirectRefused, ResponseTooLarge, UnsafeDestination
from d365_anaplan.urls import Origin, UrlProblem, origin_of, parse_base_url, redacted

if TYPE_CHECKING:
    from d365_anaplan.config import ConnectionConfig

USER_AGENT = "d365-anaplan-connector/0.1"
# Sized for Anaplan's largest chunk (50 MB) and an F&O page of 10,000 rows, with room for $metadata.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_READ_PIECE = 64 * 1024
_BODY_SCAN_LIMIT = 256 * 1024

# --- trust store -------------------------------------------------------------------------------------------

_private_dir: Path | None = None
_private_lock = threading.Lock()


def _owned_private_dir(path: Path) -> bool:
    """``path`` is a real directory (not a link) owned by us that nobody else can write to or list."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0


def _trust_dir() -> Path:
    """A per-user directory (0700, verified owned by us) for trust stores; a fresh one if the usual name is
    taken by someone else."""
    global _private_dir
    with _private_lock:
        if _private_dir is not None and _owned_private_dir(_private_dir):
            return _private_dir
        candidate = Path(tempfile.gettempdir()) / f"d365-anaplan-{os.getuid()}"
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError:
            candidate = Path(tempfile.mkdtemp(prefix="d365-anaplan-"))
        if not _owned_private_dir(candidate):
            candidate = Path(tempfile.mkdtemp(prefix="d365-anaplan-"))  # mkdtemp: 0700, ours
        _private_dir = candidate
        return candidate


def _trusted_file(path: Path, content: bytes) -> bool:
    """``path`` is a regular file (not a link) owned by us, private, holding exactly ``content``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
            return False
        return fh.read(len(content) + 1) == content


def trust_store(ca_bundle: str | None) -> str:
    """Path of a PEM bundle with the public roots plus ``ca_bundle`` (if any).

    The combined file lives in a private per-user directory; it is written with ``O_EXCL`` (0600) and reused
    only when it is ours and holds exactly the expected bytes.
    """
    if not ca_bundle:
        return certifi.where()
    extra = Path(ca_bundle).read_bytes()
    public = Path(certifi.where()).read_bytes()
    content = public + b"\n" + extra
    digest = hashlib.sha256(content).hexdigest()[:16]
    directory = _trust_dir()
    target = directory / f"trust-{digest}.pem"
    if _trusted_file(target, content):
        return str(target)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".pem")  # O_EXCL, 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(target)


# --- destinations ------------------------------------------------------------------------------------------

ANAPLAN_LOGIN = "anaplan-login"  # Authorization: Basic / CACertificate
ANAPLAN_TOKEN = "anaplan-token"  # noqa: S105 - Authorization: AnaplanAuthToken
ANAPLAN_OAUTH = "anaplan-oauth"  # refresh_token / device_code in the body
ENTRA = "entra"  # client_secret / client_assertion in the body (msal)
FO_TOKEN = "fo-token"  # noqa: S105 - Authorization: Bearer
OTHER = "other-credential"  # any other Authorization scheme or secret-looking body field

_AUTH_SCHEMES = {
    "basic": ANAPLAN_LOGIN,
    "cacertificate": ANAPLAN_LOGIN,
    "anaplanauthtoken": ANAPLAN_TOKEN,
    "bearer": FO_TOKEN,
}
_BODY_FIELDS = re.compile(
    rb"(?:^|[&{,\s\"'])(client_secret|client_assertion|refresh_token|device_code|password)[\"']?\s*[=:]"
)
_BODY_KINDS = {
    b"client_secret": ENTRA,
    b"client_assertion": ENTRA,
    b"refresh_token": ANAPLAN_OAUTH,
    b"device_code": ANAPLAN_OAUTH,
    b"password": OTHER,
}


@dataclass(frozen=True)
class Destinations:
    """Which origins each kind of credential may be sent to; every request must go to one of them."""

    by_kind: Mapping[str, frozenset[Origin]] = field(default_factory=dict)

    @property
    def all(self) -> frozenset[Origin]:
        out: set[Origin] = set()
        for origins in self.by_kind.values():
            out |= origins
        return frozenset(out)

    def merged(self, other: Destinations) -> Destinations:
        kinds = set(self.by_kind) | set(other.by_kind)
        return Destinations(
            {k: self.by_kind.get(k, frozenset()) | other.by_kind.get(k, frozenset()) for k in kinds}
        )


def destinations_for(cfg: ConnectionConfig) -> Destinations:
    """The origins each credential of ``cfg`` may go to (from its validated URLs)."""

    def origin(url: str) -> Origin:
        return parse_base_url(url).origin

    a, d = cfg.anaplan, cfg.dynamics
    return Destinations(
        {
            ANAPLAN_LOGIN: frozenset({origin(a.auth_url)}),
            ANAPLAN_TOKEN: frozenset({origin(a.api_url), origin(a.auth_url)}),
            ANAPLAN_OAUTH: frozenset({origin(a.oauth_url)}),
            ENTRA: frozenset({origin(d.authority_host)}),
            FO_TOKEN: frozenset({origin(d.environment_url)}),
        }
    )


def credential_kinds(request: requests.PreparedRequest) -> set[str]:
    """The kinds of credential ``request`` carries (empty: none)."""
    kinds: set[str] = set()
    auth = request.headers.get("Authorization")
    if auth:
        scheme = str(auth).split(" ", 1)[0].strip().lower()
        kinds.add(_AUTH_SCHEMES.get(scheme, OTHER))
    body: object = request.body
    if body and not kinds:
        raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
        if isinstance(raw, bytes | bytearray):
            for m in _BODY_FIELDS.finditer(bytes(raw[:_BODY_SCAN_LIMIT])):
                kinds.add(_BODY_KINDS[m.group(1)])
        else:
            kinds.add(OTHER)  # a streamed body we cannot look into: treat it as sensitive
    return kinds


# --- the session -------------------------------------------------------------------------------------------


class VerifiedSession(requests.Session):
    """A ``requests.Session`` that verifies TLS against one trust store, applies a default timeout, sends
    only to allowed https origins, never follows redirects and bounds every response body."""

    def __init__(
        self,
        ca_bundle: str | None = None,
        timeout: float = 120,
        pool_size: int = 10,
        *,
        destinations: Destinations | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        stream_bodies: bool = False,
    ) -> None:
        super().__init__()
        # True: bodies are left unread for the caller to stream through iter_bounded (large downloads)
        self.stream_bodies = stream_bodies
        self.trust_env = False  # REQUESTS_CA_BUNDLE etc. must not override the configured trust
        self.verify = trust_store(ca_bundle)
        self.default_timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        self.headers["Accept-Encoding"] = "gzip, deflate"  # decoders we can bound
        self.destinations = destinations
        self.max_response_bytes = max_response_bytes
        self.adapters.clear()  # requests mounts http:// by default: plain http is never used
        self.mount("https://", HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size))

    def restrict(self, destinations: Destinations) -> None:
        """Add the origins of a connection's credentials (a session without any sends anywhere over https)."""
        self.destinations = (
            destinations if self.destinations is None else self.destinations.merged(destinations)
        )

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        kwargs["verify"] = self.verify  # per request, so nothing in the environment can weaken it
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Never a next hop: requests would otherwise read the redirect's body and prepare the next request."""
        return None

    def check_destination(self, request: requests.PreparedRequest) -> None:
        """Refuse ``request`` unless its final URL is https, without user information, and allowed for
        every credential it carries."""
        url = str(request.url or "")
        shown = redacted(url)
        try:
            origin = origin_of(url)
        except UrlProblem as exc:
            raise UnsafeDestination(f"{request.method} {shown}: the URL {exc}; not sent") from None
        if origin.scheme != "https":
            raise UnsafeDestination(f"{request.method} {shown}: only https is used; not sent")
        if self.destinations is None:
            return
        if origin not in self.destinations.all:
            raise UnsafeDestination(
                f"{request.method} {shown}: {origin} is not one of the configured endpoints; not sent"
            )
        for kind in credential_kinds(request):
            allowed = self.destinations.by_kind.get(kind, self.destinations.all)
            if origin not in allowed:
                raise UnsafeDestination(
                    f"{request.method} {shown}: a {kind} credential may go only to "
                    f"{', '.join(sorted(str(o) for o in allowed))}; not sent"
                )

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.check_destination(request)
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        resp = super().send(request, **kwargs)
        if resp.is_redirect or (300 <= resp.status_code < 400 and resp.status_code != 304):
            resp.close()
            target = redacted(resp.headers.get("Location", "")) if resp.headers.get("Location") else "nowhere"
            raise RedirectRefused(
                f"{request.method} {redacted(str(request.url))}: HTTP {resp.status_code} redirect to {target}; "
                "redirects are never followed (configure the final URL)"
            )
        if self.stream_bodies and 200 <= resp.status_code < 300:
            self._check_declared(resp, request)
        elif self.stream_bodies:
            _read_error_body(resp)
        else:
            self._read_bounded(resp, request)
        return resp

    def _check_declared(self, resp: requests.Response, request: requests.PreparedRequest) -> None:
        declared = _declared_length(resp)
        if request.method != "HEAD" and declared is not None and declared > self.max_response_bytes:
            resp.close()
            raise ResponseTooLarge(
                f"{request.method} {redacted(str(request.url))}: the response declares {declared:,} bytes, "
                f"more than {self.max_response_bytes:,}; refused"
            )

    def iter_bounded(self, resp: requests.Response, piece: int = _READ_PIECE) -> Iterator[bytes]:
        """The body of a streamed response (``stream_bodies``) piece by piece, stopped past
        ``max_response_bytes`` with :class:`~d365_anaplan.errors.ResponseTooLarge`."""
        total = 0
        try:
            for chunk in resp.iter_content(piece):
                total += len(chunk)
                if total > self.max_response_bytes:
                    raise ResponseTooLarge(
                        f"{resp.request.method} {redacted(str(resp.request.url))}: the response is larger than "
                        f"{self.max_response_bytes:,} bytes; refused"
                    )
                yield chunk
        finally:
            resp.close()

    def _read_bounded(self, resp: requests.Response, request: requests.PreparedRequest) -> None:
        limit = self.max_response_bytes
        where = f"{request.method} {redacted(str(request.url))}"
        declared = _declared_length(resp)
        if request.method != "HEAD" and declared is not None and declared > limit:
            resp.close()
            raise ResponseTooLarge(
                f"{where}: the response declares {declared:,} bytes, more than {limit:,} "
                "(security.max_response_bytes); refused"
            )
        pieces: list[bytes] = []
        total = 0
        try:
            for piece in resp.iter_content(_READ_PIECE):
                total += len(piece)
                if total > limit:
                    raise ResponseTooLarge(
                        f"{where}: the response is larger than {limit:,} bytes after decompression "
                        "(security.max_response_bytes); refused"
                    )
                pieces.append(piece)
        except BaseException:
            resp.close()
            raise
        resp._content = b"".join(pieces)
        resp._content_consumed = True  # type: ignore[attr-defined]


def session_for(cfg: ConnectionConfig, timeout: float) -> VerifiedSession:
    """The session a connection's clients use: its trust, its endpoints, its response cap."""
    return VerifiedSession(
        ca_bundle=cfg.tls.ca_bundle,
        timeout=timeout,
        destinations=destinations_for(cfg),
        max_response_bytes=cfg.security.max_response_bytes,
    )


def restrict_to(session: requests.Session, cfg: ConnectionConfig) -> None:
    """Apply ``cfg``'s endpoints to an injected session (when it is a :class:`VerifiedSession`)."""
    if isinstance(session, VerifiedSession):
        session.restrict(destinations_for(cfg))


_DELAY_SECONDS = re.compile(r"[0-9]{1,9}")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")
ERROR_BODY_LIMIT = 64 * 1024  # of a non-2xx answer on a streaming session: enough for the host's message


def _declared_length(resp: requests.Response) -> int | None:
    """``Content-Length`` when it is ASCII digits of sane length; None otherwise (the read is still capped)."""
    declared = resp.headers.get("Content-Length", "").strip()
    return int(declared) if _CONTENT_LENGTH.fullmatch(declared) else None


def _read_error_body(resp: requests.Response) -> None:
    """Keep at most :data:`ERROR_BODY_LIMIT` bytes of an error answer's body, then close it (the rest is
    never read: an error answer is not the package it stands in for)."""
    pieces: list[bytes] = []
    total = 0
    try:
        for piece in resp.iter_content(_READ_PIECE):
            pieces.append(piece[: ERROR_BODY_LIMIT - total])
            total += len(pieces[-1])
            if total >= ERROR_BODY_LIMIT:
                break
    finally:
        resp.close()
    resp._content = b"".join(pieces)
    resp._content_consumed = True  # type: ignore[attr-defined]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an HTTP date);
    None when absent or unreadable. Both Anaplan and F&O clients honour it through this one parser."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(
        value
    ):  # ASCII digits only, bounded ("²" or a 5000-digit value is unreadable)
        return int(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


__all__ = [
    "Destinations",
    "VerifiedSession",
    "credential_kinds",
    "destinations_for",
    "parse_retry_after",
    "restrict_to",
    "session_for",
    "trust_store",
]

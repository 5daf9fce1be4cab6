"""What goes to and comes from F&O's OData service: error and page shapes (dynamics-fo.md §5.1), exact JSON
(``Edm.Decimal`` never through float), queries and their opaque continuation tokens (§2.1).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from d365_anaplan.errors import (
    BadInputData,
    DynamicsBadResponse,
)

MAX_PAGE_SIZE = 10_000


# --- response shapes -------------------------------------------------------------------------------------


class InnerError(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str = ""
    type: str = ""


class ODataErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = ""
    message: str = ""
    innererror: InnerError | None = None


class ODataErrorEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: ODataErrorBody


class ODataPage(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    value: list[dict[str, Any]]
    next_link: str | None = Field(default=None, alias="@odata.nextLink")
    count: int | None = Field(default=None, alias="@odata.count")


@dataclass(frozen=True)
class FoError:
    status: int
    code: str
    message: str
    inner_message: str
    inner_type: str

    def text(self) -> str:
        """F&O's most useful text: ``innererror.message`` if present, else ``message``."""
        return self.inner_message or self.message or f"HTTP {self.status}"


def parse_error(status: int, body: bytes | str) -> FoError:
    """Parse F&O's error JSON (§5.1); anything else becomes a short excerpt of the body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        env = ODataErrorEnvelope.model_validate_json(text)
    except ValidationError:
        excerpt = " ".join(text.split())[:200]
        return FoError(status, "", excerpt, "", "")
    inner = env.error.innererror
    return FoError(
        status, env.error.code, env.error.message, inner.message if inner else "", inner.type if inner else ""
    )


def loads(text: str | bytes, what: str) -> Any:
    """JSON with decimals as ``Decimal`` (never float)."""
    try:
        return json.loads(text, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DynamicsBadResponse(
            f"{what}: F&O returned malformed JSON ({exc.__class__.__name__}: {str(exc)[:120]})"
        ) from None


# --- queries ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """Query options for one entity set read."""

    entity_set: str
    filter: str = ""
    select: tuple[str, ...] = ()
    cross_company: bool = True
    orderby: str = ""
    top: int | None = None
    count: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    def params(self) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if self.cross_company:
            params.append(("cross-company", "true"))
        if self.filter:
            params.append(("$filter", self.filter))
        if self.select:
            params.append(("$select", ",".join(self.select)))
        if self.orderby:
            params.append(("$orderby", self.orderby))
        if self.top is not None:
            params.append(("$top", str(self.top)))
        if self.count:
            params.append(("$count", "true"))
        params.extend(self.extra)
        return params


def encode_query(params: list[tuple[str, str]]) -> str:
    return urlencode(params, quote_via=quote, safe="$'(),:*/")


@dataclass
class Page:
    rows: list[dict[str, Any]]
    next_link: str | None
    count: int | None = None


@dataclass
class Continuation:
    """Where a stopped read resumes: an opaque next link plus caller state (JSON-serialisable)."""

    next_link: str
    state: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        raw = json.dumps(
            {"v": 1, "next": self.next_link, "state": self.state}, separators=(",", ":"), default=str
        )
        return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")

    @classmethod
    def decode(cls, token: str) -> Continuation:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
            if data.get("v") != 1 or not isinstance(data.get("next"), str):
                raise ValueError("unknown version")
            state = data.get("state") or {}
            if not isinstance(state, dict):
                raise ValueError("bad state")
        except (ValueError, TypeError, UnicodeError, AttributeError):
            raise BadInputData("continuation token: not a token issued by this reader") from None
        return cls(next_link=data["next"], state=state)


_MARK = "\x00D:"
_MARK_RE = re.compile(r'"\\u0000D:(-?[0-9]+(?:\.[0-9]+)?)\\u0000"')


def _mark_decimals(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise BadInputData(f"amount {value} is not a finite number")
        return f"{_MARK}{format(value, 'f')}\x00"
    if isinstance(value, dict):
        return {k: _mark_decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark_decimals(v) for v in value]
    return value


def dumps_exact(value: Any) -> str:
    """JSON text with ``Decimal`` values written as exact JSON numbers (never through float)."""
    text = json.dumps(_mark_decimals(value), ensure_ascii=False, separators=(",", ":"))
    return _MARK_RE.sub(lambda m: m.group(1), text)

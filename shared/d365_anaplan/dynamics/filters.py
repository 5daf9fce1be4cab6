"""OData ``$filter`` builder for F&O (dynamics-fo.md §2.1).

Every literal goes through :func:`literal`: strings are single-quoted with embedded quotes doubled,
``DateTimeOffset`` values are written unquoted in ISO form with ``Z``, enum values as
``Microsoft.Dynamics.DataEntities.<EnumType>'<Value>'``. F&O does not support ``in`` or ``has``:
:func:`any_of` writes an OR-group instead and :func:`split_any_of` splits a long OR-group into several
filters that each stay inside a URL budget. A ``*`` inside a string literal is a wildcard for F&O
("contains" is written ``Field eq '*text*'``), so plain equality refuses it unless asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import quote

from d365_anaplan.errors import BadInputData

ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_ENUM_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keep the whole request line comfortably below common 8 KB/16 KB URL limits (IIS default 16 KB query).
DEFAULT_FILTER_BUDGET = 2048


@dataclass(frozen=True)
class EnumValue:
    """An F&O enum literal, e.g. ``EnumValue("NoYes", "No")``."""

    enum_type: str
    value: str


Literal = str | int | Decimal | bool | date | datetime | EnumValue | None


def field(name: str) -> str:
    """Validate a property name (or a ``Nav/Property`` path) before it goes into a filter."""
    if not _IDENT.match(name):
        raise BadInputData(f"OData filter: {name!r} is not a valid property name")
    return name


def _datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise BadInputData(
            f"OData filter: datetime {value.isoformat()} has no time zone; F&O compares UTC instants"
        )
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def literal(value: Literal, *, allow_wildcard: bool = False) -> str:
    """The OData literal for ``value``, escaped for F&O."""
    if value is None:
        return "null"
    if isinstance(value, EnumValue):
        if not _ENUM_IDENT.match(value.enum_type) or not _ENUM_IDENT.match(value.value):
            raise BadInputData(f"OData filter: bad enum literal {value.enum_type!r}/{value.value!r}")
        return f"{ENUM_NAMESPACE}.{value.enum_type}'{value.value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise BadInputData(f"OData filter: {value} is not a finite number")
        return format(value, "f")
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, date):
        # Date-only fields are Edm.DateTimeOffset in F&O: midnight UTC of that day.
        return f"{value.isoformat()}T00:00:00Z"
    if isinstance(value, str):
        if "*" in value and not allow_wildcard:
            raise BadInputData(
                f"OData filter: string literal {value!r} contains '*', which F&O treats as a wildcard; "
                "use contains()/startswith() for a pattern"
            )
        if any(ord(c) < 0x20 for c in value):
            raise BadInputData(f"OData filter: string literal {value!r} contains control characters")
        return "'" + value.replace("'", "''") + "'"
    raise BadInputData(f"OData filter: unsupported literal type {type(value).__name__}")


_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")


def compare(name: str, op: str, value: Literal) -> str:
    """``name op literal``; enums only with ``eq``/``ne`` (F&O rule)."""
    if op not in _COMPARISONS:
        if op in ("in", "has"):
            raise BadInputData(
                f"OData filter: F&O does not support the '{op}' operator; use any_of() (an OR-group)"
            )
        raise BadInputData(f"OData filter: unknown comparison operator {op!r}")
    if isinstance(value, EnumValue) and op not in ("eq", "ne"):
        raise BadInputData(f"OData filter: F&O compares enums only with eq/ne, not {op!r} ({name})")
    return f"{field(name)} {op} {literal(value)}"


def eq(name: str, value: Literal) -> str:
    return compare(name, "eq", value)


def ne(name: str, value: Literal) -> str:
    return compare(name, "ne", value)


def ge(name: str, value: Literal) -> str:
    return compare(name, "ge", value)


def gt(name: str, value: Literal) -> str:
    return compare(name, "gt", value)


def le(name: str, value: Literal) -> str:
    return compare(name, "le", value)


def lt(name: str, value: Literal) -> str:
    return compare(name, "lt", value)


def _pattern(value: str) -> str:
    if "*" in value:
        raise BadInputData(f"OData filter: pattern text {value!r} may not itself contain '*'")
    return value


def contains(name: str, text: str) -> str:
    """F&O's "contains": ``Field eq '*text*'``."""
    return f"{field(name)} eq {literal('*' + _pattern(text) + '*', allow_wildcard=True)}"


def startswith(name: str, text: str) -> str:
    return f"{field(name)} eq {literal(_pattern(text) + '*', allow_wildcard=True)}"


def _group(parts: Sequence[str], op: str) -> str:
    items = [p for p in parts if p]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f" {op} ".join(f"({p})" for p in items)


def and_(*parts: str) -> str:
    return _group(parts, "and")


def or_(*parts: str) -> str:
    return _group(parts, "or")


def not_(part: str) -> str:
    return f"not ({part})"


def between(name: str, start: Literal, end: Literal) -> str:
    """Half-open range ``start <= name < end``."""
    return f"{ge(name, start)} and {lt(name, end)}"


def any_of(name: str, values: Iterable[Literal]) -> str:
    """``name eq v1 or name eq v2 ...`` (F&O has no ``in``)."""
    vals = list(values)
    if not vals:
        raise BadInputData(f"OData filter: any_of({name}) needs at least one value")
    return " or ".join(eq(name, v) for v in vals)


def encoded_length(text: str) -> int:
    """Length of ``text`` once percent-encoded into a query string."""
    return len(quote(text, safe=""))


def split_any_of(
    name: str, values: Iterable[Literal], *, budget: int = DEFAULT_FILTER_BUDGET, extra: str = ""
) -> list[str]:
    """Split an OR-group into filters whose encoded length stays within ``budget``.

    ``extra`` (e.g. a company or date condition) is and-ed to each piece.
    """
    pieces: list[str] = []
    current: list[str] = []
    overhead = encoded_length(f"({extra}) and ()") if extra else 0

    def render(terms: list[str]) -> str:
        group = " or ".join(terms)
        return f"({extra}) and ({group})" if extra else group

    for value in values:
        term = eq(name, value)
        if overhead + encoded_length(term) > budget:
            raise BadInputData(f"OData filter: one term for {name} is longer than the URL budget ({budget})")
        candidate = [*current, term]
        if current and encoded_length(render(candidate)) > budget:
            pieces.append(render(current))
            current = [term]
        else:
            current = candidate
    if current:
        pieces.append(render(current))
    return pieces


def key_filters(name: str, keys: Iterable[int], *, budget: int = DEFAULT_FILTER_BUDGET) -> list[str]:
    """Filters selecting integer ``keys`` of field ``name``: one ``ge``/``le`` range when the keys are dense (at
    least a quarter of the range; the caller leaves out the few rows between them), else ``split_any_of``."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    lo, hi = wanted[0], wanted[-1]
    if hi - lo + 1 <= 4 * len(wanted):
        return [and_(ge(name, lo), le(name, hi))]
    return split_any_of(name, wanted, budget=budget)

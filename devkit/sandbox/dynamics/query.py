"""``$filter`` parsing and evaluation as F&O does it (dynamics-fo.md §2.1).

Accepted: ``eq ne gt ge lt le and or not add sub mul div divby mod`` and parentheses; string literals in
single quotes with ``''`` for a quote (``*`` is a wildcard in string ``eq``/``ne``, how F&O writes
"contains"); unquoted ``DateTimeOffset`` literals; ``Microsoft.Dynamics.DataEntities.<Enum>'<Value>'``
enum literals (enums compare only with ``eq``/``ne``); numbers; ``true``/``false``/``null``. Rejected as
F&O rejects them: ``in``, ``has``, and function calls. String comparisons ignore case (SQL collation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

ENUM_NS = "Microsoft.Dynamics.DataEntities."


class QueryError(Exception):
    """A query option F&O would refuse (HTTP 400)."""


@dataclass(frozen=True)
class Enum:
    type: str
    value: str


@dataclass(frozen=True)
class Node:
    kind: str  # "cmp", "and", "or", "not", "prop", "lit", "arith"
    op: str = ""
    left: Any = None
    right: Any = None
    value: Any = None


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<enum>Microsoft\.Dynamics\.DataEntities\.[A-Za-z_][A-Za-z0-9_]*'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlL]?)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_CMP = {"eq", "ne", "gt", "ge", "lt", "le"}
_ARITH = {"add", "sub", "mul", "div", "divby", "mod"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise QueryError(f"Syntax error at position {pos} in '{text}'.")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"Expression expected at position {len(self.text)} in '{self.text}'.")
        self.i += 1
        return tok

    def kw(self, *words: str) -> str | None:
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1] in words:
            self.i += 1
            return tok[1]
        return None

    def parse(self) -> Node:
        node = self.or_()
        if self.peek() is not None:
            tok = self.peek()
            assert tok is not None
            if tok[0] == "ident" and tok[1] in ("in", "has"):
                raise QueryError(f"The '{tok[1]}' operator is not supported.")
            raise QueryError(f"Syntax error: unexpected '{tok[1]}' in '{self.text}'.")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.kw("or"):
            node = Node("or", left=node, right=self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.kw("and"):
            node = Node("and", left=node, right=self.not_())
        return node

    def not_(self) -> Node:
        if self.kw("not"):
            return Node("not", left=self.not_())
        return self.cmp()

    def cmp(self) -> Node:
        left = self.additive()
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1] in ("in", "has"):
            raise QueryError(f"The '{tok[1]}' operator is not supported.")
        op = self.kw(*_CMP)
        if op is None:
            return left
        return Node("cmp", op=op, left=left, right=self.additive())

    def additive(self) -> Node:
        node = self.primary()
        while True:
            op = self.kw(*_ARITH)
            if op is None:
                return node
            node = Node("arith", op=op, left=node, right=self.primary())

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "lparen":
            node = self.or_()
            if self.peek() is None or self.take()[0] != "rparen":
                raise QueryError(f"')' expected in '{self.text}'.")
            return node
        if kind == "string":
            return Node("lit", value=text[1:-1].replace("''", "'"))
        if kind == "number":
            raw = text.rstrip("mMdDlL")
            try:
                return Node("lit", value=int(raw) if re.fullmatch(r"-?\d+", raw) else Decimal(raw))
            except InvalidOperation:
                raise QueryError(f"Bad number literal '{text}'.") from None
        if kind == "datetime":
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise QueryError(
                    f"The DateTimeOffset text '{text}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
                ) from None
            return Node("lit", value=moment.astimezone(UTC))
        if kind == "enum":
            body = text[len(ENUM_NS) :]
            type_name, _, value = body.partition("'")
            return Node("lit", value=Enum(type_name, value[:-1].replace("''", "'")))
        if kind == "ident":
            if text in ("true", "false"):
                return Node("lit", value=text == "true")
            if text == "null":
                return Node("lit", value=None)
            nxt = self.peek()
            if nxt and nxt[0] == "lparen":
                raise QueryError(f"Unknown function '{text}'.")
            return Node("prop", value=text)
        raise QueryError(f"Syntax error: unexpected '{text}' in '{self.text}'.")


def parse_filter(text: str) -> Node:
    if not text.strip():
        raise QueryError("The $filter expression is empty.")
    return _Parser(text).parse()


# --- type checking and compilation ----------------------------------------------------------------------

Row = dict[str, Any]
_DT_CACHE: dict[str, datetime] = {}


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    cached = _DT_CACHE.get(value)
    if cached is None:
        cached = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        if len(_DT_CACHE) < 100_000:
            _DT_CACHE[value] = cached
    return cached


def _wild(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$", re.IGNORECASE | re.DOTALL
    )


def compile_filter(
    node: Node, props: dict[str, str], entity_type: str, enums: dict[str, tuple[str, ...]]
) -> Callable[[Row], bool]:
    """A predicate over rows; ``props`` maps property name -> Edm type or enum type name."""

    def prop_type(name: str) -> str:
        if name not in props:
            raise QueryError(
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.DataEntities.{entity_type}'."
            )
        return props[name]

    def value_fn(n: Node) -> tuple[Callable[[Row], Any], str]:
        if n.kind == "prop":
            name = n.value
            t = prop_type(name)
            if t == "Edm.DateTimeOffset":
                return (lambda r: _as_datetime(r.get(name))), t
            return (lambda r: r.get(name)), t
        if n.kind == "lit":
            v = n.value
            if isinstance(v, Enum):
                return (lambda r: v), "enum:" + v.type
            if isinstance(v, datetime):
                return (lambda r: v), "Edm.DateTimeOffset"
            if isinstance(v, bool):
                return (lambda r: v), "Edm.Boolean"
            if isinstance(v, int | Decimal):
                return (lambda r: v), "Edm.Decimal"
            if isinstance(v, str):
                return (lambda r: v), "Edm.String"
            return (lambda r: None), "null"
        if n.kind == "arith":
            lf, lt = value_fn(n.left)
            rf, rt = value_fn(n.right)
            for t in (lt, rt):
                if t not in ("Edm.Decimal", "Edm.Int64", "Edm.Int32", "Edm.Double"):
                    raise QueryError(f"The operator '{n.op}' is not valid for operands of type '{t}'.")
            op = n.op

            def arith(r: Row) -> Any:
                a, b = lf(r), rf(r)
                if a is None or b is None:
                    return None
                a, b = Decimal(a), Decimal(b)
                if op == "add":
                    return a + b
                if op == "sub":
                    return a - b
                if op == "mul":
                    return a * b
                if op == "mod":
                    return a % b if b else None
                return a / b if b else None

            return arith, "Edm.Decimal"
        return compile_bool(n), "Edm.Boolean"

    def compile_bool(n: Node) -> Callable[[Row], bool]:
        if n.kind == "and":
            a, b = compile_bool(n.left), compile_bool(n.right)
            return lambda r: a(r) and b(r)
        if n.kind == "or":
            a, b = compile_bool(n.left), compile_bool(n.right)
            return lambda r: a(r) or b(r)
        if n.kind == "not":
            a = compile_bool(n.left)
            return lambda r: not a(r)
        if n.kind == "cmp":
            return compile_cmp(n)
        if n.kind == "prop" and props.get(n.value) == "Edm.Boolean":
            name = n.value
            return lambda r: bool(r.get(name))
        if n.kind == "lit" and isinstance(n.value, bool):
            v = n.value
            return lambda r: v
        raise QueryError("The $filter expression must evaluate to a single boolean value.")

    def compile_cmp(n: Node) -> Callable[[Row], bool]:
        lf, lt = value_fn(n.left)
        rf, rt = value_fn(n.right)
        op = n.op
        enum_side = [t for t in (lt, rt) if t.startswith("enum:") or t in enums]
        if enum_side:
            if op not in ("eq", "ne"):
                raise QueryError(
                    f"The operator '{op}' is not supported for enum values; only 'eq' and 'ne' are."
                )
            types = {t.removeprefix("enum:") for t in (lt, rt) if t != "null"}
            if len(types) != 1:
                raise QueryError(
                    f"A binary operator with incompatible types was detected. Found operand types '{lt.removeprefix('enum:')}' and '{rt.removeprefix('enum:')}' for operator kind '{op}'."
                )
            (etype,) = types
            members = enums.get(etype, ())
            for side in (n.left, n.right):
                if side.kind == "lit" and isinstance(side.value, Enum) and side.value.value not in members:
                    raise QueryError(
                        f"The string '{side.value.value}' is not a valid enumerated type constant for '{ENUM_NS}{etype}'."
                    )

            def enum_cmp(r: Row) -> bool:
                a, b = lf(r), rf(r)
                a = a.value if isinstance(a, Enum) else a
                b = b.value if isinstance(b, Enum) else b
                return (a == b) if op == "eq" else (a != b)

            return enum_cmp
        numeric = {"Edm.Decimal", "Edm.Int64", "Edm.Int32", "Edm.Double"}
        kinds = {lt, rt} - {"null"}
        if kinds and not (kinds <= numeric or len(kinds) == 1):
            raise QueryError(
                f"A binary operator with incompatible types was detected. Found operand types '{lt}' and '{rt}' for operator kind '{op}'."
            )
        if kinds == {"Edm.String"}:
            lit = n.right.value if n.right.kind == "lit" else None
            if op in ("eq", "ne") and isinstance(lit, str) and "*" in lit:
                rx = _wild(lit)

                def wild(r: Row) -> bool:
                    v = lf(r)
                    hit = v is not None and rx.match(v) is not None
                    return hit if op == "eq" else not hit

                return wild

            def scmp(r: Row) -> bool:
                a, b = lf(r), rf(r)
                return _compare(
                    op, a.casefold() if isinstance(a, str) else a, b.casefold() if isinstance(b, str) else b
                )

            return scmp
        return lambda r: _compare(op, lf(r), rf(r))

    return compile_bool(node)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if a is None or b is None:
        return False
    if op == "gt":
        return bool(a > b)
    if op == "ge":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


def bounds(node: Node, name: str) -> tuple[Any, Any, bool, bool]:
    """(low, high, low_inclusive, high_inclusive) that every matching row's ``name`` lies in, from
    top-level AND/OR structure (None = unbounded). Used by large virtual sets to seek instead of scan."""
    if (
        node.kind == "cmp"
        and node.left.kind == "prop"
        and node.left.value == name
        and node.right.kind == "lit"
    ):
        v = node.right.value
        if isinstance(v, Enum) or v is None:
            return (None, None, True, True)
        return {
            "eq": (v, v, True, True),
            "ge": (v, None, True, True),
            "gt": (v, None, False, True),
            "le": (None, v, True, True),
            "lt": (None, v, True, False),
        }.get(node.op, (None, None, True, True))
    if node.kind == "and":
        a, b = bounds(node.left, name), bounds(node.right, name)
        lo, loi = _tighter(a[0], a[2], b[0], b[2], max)
        hi, hii = _tighter(a[1], a[3], b[1], b[3], min)
        return (lo, hi, loi, hii)
    if node.kind == "or":
        a, b = bounds(node.left, name), bounds(node.right, name)
        lo = None if a[0] is None or b[0] is None else min(a[0], b[0])
        hi = None if a[1] is None or b[1] is None else max(a[1], b[1])
        return (lo, hi, True, True)
    return (None, None, True, True)


def _tighter(a: Any, ai: bool, b: Any, bi: bool, pick: Callable[[Any, Any], Any]) -> tuple[Any, bool]:
    if a is None:
        return b, bi
    if b is None:
        return a, ai
    if a == b:
        return a, ai and bi
    chosen = pick(a, b)
    return chosen, ai if chosen == a else bi

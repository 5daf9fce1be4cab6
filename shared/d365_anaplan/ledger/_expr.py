"""The one way the ledger writes an ``UpdateItem`` (and the conditions of a ``Put``/``Delete``, the key condition of
a ``Query``).

An :class:`Update` collects ``SET`` and ``REMOVE`` actions on attribute names; placeholders
(``#n0``, ``:v0`` ...) are allocated here, one per attribute name and one per value, so no caller writes an
expression string or a placeholder map by hand. Conditions are written with :meth:`Update.name` and
:meth:`Update.value`, which return the placeholders::

    u = Update().set("status", "RUNNING").append("events", [event]).increment("redriven")
    u.where(f"{u.name('updated_at')} = {u.value(seen)}")
    client.update_item(TableName=t, Key=k, **u.args())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from d365_anaplan.ledger._dynamo import to_attr


class Update:
    """``SET``/``REMOVE`` actions and an optional condition, rendered by :meth:`args`."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # attribute name -> placeholder
        self._values: dict[str, Any] = {}  # placeholder -> wire value
        self._sets: list[str] = []
        self._removes: list[str] = []
        self._condition: str | None = None

    # --- placeholders ---------------------------------------------------------------------------------------

    def name(self, attr: str) -> str:
        """The placeholder of attribute ``attr`` (the same one each time)."""
        if attr not in self._names:
            self._names[attr] = f"#n{len(self._names)}"
        return self._names[attr]

    def value(self, value: Any, path: str = "value") -> str:
        """A new placeholder holding ``value`` (converted by the ledger's codec; ``path`` names it in errors)."""
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = to_attr(value, path)
        return placeholder

    # --- actions -----------------------------------------------------------------------------------------------

    def set(self, attr: str, value: Any) -> Update:
        """``attr = value``; a ``None`` value removes the attribute."""
        if value is None:
            return self.remove(attr)
        self._sets.append(f"{self.name(attr)} = {self.value(value, attr)}")
        return self

    def set_all(self, fields: Mapping[str, Any], keep: frozenset[str] = frozenset()) -> Update:
        """:meth:`set` for each field; a ``None`` in ``keep`` leaves the stored attribute as it is."""
        for attr, value in fields.items():
            if value is None and attr in keep:
                continue
            self.set(attr, value)
        return self

    def set_if_absent(self, attr: str, value: Any) -> Update:
        """``attr = value`` unless the item already has ``attr``."""
        n = self.name(attr)
        self._sets.append(f"{n} = if_not_exists({n}, {self.value(value, attr)})")
        return self

    def copy(self, target: str, source: str) -> Update:
        """``target`` takes the stored value of ``source`` (as it was before this update)."""
        self._sets.append(f"{self.name(target)} = {self.name(source)}")
        return self

    def append(self, attr: str, items: Sequence[Any]) -> Update:
        """Append ``items`` to the list ``attr`` (created when absent)."""
        n = self.name(attr)
        empty = self.value([], attr)
        self._sets.append(f"{n} = list_append(if_not_exists({n}, {empty}), {self.value(list(items), attr)})")
        return self

    def increment(self, attr: str, by: int = 1) -> Update:
        """Add ``by`` to the number ``attr`` (0 when absent)."""
        n = self.name(attr)
        self._sets.append(f"{n} = if_not_exists({n}, {self.value(0)}) + {self.value(by, attr)}")
        return self

    def remove(self, attr: str) -> Update:
        self._removes.append(self.name(attr))
        return self

    def remove_list_heads(self, attr: str, count: int) -> Update:
        """Remove the first ``count`` elements of the list ``attr``."""
        n = self.name(attr)
        self._removes.extend(f"{n}[{i}]" for i in range(count))
        return self

    def where(self, condition: str) -> Update:
        """The condition, written with :meth:`name` and :meth:`value` placeholders."""
        self._condition = condition
        return self

    # --- rendering ---------------------------------------------------------------------------------------------

    def expression(self) -> str:
        parts = []
        if self._sets:
            parts.append("SET " + ", ".join(self._sets))
        if self._removes:
            parts.append("REMOVE " + ", ".join(self._removes))
        return " ".join(parts)

    def args(self) -> dict[str, Any]:
        """The keyword arguments of ``update_item`` besides ``TableName`` and ``Key``."""
        return {"UpdateExpression": self.expression(), **self.condition_args()}

    def condition_args(self) -> dict[str, Any]:
        """The condition and the placeholder maps alone (a transaction's ``Put``/``Delete``, a conditional put)."""
        out: dict[str, Any] = {}
        if self._condition is not None:
            out["ConditionExpression"] = self._condition
        if self._names:
            out["ExpressionAttributeNames"] = {p: attr for attr, p in self._names.items()}
        if self._values:
            out["ExpressionAttributeValues"] = dict(self._values)
        return out


def key_condition(
    pk: str,
    *,
    pk_attr: str = "pk",
    sk_attr: str = "sk",
    prefix: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """The key condition of a ``Query`` (``KeyConditionExpression`` and its placeholders): the partition ``pk``,
    and the sort key beginning with ``prefix``, or ``BETWEEN since AND until``, ``>= since`` or ``< until``."""
    q = Update()
    condition = f"{q.name(pk_attr)} = {q.value(pk)}"
    if prefix is not None:
        condition += f" AND begins_with({q.name(sk_attr)}, {q.value(prefix)})"
    elif since is not None and until is not None:
        condition += f" AND {q.name(sk_attr)} BETWEEN {q.value(since)} AND {q.value(until)}"
    elif since is not None:
        condition += f" AND {q.name(sk_attr)} >= {q.value(since)}"
    elif until is not None:
        condition += f" AND {q.name(sk_attr)} < {q.value(until)}"
    args = q.condition_args()
    return {"KeyConditionExpression": condition, **args}

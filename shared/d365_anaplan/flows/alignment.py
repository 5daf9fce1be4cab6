"""Alignment: do the accounts and dimension values the rows reference exist on the other side?

Actuals (D365 -> Anaplan) check against the members of the Anaplan lists; plans (Anaplan -> D365) against
F&O's main accounts and dimension values. Main accounts are reported under the dimension name
``MainAccount`` (:data:`ACCOUNT`).

1. :func:`collect_references` (or :func:`references_from_plans`) counts rows and sums amounts per
   referenced value.
2. :func:`check_alignment` compares them with the member sets and returns an :class:`AlignmentReport`
   (JSON for the ledger via :meth:`AlignmentReport.to_json`, text via :meth:`AlignmentReport.to_text`).
3. :func:`resolve_alignment` applies the policy: ``fail`` raises AlignmentFailed with the top values;
   ``map`` returns a :class:`Remap` sending every unmatched value to the configured unmapped member
   (ConfigError when that member is not configured or does not exist itself).

F&O's ``FinancialDimensionValues`` returns only values that have been used: a member set read from it is
*partial*, and the report carries a caveat for that dimension (an unmatched value may exist unused).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from d365_anaplan.config import DimensionMapping, Mappings
from d365_anaplan.errors import AlignmentFailed, BadInputData, ConfigError
from d365_anaplan.flows.actuals import ActualsRow
from d365_anaplan.flows.records import PlanRow

ACCOUNT = "MainAccount"
PARTIAL_CAVEAT = (
    "member set read from FinancialDimensionValues, which lists only values already used or overridden; "
    "an unmatched value may exist in F&O without having been used"
)


@dataclass(slots=True)
class RefStat:
    rows: int = 0
    amount: Decimal = Decimal(0)


@dataclass
class References:
    """Referenced values per dimension (``MainAccount`` for accounts): value -> rows and total amount."""

    values: dict[str, dict[str, RefStat]] = field(default_factory=dict)

    def add(self, account: str, dims: Mapping[str, str], amount: Decimal, rows: int = 1) -> None:
        self._add(ACCOUNT, account, amount, rows)
        for name, value in dims.items():
            self._add(name, value, amount, rows)

    def _add(self, dimension: str, value: str, amount: Decimal, rows: int) -> None:
        stat = self.values.setdefault(dimension, {}).setdefault(value, RefStat())
        stat.rows += rows
        stat.amount += amount


def collect_references(rows: Iterable[ActualsRow], dimensions: Sequence[DimensionMapping]) -> References:
    """References of actuals rows (counts are file rows; amounts are summed)."""
    refs = References()
    refs.values.setdefault(ACCOUNT, {})
    for d in dimensions:
        refs.values.setdefault(d.name, {})
    for r in rows:
        refs.add(r.account, r.dimension_map(dimensions), r.amount)
    return refs


def references_from_plans(rows: Iterable[PlanRow], dimensions: Sequence[DimensionMapping] = ()) -> References:
    """References of parsed plan rows."""
    refs = References()
    refs.values.setdefault(ACCOUNT, {})
    for d in dimensions:
        refs.values.setdefault(d.name, {})
    for r in rows:
        refs.add(r.account, r.dimensions, r.amount)
    return refs


@dataclass(frozen=True, slots=True)
class Unmatched:
    dimension: str
    value: str
    rows: int
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "value": self.value,
            "rows": self.rows,
            "amount": str(self.amount),
        }


@dataclass
class AlignmentReport:
    """Result of :func:`check_alignment`; ``unmatched`` is sorted by dimension order, then value."""

    target: str
    checked: dict[str, int]
    unmatched: list[Unmatched]
    partial: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unmatched

    def top(self, n: int = 10) -> list[Unmatched]:
        """The ``n`` unmatched values that weigh most (largest absolute amount, then most rows)."""
        order = {d: i for i, d in enumerate(self.checked)}
        return sorted(
            self.unmatched,
            key=lambda u: (-abs(u.amount), -u.rows, order.get(u.dimension, len(order)), u.value),
        )[:n]

    def unmatched_by_dimension(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for u in self.unmatched:
            out.setdefault(u.dimension, []).append(u.value)
        return out

    def to_json(self, max_values: int = 50) -> dict[str, Any]:
        """Small JSON: counts per dimension, the heaviest ``max_values`` unmatched values, caveats."""
        shown = self.top(max_values)
        return {
            "target": self.target,
            "ok": self.ok,
            "checked": dict(self.checked),
            "unmatched_count": len(self.unmatched),
            "unmatched_rows": sum(u.rows for u in self.unmatched),
            "unmatched": [u.to_json() for u in shown],
            "truncated": len(self.unmatched) - len(shown),
            "caveats": [f"{d}: {PARTIAL_CAVEAT}" for d in self.partial],
        }

    def to_text(self, top: int = 10) -> str:
        """Readable summary for error messages and operators."""
        if self.ok:
            text = f"alignment with {self.target}: every referenced value exists ({_checked(self.checked)})"
        else:
            per_dim = ", ".join(f"{d}: {len(v)}" for d, v in self.unmatched_by_dimension().items())
            rows = sum(u.rows for u in self.unmatched)
            lines = [
                f"alignment with {self.target}: {len(self.unmatched)} referenced value(s) do not exist "
                f"({per_dim}; {rows} row(s) affected)"
            ]
            shown = self.top(top)
            lines += [
                f"  {u.dimension} {u.value!r}: {u.rows} row(s), amount {u.amount}"
                if u.value
                else f"  {u.dimension} (blank): {u.rows} row(s), amount {u.amount}"
                for u in shown
            ]
            if len(self.unmatched) > len(shown):
                lines.append(f"  ... and {len(self.unmatched) - len(shown)} more")
            text = "\n".join(lines)
        for d in self.partial:
            text += f"\n  caveat for {d}: {PARTIAL_CAVEAT}"
        return text


def _checked(checked: Mapping[str, int]) -> str:
    return ", ".join(f"{d}: {n} value(s)" for d, n in checked.items())


def check_alignment(
    refs: References,
    members: Mapping[str, Collection[str]],
    *,
    target: str,
    partial: Collection[str] = (),
    casefold: bool = False,
) -> AlignmentReport:
    """Compare referenced values with the members that exist on ``target``.

    ``members`` maps each referenced dimension (and ``MainAccount``) to its member codes; a referenced
    dimension without a member set is a caller error (BadInputData). ``partial`` names the dimensions whose
    member set came from ``FinancialDimensionValues``. ``casefold`` compares case-insensitively (F&O codes
    are case-insensitive; Anaplan codes are compared exactly). A blank value is matched like any other
    (it matches only if ``""`` is a member).
    """
    missing = [d for d, values in refs.values.items() if values and d not in members]
    if missing:
        raise BadInputData(f"alignment with {target}: no member list for dimension(s) {', '.join(missing)}")
    unmatched: list[Unmatched] = []
    checked: dict[str, int] = {}
    for dimension, values in refs.values.items():
        checked[dimension] = len(values)
        if not values:
            continue
        known = {m.casefold() for m in members[dimension]} if casefold else set(members[dimension])
        for value in sorted(values):
            probe = value.casefold() if casefold else value
            if probe not in known:
                stat = values[value]
                unmatched.append(Unmatched(dimension, value, stat.rows, stat.amount))
    return AlignmentReport(
        target=target,
        checked=checked,
        unmatched=unmatched,
        partial=[d for d in refs.values if d in set(partial)],
    )


@dataclass(frozen=True)
class Remap:
    """Replacement values per dimension (``MainAccount`` for accounts): value -> member."""

    mapping: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.mapping.values())

    def value(self, dimension: str, value: str) -> str:
        return self.mapping.get(dimension, {}).get(value, value)

    def apply(self, account: str, dims: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        return self.value(ACCOUNT, account), {k: self.value(k, v) for k, v in dims.items()}

    def apply_row(self, row: ActualsRow, dimensions: Sequence[DimensionMapping]) -> ActualsRow:
        """A copy of ``row`` with remapped account and dimension values (amount and counts unchanged)."""
        account, dims = self.apply(row.account, row.dimension_map(dimensions))
        return replace(row, account=account, dims=tuple(dims[d.name] for d in dimensions))

    def apply_plan_row(self, row: PlanRow) -> PlanRow:
        account, dims = self.apply(row.account, row.dimensions)
        return row.model_copy(update={"account": account, "dimensions": dims})

    def to_json(self) -> dict[str, dict[str, str]]:
        return {d: dict(v) for d, v in self.mapping.items() if v}


def resolve_alignment(
    report: AlignmentReport,
    *,
    policy: Literal["fail", "map"],
    unmapped: Mapping[str, str | None],
    members: Mapping[str, Collection[str]] | None = None,
    setting_names: Mapping[str, str] | None = None,
    top: int = 10,
) -> Remap:
    """Apply the unmapped policy to a report.

    * aligned report -> an empty :class:`Remap`;
    * ``fail`` -> AlignmentFailed with :meth:`AlignmentReport.to_text` (top ``top`` values);
    * ``map`` -> every unmatched value goes to ``unmapped[dimension]``; a dimension with unmatched values
      and no configured member, or whose configured member is itself missing from ``members``, is a
      ConfigError naming the setting (``setting_names[dimension]``).
    """
    if report.ok:
        return Remap()
    if policy == "fail":
        raise AlignmentFailed(report.to_text(top))
    names = setting_names or {}
    problems: list[str] = []
    mapping: dict[str, dict[str, str]] = {}
    for dimension, values in report.unmatched_by_dimension().items():
        setting = names.get(dimension, f"unmapped member of {dimension}")
        member = unmapped.get(dimension)
        if not member:
            problems.append(
                f"{setting}: not set, but policy 'map' needs it for {len(values)} unmatched {dimension} value(s)"
            )
            continue
        if members is not None and dimension in members and member not in set(members[dimension]):
            problems.append(f"{setting}: {member!r} is not a member of {dimension} in {report.target}")
            continue
        mapping[dimension] = dict.fromkeys(values, member)
    if problems:
        raise ConfigError(problems)
    return Remap(mapping)


def resolve_actuals_alignment(
    report: AlignmentReport,
    mappings: Mappings,
    members: Mapping[str, Collection[str]] | None = None,
    top: int = 10,
) -> Remap:
    """:func:`resolve_alignment` with the policy and unmapped members of ``mapping.actuals`` / dimensions."""
    unmapped: dict[str, str | None] = {ACCOUNT: mappings.actuals.unmapped_account}
    names = {ACCOUNT: "mapping.actuals.unmapped_account"}
    for i, d in enumerate(mappings.dimensions):
        unmapped[d.name] = d.unmapped_member
        names[d.name] = f"mapping.dimensions[{i}].unmapped_member ({d.name})"
    return resolve_alignment(
        report,
        policy=mappings.actuals.unmapped_policy,
        unmapped=unmapped,
        members=members,
        setting_names=names,
        top=top,
    )

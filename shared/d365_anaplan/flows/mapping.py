"""Scopes and value maps (issue 12): which main accounts a flow touches, and how F&O codes become Anaplan
member codes and back. Pure logic; the configuration shapes are in :mod:`d365_anaplan.mapping_config` and
the CSV maps are read by :mod:`d365_anaplan.steps.mapping`.

Scopes (:class:`ScopeFilter`): an account is in scope when its MainAccountType is in ``types`` (or
``types`` is empty) and not in ``exclude_types``, its id matches one ``include`` pattern (or ``include`` is
empty) and no ``exclude`` pattern. A pattern is a ``"LO..HI"`` inclusive range - compared as numbers when
both ends and the account id are digits of the same length, else as text (case-insensitive) - or an
fnmatch glob (``4*``, ``60?0``), case-insensitive like F&O codes.

Value maps (:class:`ValueMap`): F&O code -> Anaplan member (F&O codes compare case-insensitively; several
codes may map to one member). An unmapped code passes through unchanged or is refused (``unmapped``).
Plans reverse the map: a member reached from one F&O code gives that code; from several it needs a
``reverse`` entry, else it is refused naming the map, the member and the candidates; a dimension's
``blank_member`` reverses to a blank segment. :class:`ValueMaps` applies every map to actuals rows (blank
dimension values become the dimension's ``blank_member`` first; many-to-one merges are summed per Anaplan
cell and currency by :func:`map_actuals_rows`) and reverses the codes of a plan row.
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from d365_anaplan.config import DimensionMapping, Mappings
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.actuals import ActualsAggregate, ActualsRow
from d365_anaplan.flows.sign import flip_sign
from d365_anaplan.flows.textsafe import check_code
from d365_anaplan.mapping_config import AccountScope, ValueMapConfig

Flow = Literal["actuals", "plans"]

# --- scopes ------------------------------------------------------------------------------------------------


def in_range(account: str, lo: str, hi: str) -> bool:
    """``lo <= account <= hi``: as numbers when all three are digits of the same length, else as text."""
    if lo.isdigit() and hi.isdigit() and account.isdigit() and len(lo) == len(hi) == len(account):
        return int(lo) <= int(account) <= int(hi)
    a = account.casefold()
    return lo.casefold() <= a <= hi.casefold()


def matches(account: str, pattern: str) -> bool:
    """Does ``account`` match a scope pattern (a ``LO..HI`` range or a glob)?"""
    if ".." in pattern:
        lo, _, hi = pattern.partition("..")
        return in_range(account, lo, hi)
    return fnmatch.fnmatchcase(account.casefold(), pattern.casefold())


class ScopeFilter:
    """One flow's account scope over F&O's main account types (``account_types``: account id -> type)."""

    def __init__(self, scope: AccountScope, account_types: Mapping[str, str], *, setting: str) -> None:
        self.scope = scope
        self.types = {k.upper(): v for k, v in account_types.items()}
        self.setting = setting

    def reason_out(self, account: str) -> str | None:
        """Why ``account`` is outside the scope (None: inside)."""
        s = self.scope
        if s.unrestricted:
            return None
        kind = self.types.get(account.upper())
        if s.types or s.exclude_types:
            if kind is None:
                return "it is not a main account in F&O (its type is unknown)"
            if s.types and kind not in s.types:
                return f"its type {kind} is not one of types {list(s.types)}"
            if kind in s.exclude_types:
                return f"its type {kind} is in exclude_types"
        if s.include and not any(matches(account, p) for p in s.include):
            return f"it matches none of include {s.include}"
        hit = next((p for p in s.exclude if matches(account, p)), None)
        if hit is not None:
            return f"it matches exclude {hit!r}"
        return None

    def __contains__(self, account: object) -> bool:
        return isinstance(account, str) and self.reason_out(account) is None

    def accounts(self) -> list[str]:
        """The F&O main accounts in scope, sorted."""
        return sorted(a for a in self.types if a in self)


def scope_filter(mappings: Mappings, flow: Flow, account_types: Mapping[str, str]) -> ScopeFilter:
    setting = f"mapping.scopes.{'plans' if flow == 'plans' and mappings.scopes.plans else 'actuals'}"
    return ScopeFilter(mappings.scopes.for_flow(flow), account_types, setting=setting)


# --- value maps --------------------------------------------------------------------------------------------

MAX_MAP_ROWS = 200_000


def parse_map_csv(text: str, *, source: str) -> dict[str, str]:
    """The rows of a CSV value map (header ``fo,anaplan``): F&O code -> Anaplan member.

    Refused with one line naming the file and line: another header, a row without exactly two fields,
    a code that is not a safe code (formula start, control character, surrounding spaces), an F&O code
    listed twice with different members, more than :data:`MAX_MAP_ROWS` rows, text that is not CSV."""
    lines = text.removeprefix("\ufeff").splitlines()
    reader = csv.reader(lines, strict=True)
    out: dict[str, str] = {}  # casefolded F&O code -> member
    first: dict[str, int] = {}
    given: dict[str, str] = {}  # casefolded -> the code as written
    header_seen = False
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not f.strip() for f in record):
                continue
            if not header_seen:
                header = [f.strip().lower() for f in record]
                if header != ["fo", "anaplan"]:
                    raise BadInputData(
                        f"{source} line {line}: the header must be 'fo,anaplan'"  # its text is not echoed
                    )
                header_seen = True
                continue
            if len(record) != 2:
                raise BadInputData(
                    f"{source} line {line}: has {len(record)} field(s), expected 2 (fo,anaplan)"
                )
            where = f"{source} line {line}"
            fo = check_code(record[0], where=where, field="fo")
            member = check_code(record[1], where=where, field="anaplan")
            key = fo.casefold()
            if key in out and out[key] != member:
                raise BadInputData(
                    f"{where}: F&O code {fo!r} maps to {member!r} here and to {out[key]!r} on line {first[key]}"
                )
            out.setdefault(key, member)
            first.setdefault(key, line)
            given.setdefault(key, fo)
            if len(out) > MAX_MAP_ROWS:
                raise BadInputData(f"{source}: more than {MAX_MAP_ROWS:,} rows; refused")
    except csv.Error as exc:
        raise BadInputData(f"{source} line {reader.line_num}: not valid CSV ({exc})") from None
    if not header_seen:
        raise BadInputData(f"{source}: the file is empty (expected the header 'fo,anaplan')")
    return {given[k]: v for k, v in out.items()}


@dataclass(frozen=True)
class ValueMap:
    """One map: F&O code (casefolded key) -> Anaplan member."""

    name: str
    forward: Mapping[str, str]
    codes: Mapping[str, str]  # casefolded F&O code -> the code as configured
    unmapped: Literal["passthrough", "fail"] = "passthrough"
    reverse_choice: Mapping[str, str] = field(default_factory=dict)
    blank_member: str | None = None
    by_member: Mapping[str, list[str]] = field(init=False, repr=False)  # member -> F&O codes, sorted

    def __post_init__(self) -> None:
        index: dict[str, list[str]] = {}
        for k, v in self.forward.items():
            index.setdefault(v, []).append(self.codes[k])
        object.__setattr__(self, "by_member", {m: sorted(c) for m, c in index.items()})

    @property
    def setting(self) -> str:
        return f"mapping.value_maps.{self.name}"

    def apply(self, code: str, *, where: str) -> str:
        """The Anaplan member of F&O ``code``; a blank dimension value becomes ``blank_member`` (or stays
        blank)."""
        if code == "":
            return self.blank_member or ""
        member = self.forward.get(code.casefold())
        if member is not None:
            return member
        if self.unmapped == "fail":
            raise BadInputData(
                f"{where}: {self.name} {code!r} is not in {self.setting} (unmapped: fail); add it to the map "
                "or set unmapped: passthrough"
            )
        return code

    def candidates(self, member: str) -> list[str]:
        """The F&O codes that map to ``member``."""
        return list(self.by_member.get(member, ()))

    def ambiguities(self) -> dict[str, list[str]]:
        """Members reached from several F&O codes without a ``reverse`` entry -> their candidates."""
        return {
            m: list(c)
            for m, c in sorted(self.by_member.items())
            if len(c) > 1 and m not in self.reverse_choice
        }

    def ambiguity_text(self, member: str, candidates: Sequence[str]) -> str:
        return (
            f"{self.setting}: the reverse of Anaplan member {member!r} is ambiguous: F&O codes "
            f"{list(candidates)} all map to it; add {self.setting}.reverse: {{{member!r}: <one of them>}} "
            "to say which F&O code plans write"
        )

    def reverse(self, member: str, *, where: str) -> str:
        """The F&O code an Anaplan ``member`` writes (plans)."""
        if self.blank_member is not None and member == self.blank_member:
            return ""
        chosen = self.reverse_choice.get(member)
        if chosen is not None:
            return chosen
        found = self.candidates(member)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise BadInputData(f"{where}: {self.ambiguity_text(member, found)}")
        if self.unmapped == "fail":
            raise BadInputData(
                f"{where}: {self.name} {member!r} is not a member any F&O code maps to in {self.setting} "
                "(unmapped: fail)"
            )
        return member


def build_value_map(
    name: str,
    config: ValueMapConfig | None,
    csv_values: Mapping[str, str] | None = None,
    *,
    blank_member: str | None = None,
) -> ValueMap:
    """Merge the inline ``values`` with a CSV's rows (a code in both with different members is refused) and
    check the ``reverse`` entries; ConfigError lists every problem."""
    cfg = config or ValueMapConfig()
    setting = f"mapping.value_maps.{name}"
    problems: list[str] = []
    forward: dict[str, str] = {}
    codes: dict[str, str] = {}
    for code, member in cfg.values.items():
        key = code.casefold()
        try:
            check_code(code, where=f"{setting}.values", field="F&O code")
            check_code(member, where=f"{setting}.values.{code}", field="Anaplan member")
        except BadInputData as exc:
            problems.append(str(exc))
            continue
        if key in forward and forward[key] != member:
            problems.append(f"{setting}.values: {code!r} and {codes[key]!r} are the same F&O code with "
                            f"different members {forward[key]!r} and {member!r}")  # fmt: skip
            continue
        forward[key], codes[key] = member, code
    for code, member in (csv_values or {}).items():
        key = code.casefold()
        if key in forward and forward[key] != member:
            problems.append(f"{setting}: F&O code {codes[key]!r} maps to {forward[key]!r} in values and to "
                            f"{member!r} in the CSV {cfg.csv!r}")  # fmt: skip
            continue
        forward.setdefault(key, member)
        codes.setdefault(key, code)
    vm = ValueMap(name, forward, codes, cfg.unmapped, dict(cfg.reverse), blank_member)
    for member, code in cfg.reverse.items():
        found = vm.candidates(member)
        if not found:
            problems.append(f"{setting}.reverse: {member!r} is not a member any F&O code maps to")
        elif code.casefold() not in {c.casefold() for c in found}:
            problems.append(f"{setting}.reverse: {member!r} -> {code!r}, but {code!r} does not map to "
                            f"{member!r} (candidates {found})")  # fmt: skip
    if problems:
        raise ConfigError(problems)
    return vm


@dataclass(frozen=True)
class ValueMaps:
    """Every map of a connection; a field or dimension without a map passes codes unchanged (blank
    dimension values still become the dimension's ``blank_member``)."""

    company: ValueMap
    account: ValueMap
    dimensions: Mapping[str, ValueMap]

    @classmethod
    def build(
        cls, mappings: Mappings, csv_values: Mapping[str, Mapping[str, str]] | None = None
    ) -> ValueMaps:
        """From the configuration and the CSV maps already read (map name -> rows)."""
        loaded = csv_values or {}
        problems: list[str] = []
        maps: dict[str, ValueMap] = {}
        blanks = {d.name: d.blank_member for d in mappings.dimensions}
        for name in ("company", "account", *blanks):
            try:
                maps[name] = build_value_map(
                    name, mappings.value_maps.get(name), loaded.get(name), blank_member=blanks.get(name)
                )
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return cls(maps["company"], maps["account"], {n: maps[n] for n in blanks})

    def get(self, name: str) -> ValueMap:
        if name == "company":
            return self.company
        if name == "account":
            return self.account
        return self.dimensions[name]

    def map_row(
        self,
        row: ActualsRow,
        dimensions: Sequence[DimensionMapping],
        *,
        account_types: Mapping[str, str] | None = None,
    ) -> ActualsRow:
        """One actuals row in Anaplan codes; with ``account_types`` (natural sign) the amount is flipped by
        the F&O account's type first."""
        where = f"actuals row (company {row.company}, account {row.account})"
        amount = row.amount
        if account_types is not None:
            amount = flip_sign(amount, row.account, account_types.get(row.account.upper()), where=where,
                               setting="mapping.actuals.sign")  # fmt: skip
        return replace(
            row,
            company=self.company.apply(row.company, where=where),
            account=self.account.apply(row.account, where=where),
            dims=tuple(
                self.dimensions[d.name].apply(v, where=where)
                for d, v in zip(dimensions, row.dims, strict=True)
            ),
            amount=amount,
        )

    def reverse_codes(
        self, company: str, account: str, dims: Mapping[str, str], *, where: str
    ) -> tuple[str, str, dict[str, str]]:
        """A plan row's Anaplan codes as F&O codes (company upper case)."""
        return (
            self.company.reverse(company, where=where).upper(),
            self.account.reverse(account, where=where),
            {
                k: self.dimensions[k].reverse(v, where=where) if k in self.dimensions else v
                for k, v in dims.items()
            },
        )

    def ambiguities(self, names: Iterable[str]) -> list[str]:
        """One problem line per ambiguous reverse among the maps ``names``."""
        out: list[str] = []
        for name in names:
            vm = self.get(name)
            out += [vm.ambiguity_text(m, c) for m, c in vm.ambiguities().items()]
        return out


def plan_map_names(mappings: Mappings) -> list[str]:
    """The maps plans reverse: company, account and the dimensions the plan exports carry."""
    wanted = mappings.plans.dimensions
    return [
        "company",
        "account",
        *(d.name for d in mappings.dimensions if wanted is None or d.name in wanted),
    ]


def map_actuals_rows(
    rows: Iterable[ActualsRow],
    maps: ValueMaps,
    dimensions: Sequence[DimensionMapping],
    *,
    scope: ScopeFilter | None = None,
    account_types: Mapping[str, str] | None = None,
    aggregate: bool = True,
) -> Iterator[ActualsRow]:
    """Rows in Anaplan codes: out-of-scope accounts dropped, sign converted (``account_types`` given: natural
    sign), codes mapped; with ``aggregate`` rows that meet on one Anaplan cell (company, account, dimension
    values, period, currency) are summed (Decimal; currencies never added) and returned sorted."""
    kept = (r for r in rows if scope is None or r.account in scope)
    mapped = (maps.map_row(r, dimensions, account_types=account_types) for r in kept)
    if not aggregate:
        yield from mapped
        return
    agg = ActualsAggregate(dimensions=tuple(dimensions))
    for r in mapped:
        agg.add(r)
    yield from agg.rows()

"""Splitting a GL line's ledger account into main account and named dimension values: by name from
``LedgerDimensionValuesJson`` where the line has it, else from its display value in the order of its account
structure (``DimensionCombinations``, ``ledger.account_structures``) or of the ledger integration format."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.dimensions import DimensionFormat, split_by_structure
from d365_anaplan.dynamics.gl_rows import (
    COMBINATION_SET,
    DIMENSION_JSON,
    has_named,
    named_dimensions,
    remember,
    row_text,
    split_key,
)
from d365_anaplan.dynamics.master_data import MasterDataReader
from d365_anaplan.dynamics.odata_shapes import Query
from d365_anaplan.errors import ConfigError, DynamicsBadResponse, DynamicsRouteUnavailable

_SPLIT_CHUNK = 500  # lines whose display values are looked up in DimensionCombinations together


class DisplaySplitter(MasterDataReader):
    """The reader's dimension split of GL lines (cached per read)."""

    def _lookup_structures(self, displays: Iterable[str]) -> None:
        """Read the account structure of each display value from ``DimensionCombinations`` (batched, cached)."""
        wanted = sorted({d for d in displays if d not in self._combinations})
        if not wanted:
            return
        if not self.discover().metadata.has_set(COMBINATION_SET):
            raise DynamicsRouteUnavailable(
                f"GL lines have no named dimension values and {COMBINATION_SET} is not published, so the account "
                f"structure of LedgerAccount {wanted[0]!r} cannot be known; publish LedgerDimensionValuesJson or "
                f"{COMBINATION_SET}, or set ledger.display_value_order: format if display values follow the ledger "
                "integration format"
            )
        for d in wanted:
            self._combinations[d] = []
        for flt in F.split_any_of("DisplayValue", wanted, budget=self.filter_budget):
            query = Query(
                COMBINATION_SET,
                filter=flt,
                select=("DisplayValue", "MainAccount", "AccountStructure"),
                cross_company=False,
            )
            for row in self.client.iter_rows(query):
                what = f"{COMBINATION_SET} row {row.get('DisplayValue')!r}"
                display = row_text(row, "DisplayValue", what)
                entry = (
                    row_text(row, "AccountStructure", what),
                    row_text(row, "MainAccount", what, required=False),
                )
                if display in self._combinations and entry not in self._combinations[display]:
                    self._combinations[display].append(entry)

    def _split_display(
        self, display: str, fmt: DimensionFormat, what: str
    ) -> tuple[str, dict[str, str], str]:
        """(main account, dimensions, how) of a line without named values."""
        if self.options.display_value_order == "format":
            account, dims = fmt.parse_value(display, what=what)
            return account, dims, f"ledger format {fmt.name!r} ({fmt.delimiter.join(fmt.segments)})"
        self._lookup_structures([display])
        found = self._combinations[display]
        if not found:
            raise DynamicsBadResponse(
                f"{what}: LedgerAccount {display!r} is not in {COMBINATION_SET}, so its account structure is unknown"
            )
        results: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for structure, main_account in found:
            order = self.options.account_structures.get(structure)
            if order is None:
                raise ConfigError(
                    [
                        f"{what}: account {main_account or display!r} is in account structure {structure!r}, whose "
                        f"segment order is not configured; add ledger.account_structures {structure!r}: "
                        "[MainAccount, ...] in the structure's order, or set ledger.display_value_order: format if "
                        "F&O's display values follow the ledger integration format"
                    ],
                    source="ledger.account_structures",
                )
            account, dims = split_by_structure(display, structure, tuple(order), self.delimiter(), what=what)
            if main_account and account != main_account:
                raise ConfigError(
                    [
                        f"{what}: the order configured for account structure {structure!r} ({'-'.join(order)}) puts "
                        f"{account!r} in MainAccount of {display!r}, but {COMBINATION_SET} says main account "
                        f"{main_account!r}; fix ledger.account_structures {structure!r}"
                    ],
                    source="ledger.account_structures",
                )
            results[(account, tuple(sorted(dims.items())))] = (
                f"account structure {structure!r} ({self.delimiter().join(order)})"
            )
        if len(results) > 1:
            raise DynamicsBadResponse(
                f"{what}: LedgerAccount {display!r} belongs to account structures "
                f"{sorted(s for s, _ in found)} that split it differently"
            )
        (((account, items), how),) = results.items()
        return account, dict(items), how

    def _split_lines(
        self,
        rows: Iterable[dict[str, Any]],
        display_field: str,
        named: bool,
        fmt: DimensionFormat,
        what: Callable[[dict[str, Any]], str],
    ) -> Iterator[tuple[dict[str, Any], str, str, dict[str, str]]]:
        """(row, what, account, dimensions) of each row, by name where the row has named values, else from its
        display value; display values are looked up in DimensionCombinations a chunk at a time."""
        chunk: list[dict[str, Any]] = []

        def flush() -> Iterator[tuple[dict[str, Any], str, str, dict[str, str]]]:
            if self.options.display_value_order == "structure":
                self._lookup_structures(
                    str(r.get(display_field))
                    for r in chunk
                    if isinstance(r.get(display_field), str) and not has_named(r, named)
                )
            named_seen, display_seen = self._named_seen, self._display_seen
            for r in chunk:
                w = what(r)
                display = row_text(r, display_field, w)
                raw = r.get(DIMENSION_JSON) if named else None
                if isinstance(raw, str) and raw.strip():
                    hit = named_seen.get(raw)
                    if hit is None:
                        hit = named_dimensions(raw, display, w)
                        remember(named_seen, raw, hit)
                    account, dims = hit[0], dict(hit[1])
                    if self._splits is not None:
                        self._splits[split_key(r)] = f"named values ({DIMENSION_JSON})"
                else:
                    seen = display_seen.get(display)
                    if seen is None:
                        seen = self._split_display(display, fmt, w)
                        remember(display_seen, display, seen)
                    account, dims = seen[0], dict(seen[1])
                    if self._splits is not None:
                        self._splits[split_key(r)] = f"{display!r} in {seen[2]}"
                yield r, w, account, dims
            chunk.clear()

        for row in rows:
            chunk.append(row)
            if len(chunk) >= _SPLIT_CHUNK:
                yield from flush()
        yield from flush()

    def _forget_splits(self) -> None:
        """A read starts from the options as they are now (the caches of :meth:`_split_lines`)."""
        self._named_seen.clear()
        self._display_seen.clear()
        self._monthly.clear()

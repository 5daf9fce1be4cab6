"""Financial dimension formats for integrating applications (dynamics-fo.md §3).

The ledger dimension format is global and positional: the first segment is the main account, the rest are
dimensions in the configured order, joined with the system segment delimiter. F&O silently drops surplus
segments, so :meth:`DimensionFormat.build` refuses anything it cannot place instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from d365_anaplan.errors import BadInputData, DynamicsBadResponse

# DimensionParameters.DimensionSegmentDelimiter enum members -> the character(s) they stand for.
DELIMITERS = {
    "Hyphen": "-",
    "Period": ".",
    "Underscore": "_",
    "Bar": "|",
    "Tilde": "~",
    "DoubleHyphen": "--",
    "DoublePeriod": "..",
    "DoubleUnderscore": "__",
    "DoubleBar": "||",
    "DoubleTilde": "~~",
}
MAIN_ACCOUNT = "MainAccount"
_NAME = re.compile(r"[A-Za-z0-9_]+")


def delimiter_from_enum(value: str) -> str:
    name = value.rsplit("'", 2)[-2] if value.endswith("'") and "'" in value[:-1] else value
    if name in DELIMITERS:
        return DELIMITERS[name]
    if name in DELIMITERS.values():
        return name
    raise DynamicsBadResponse(f"DimensionParameters.DimensionSegmentDelimiter: unknown value {value!r}")


@dataclass(frozen=True)
class DimensionFormat:
    """An active integration format: ordered segment names and the delimiter."""

    name: str
    segments: tuple[str, ...]  # e.g. ("MainAccount", "BusinessUnit", "CostCenter", "Department")
    delimiter: str = "-"
    includes_main_account: bool = True

    @classmethod
    def parse(
        cls, name: str, format_string: str, delimiter: str, *, includes_main_account: bool = True
    ) -> DimensionFormat:
        """``FinancialDimensionFormat`` text (its exact syntax is UNCONFIRMED: any non-name characters
        separate segment names) into a format."""
        segments = tuple(_NAME.findall(format_string))
        if not segments:
            raise DynamicsBadResponse(
                f"DimensionIntegrationFormats {name!r}: empty FinancialDimensionFormat {format_string!r}"
            )
        if len(set(segments)) != len(segments):
            raise DynamicsBadResponse(
                f"DimensionIntegrationFormats {name!r}: a segment repeats in {format_string!r}"
            )
        if includes_main_account and segments[0] != MAIN_ACCOUNT:
            raise DynamicsBadResponse(
                f"DimensionIntegrationFormats {name!r}: the ledger format must start with MainAccount, got {format_string!r}"
            )
        if not delimiter:
            raise DynamicsBadResponse("DimensionParameters: empty segment delimiter")
        return cls(name, segments, delimiter, includes_main_account)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.segments[1:] if self.includes_main_account else self.segments

    def build(self, account: str | None, dimensions: Mapping[str, str], *, what: str = "line") -> str:
        """The display value by position; unknown dimensions and values holding the delimiter are refused."""
        unknown = sorted(set(dimensions) - set(self.dimensions))
        if unknown:
            raise BadInputData(
                f"{what}: dimension(s) {unknown} are not in the active {self.name!r} format "
                f"{self.delimiter.join(self.segments)}; F&O would drop them silently"
            )
        values: list[str] = []
        if self.includes_main_account:
            if not account or not account.strip():
                raise BadInputData(f"{what}: the main account is empty")
            values.append(account.strip())
        values.extend((dimensions.get(d) or "").strip() for d in self.dimensions)
        for seg, value in zip(self.segments, values, strict=True):
            if self.delimiter in value:
                raise BadInputData(
                    f"{what}: {seg} value {value!r} contains the segment delimiter {self.delimiter!r}"
                )
            if any(ord(c) < 0x20 for c in value):
                raise BadInputData(f"{what}: {seg} value {value!r} contains control characters")
        # Trailing blank segments are kept: F&O reads a shorter value with blanks anyway (§3).
        return self.delimiter.join(values)

    def build_from_segments(self, segments: list[str], *, what: str = "line") -> str:
        """Join ready-made positional segments; more segments than the format has is an error (never dropped)."""
        if len(segments) > len(self.segments):
            raise BadInputData(
                f"{what}: {len(segments)} segments but the active {self.name!r} format has {len(self.segments)} "
                f"({self.delimiter.join(self.segments)}); F&O would drop the surplus silently"
            )
        names = dict(zip(self.segments, segments, strict=False))
        account = names.pop(MAIN_ACCOUNT, None) if self.includes_main_account else None
        return self.build(account, {k: v for k, v in names.items() if v}, what=what)

    def try_parse(self, display_value: str) -> tuple[str, dict[str, str]] | None:
        """Fast path of :meth:`parse_value`: None when the value needs the checked path."""
        parts = display_value.split(self.delimiter)
        if len(parts) > len(self.segments):
            return None
        if self.includes_main_account:
            if not parts[0]:
                return None
            return parts[0], {
                name: value for name, value in zip(self.segments[1:], parts[1:], strict=False) if value
            }
        return "", {name: value for name, value in zip(self.segments, parts, strict=False) if value}

    def parse_value(self, display_value: str, *, what: str = "line") -> tuple[str, dict[str, str]]:
        """Split a display value into (main account, {dimension: value}); blanks are omitted."""
        parts = display_value.split(self.delimiter)
        if len(parts) > len(self.segments):
            raise DynamicsBadResponse(
                f"{what}: display value {display_value!r} has {len(parts)} segments; the {self.name!r} format has "
                f"{len(self.segments)} ({self.delimiter.join(self.segments)})"
            )
        named = dict(zip(self.segments, parts, strict=False))
        account = named.pop(MAIN_ACCOUNT, "") if self.includes_main_account else ""
        if self.includes_main_account and not account:
            raise DynamicsBadResponse(f"{what}: display value {display_value!r} has no main account")
        return account, {k: v for k, v in named.items() if v}


def split_by_structure(
    display_value: str, structure: str, segments: tuple[str, ...], delimiter: str, *, what: str = "line"
) -> tuple[str, dict[str, str]]:
    """Split a display value in an account structure's own segment order (MainAccount may be anywhere):
    (main account, {dimension: value}); blanks are omitted, more segments than the structure has is refused."""
    parts = display_value.split(delimiter)
    if len(parts) > len(segments):
        raise DynamicsBadResponse(
            f"{what}: display value {display_value!r} has {len(parts)} segments; account structure {structure!r} "
            f"has {len(segments)} ({delimiter.join(segments)})"
        )
    named = dict(zip(segments, parts, strict=False))
    account = named.pop(MAIN_ACCOUNT, "")
    if not account:
        raise DynamicsBadResponse(
            f"{what}: display value {display_value!r} has no main account in account structure {structure!r} "
            f"({delimiter.join(segments)})"
        )
    return account, {k: v for k, v in named.items() if v}

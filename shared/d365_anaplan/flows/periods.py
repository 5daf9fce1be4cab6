"""Period labels in the format the Anaplan model uses (``ActualsMapping.period_format``).

A format is literal text with tokens in braces. Tokens (month names are English, whatever the locale):

========  ==========================================================  ===============
token     meaning                                                     March 2025, FY start 7
========  ==========================================================  ===============
{yyyy}    calendar year, 4 digits                                     2025
{yy}      calendar year, 2 digits (parsed as 20yy)                    25
{mm}      month number, 2 digits                                      03
{m}       month number, no leading zero                               3
{mon}     month abbreviation, lower case                              mar
{Mon}     month abbreviation, capitalised                             Mar
{MON}     month abbreviation, upper case                              MAR
{fy}      fiscal year, 4 digits (named by the year it ends in)        2025
{fyy}     fiscal year, 2 digits (parsed as 20yy)                      25
{q}       fiscal quarter 1-4                                          3
{fp}      fiscal period (month of the fiscal year) 1-12               9
{fpp}     fiscal period, 2 digits                                     09
========  ==========================================================  ===============

Examples: ``"{Mon} {yy}"`` -> ``Mar 25`` (Anaplan's default month time-period display), ``"FY{fyy} {Mon}"``
-> ``FY25 Mar``, ``"{yyyy}-{mm}"`` -> ``2025-03``, ``"{MON}{yyyy}"`` -> ``MAR2025``, ``"FY{fyy} P{fpp}"`` ->
``FY25 P09`` (a fiscal year starting in July; the same {fp}/{fpp} as ``ledger.fiscal_period_format``).

A format must name the month (one of the month tokens or a fiscal period) and a year ({yyyy}, {yy}, {fy} or {fyy}); otherwise a
label would not identify a single period. :func:`parse_period_label` is exact: the label must be precisely
what :func:`format_period` writes for some month (same case, same padding, same literal text).
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.calendar import (
    fiscal_month,
    fiscal_quarter,
    fiscal_year,
    month_start,
    period_from_fiscal,
    period_key,
)

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
TOKENS = ("yyyy", "yy", "mm", "m", "mon", "Mon", "MON", "fy", "fyy", "q", "fp", "fpp")
_MONTH_TOKENS = frozenset({"mm", "m", "mon", "Mon", "MON", "fp", "fpp"})
_YEAR_TOKENS = frozenset({"yyyy", "yy", "fy", "fyy"})
_TOKEN = re.compile(r"\{([^{}]*)\}")

_TOKEN_PATTERN: dict[str, str] = {
    "yyyy": r"[0-9]{4}",
    "yy": r"[0-9]{2}",
    "mm": r"0[1-9]|1[0-2]",
    "m": r"1[0-2]|[1-9]",
    "mon": "|".join(MONTHS),
    "Mon": "|".join(m.capitalize() for m in MONTHS),
    "MON": "|".join(m.upper() for m in MONTHS),
    "fy": r"[0-9]{4}",
    "fyy": r"[0-9]{2}",
    "q": r"[1-4]",
    "fp": r"1[0-2]|[1-9]",
    "fpp": r"0[1-9]|1[0-2]",
}


def _tokens(fmt: str) -> list[str]:
    return _TOKEN.findall(fmt)


def validate_period_format(fmt: str, *, setting: str = "mapping.actuals.period_format") -> None:
    """Raise ConfigError when ``fmt`` has an unknown token, stray braces, or does not name month and year."""
    problems: list[str] = []
    found = _tokens(fmt)
    unknown = [t for t in found if t not in TOKENS]
    if unknown:
        problems.append(
            f"{setting}: unknown token(s) {', '.join('{' + t + '}' for t in unknown)} in {fmt!r}; "
            f"known: {' '.join('{' + t + '}' for t in TOKENS)}"
        )
    if "{" in _TOKEN.sub("", fmt) or "}" in _TOKEN.sub("", fmt):
        problems.append(f"{setting}: unbalanced brace in {fmt!r}")
    if not _MONTH_TOKENS.intersection(found):
        problems.append(
            f"{setting}: {fmt!r} has no month token ({{mm}}, {{m}}, {{mon}}, {{Mon}}, {{MON}}, {{fp}} or {{fpp}})"
        )
    if not _YEAR_TOKENS.intersection(found):
        problems.append(f"{setting}: {fmt!r} has no year token ({{yyyy}}, {{yy}}, {{fy}} or {{fyy}})")
    if problems:
        raise ConfigError(problems)


def _values(d: date, fiscal_start: int) -> dict[str, str]:
    fy = fiscal_year(d, fiscal_start)
    mon = MONTHS[d.month - 1]
    return {
        "yyyy": f"{d.year:04d}",
        "yy": f"{d.year % 100:02d}",
        "mm": f"{d.month:02d}",
        "m": str(d.month),
        "mon": mon,
        "Mon": mon.capitalize(),
        "MON": mon.upper(),
        "fy": f"{fy:04d}",
        "fyy": f"{fy % 100:02d}",
        "q": str(fiscal_quarter(d, fiscal_start)),
        "fp": str(fiscal_month(d, fiscal_start)),
        "fpp": f"{fiscal_month(d, fiscal_start):02d}",
    }


def format_period(d: date, fmt: str, fiscal_start: int = 1) -> str:
    """The label of the month of ``d`` in format ``fmt`` (see the module docstring for tokens)."""
    validate_period_format(fmt)
    values = _values(month_start(d), fiscal_start)
    return _TOKEN.sub(lambda m: values[m.group(1)], fmt)


@lru_cache(maxsize=64)
def _compile(fmt: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    validate_period_format(fmt)
    parts: list[str] = []
    names: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        parts.append(re.escape(fmt[pos : match.start()]))
        names.append(match.group(1))
        parts.append(f"({_TOKEN_PATTERN[match.group(1)]})")
        pos = match.end()
    parts.append(re.escape(fmt[pos:]))
    return re.compile("".join(parts)), tuple(names)


def parse_period_label(label: str, fmt: str, fiscal_start: int = 1) -> date:
    """The period (first day of the month) that ``label`` denotes in format ``fmt``.

    Exact: raises BadInputData naming the label and the expected format when the label does not match, or
    when its parts contradict each other (e.g. a quarter that is not the month's fiscal quarter).
    """
    pattern, names = _compile(fmt)
    example = format_period(date(2025, 3, 1), fmt, fiscal_start)
    problem = f"period label {label!r} does not match the period format {fmt!r} (e.g. {example!r})"
    match = pattern.fullmatch(label)
    if match is None:
        raise BadInputData(problem)
    # A token used twice keeps its last value; the round trip below catches contradictions.
    got = dict(zip(names, match.groups(), strict=True))
    month = _month_of(got, fiscal_start)
    if "yyyy" in got:
        d = date(int(got["yyyy"]), month, 1)
    elif "yy" in got:
        d = date(2000 + int(got["yy"]), month, 1)
    elif "fy" in got:
        d = period_from_fiscal(int(got["fy"]), month, fiscal_start)
    else:
        d = period_from_fiscal(2000 + int(got["fyy"]), month, fiscal_start)
    if format_period(d, fmt, fiscal_start) != label:
        raise BadInputData(
            f"period label {label!r} is inconsistent for format {fmt!r}: "
            f"{period_key(d)} would be written {format_period(d, fmt, fiscal_start)!r}"
        )
    return d


def _month_of(got: dict[str, str], fiscal_start: int) -> int:
    for name in ("mm", "m"):
        if name in got:
            return int(got[name])
    for name in ("mon", "Mon", "MON"):
        if name in got:
            return MONTHS.index(got[name].lower()) + 1
    for name in ("fpp", "fp"):
        if name in got:  # the n-th month of a fiscal year starting in month fiscal_start
            return (fiscal_start - 1 + int(got[name]) - 1) % 12 + 1
    raise AssertionError("validated formats always have a month token")

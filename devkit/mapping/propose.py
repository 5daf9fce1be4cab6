"""A draft mapping from both systems' metadata: one reason and one confidence per choice (pure, no I/O).

:func:`propose` takes the partial configuration (a dict: the connection's systems, credentials, journal
target; anything under ``mapping`` it already holds is kept as given) and the metadata of both sides
(:mod:`devkit.mapping.metadata`), and returns a :class:`Proposal`: the complete configuration, a
:class:`Choice` per decision (the setting, the value, ``high``/``medium``/``low`` and a one-line reason) and
what it could not decide.

How it decides:

* actions by name similarity (the actuals import is the module import named most like "GL actuals", list
  imports by the list they load, plan exports by budget/forecast/plan, the read-back export by "actuals");
* column roles by ``headerNames`` (Entity/Company/Legal entity, Account, Period/Time/Month, Amount/Value,
  Version, Currency, Approval/Status); other columns by similarity with F&O's dimension names;
* period labels by trying the known formats on the Time list's members, the export's period column or the
  time-in-columns headers (through the run's own label parser);
* layout ``time_in_columns`` when export headers are period labels; sign ``natural`` when the sample rows
  show revenue accounts positive; ``largest_remainder`` rounding when sample amounts carry more decimals;
* value maps (company -> entity, dimension values) by name/description similarity when the Anaplan members
  are not F&O's codes; an actuals scope of account types when the model's account list holds only P&L
  accounts (both only when the configuration model has these settings);
* budget models and codes by similarity of their names with the export's version.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from difflib import SequenceMatcher
from typing import Any, Literal

from devkit.mapping.metadata import AnaplanMeta, ExportMeta, FoMeta, ImportMeta

Confidence = Literal["high", "medium", "low"]

ROLES: dict[str, tuple[str, ...]] = {
    "company": ("entity", "company", "legal entity", "legal entities", "le", "dataareaid", "organisation",
                "organization"),
    "account": ("account", "accounts", "main account", "gl account", "account code"),
    "period": ("period", "periods", "time", "month", "months", "date"),
    "amount": ("amount", "value", "amounts", "net amount", "actual", "actuals"),
    "version": ("version", "versions", "scenario"),
    "currency": ("currency", "currency code"),
    "approval": ("approval", "status", "approval status", "approved"),
}  # fmt: skip
CODE_HEADERS = ("code", "id", "key", "member code", "item code")
NAME_HEADERS = ("name", "description", "label", "member name", "item name")
BLANK_CODES = ("none", "blank", "n/a", "na", "-", "unassigned", "no value")
PERIOD_FORMATS = ("{Mon} {yy}", "{Mon} {yyyy}", "{yyyy}-{mm}", "{yyyy}{mm}", "{mm}/{yyyy}", "{MON} {yy}",
                  "{MON}{yyyy}", "{yyyy}-{m}", "FY{fyy} {Mon}", "{mon}-{yy}", "{Mon}-{yy}")  # fmt: skip
PL_TYPES = ("Revenue", "Expense")
REVENUE_TYPES = ("Revenue",)


@dataclass(frozen=True)
class Choice:
    setting: str
    value: Any
    confidence: Confidence
    reason: str


@dataclass
class Proposal:
    config: dict[str, Any]
    choices: list[Choice] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)

    def choice(self, setting: str) -> Choice | None:
        return next((c for c in self.choices if c.setting == setting), None)


# --- names --------------------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case words without punctuation; British spellings and plurals folded ("Cost Centres" ->
    "cost center", "CostCenter" -> "cost center")."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    words = re.sub(r"[^a-z0-9]+", " ", spaced.lower()).split()
    out = []
    for w in words:
        w = {"centre": "center", "centres": "center", "organisation": "organization"}.get(w, w)
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return " ".join(out)


def similarity(a: str, b: str) -> float:
    """0..1: 1 for the same normalised name; else the better of character and word overlap."""
    na, nb = normalise(a), normalise(b)
    if not na or not nb:
        return 0.0
    if na == nb or na.replace(" ", "") == nb.replace(" ", ""):
        return 1.0
    chars = SequenceMatcher(None, na.replace(" ", ""), nb.replace(" ", "")).ratio()
    wa, wb = set(na.split()), set(nb.split())
    words = len(wa & wb) / len(wa | wb)
    contained = 0.85 if (wa <= wb or wb <= wa) else 0.0
    return max(chars, words, contained)


def best(name: str, candidates: Iterable[str]) -> tuple[str | None, float]:
    scored = sorted(((similarity(name, c), c) for c in candidates), key=lambda t: (-t[0], t[1]))
    return (scored[0][1], scored[0][0]) if scored else (None, 0.0)


def confidence(score: float) -> Confidence:
    return "high" if score >= 0.95 else "medium" if score >= 0.7 else "low"


def role_of(header: str) -> tuple[str | None, float]:
    """The column role a header names, with a score."""
    norm = normalise(header)
    scored = []
    for role, words in ROLES.items():
        exact = any(norm == normalise(w) for w in words)
        scored.append((1.0 if exact else max(similarity(header, w) for w in words), role))
    score, role = max(scored)
    return (role, score) if score >= 0.8 else (None, score)


# --- periods ------------------------------------------------------------------------------------------------


def period_format_of(labels: Sequence[str], fiscal_start: int = 1) -> str | None:
    """The first known format that reads every label (the run's own parser decides)."""
    from d365_anaplan.errors import BadInputData, ConfigError
    from d365_anaplan.flows.periods import parse_period_label

    wanted = [x for x in labels if x.strip()]
    if not wanted:
        return None
    for fmt in PERIOD_FORMATS:
        try:
            for label in wanted:
                parse_period_label(label, fmt, fiscal_start)
        except (BadInputData, ConfigError, ValueError):
            continue
        return fmt
    return None


def month_headers(headers: Sequence[str], fiscal_start: int = 1) -> tuple[list[str], str | None]:
    """Headers that are month labels in one known format (time in columns), and that format."""
    for fmt in PERIOD_FORMATS:
        found = [h for h in headers if period_format_of([h], fiscal_start) == fmt]
        if len(found) >= 2:
            return found, fmt
    return [], None


# --- the proposal -------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, partial: dict[str, Any], ana: AnaplanMeta, fo: FoMeta, features: set[str]) -> None:
        self.partial = partial
        self.ana, self.fo = ana, fo
        self.features = features
        self.choices: list[Choice] = []
        self.undecided: list[str] = list(ana.notes) + list(fo.notes)
        self.maps: dict[str, Any] = {}
        self.sign = "ledger"

    def pick(self, setting: str, value: Any, conf: Confidence, reason: str) -> Any:
        self.choices.append(Choice(setting, value, conf, reason))
        return value

    def unsure(self, text: str) -> None:
        self.undecided.append(text)

    # -- Anaplan lists ----------------------------------------------------------------------------------

    def list_like(self, *names: str, minimum: float = 0.7) -> tuple[str | None, float]:
        found: tuple[str | None, float] = (None, 0.0)
        for n in names:
            got = best(n, self.ana.lists)
            if got[1] > found[1]:
                found = got
        return found if found[1] >= minimum else (None, found[1])

    def members(self, list_name: str | None) -> list[tuple[str, str]]:
        return list(self.ana.lists.get(list_name or "", []))

    # -- imports ----------------------------------------------------------------------------------------

    def actuals_import(self) -> ImportMeta | None:
        modules = [i for i in self.ana.imports if i.kind != "HIERARCHY_DATA" and self.roles(i.headers)]
        scored = sorted(((max(similarity(i.name, "GL Actuals"), similarity(i.name, "Load Actuals")), i)
                         for i in modules), key=lambda t: (-t[0], t[1].name))  # fmt: skip
        if not scored:
            self.unsure("actuals import: no module import with account, period and amount columns")
            return None
        score, imp = scored[0]
        conf: Confidence = "high" if len(scored) == 1 or score >= 0.95 else confidence(score)
        self.pick("mapping.actuals.import_action", imp.name, conf,
                  f"the module import named most like 'GL Actuals' (similarity {score:.2f}) of {len(scored)} "
                  f"with account, period and amount columns")  # fmt: skip
        return imp

    def roles(self, headers: Sequence[str]) -> dict[str, str]:
        """role -> header, when account, period and amount are all found (else {})."""
        found: dict[str, tuple[str, float]] = {}
        for h in headers:
            role, score = role_of(h)
            if role and (role not in found or score > found[role][1]):
                found[role] = (h, score)
        if not {"account", "amount"} <= set(found):
            return {}
        return {r: h for r, (h, _s) in found.items()}

    def list_import(self, *targets: str) -> tuple[ImportMeta | None, float]:
        lists = [i for i in self.ana.imports if i.kind == "HIERARCHY_DATA"]
        scored = sorted(((max(similarity(i.name, f"Load {t}") for t in targets), i) for i in lists),
                        key=lambda t: (-t[0], t[1].name))  # fmt: skip
        if not scored or scored[0][0] < 0.7:
            return None, scored[0][0] if scored else 0.0
        return scored[0][1], scored[0][0]

    # -- the sections -----------------------------------------------------------------------------------

    def accounts(self, mapping: dict[str, Any]) -> None:
        imp, score = self.list_import("Accounts", "Main Accounts", "Chart of Accounts")
        out: dict[str, Any] = {}
        if imp is None:
            self.unsure("mapping.accounts.import_action: no list import named like 'Load Accounts'")
            out["import_action"] = "Load Accounts"
        else:
            out["import_action"] = self.pick("mapping.accounts.import_action", imp.name, confidence(score),
                                             f"the list import named most like 'Load Accounts' ({score:.2f})")  # fmt: skip
            code, name = self.code_name(imp, "mapping.accounts")
            if code != "Code":
                out["code_column"] = code
            if name != "Name":
                out["name_column"] = name
        lst, lscore = self.list_like("Accounts", "Main Accounts")
        if lst:
            out["list_name"] = self.pick("mapping.accounts.list_name", lst, confidence(lscore),
                                         f"the list named most like 'Accounts' ({lscore:.2f})")  # fmt: skip
        mapping["accounts"] = out

    def code_name(self, imp: ImportMeta, where: str) -> tuple[str, str]:
        code, cs = best("code", imp.headers) if imp.headers else (None, 0.0)
        code = next((h for h in imp.headers if normalise(h) in {normalise(c) for c in CODE_HEADERS}), code)
        name = next((h for h in imp.headers if normalise(h) in {normalise(c) for c in NAME_HEADERS}), None)
        if not code or not name or code == name:
            self.unsure(f"{where}: import {imp.name!r} columns {imp.headers}: no code and name column found")
            return "Code", "Name"
        extra = [h for h in imp.headers if h not in (code, name)]
        if extra:
            self.unsure(
                f"{where}: import {imp.name!r} also reads {extra}; the connector writes code and name only"
            )
        self.pick(f"{where}.code_column", code, "high" if cs >= 0.95 or code in CODE_HEADERS else "medium",
                  f"import {imp.name!r} column {code!r} holds the member codes")  # fmt: skip
        return code, name

    def dimensions(self, imp: ImportMeta | None, roles: dict[str, str]) -> list[dict[str, Any]]:
        fo_dims = [s for s in self.fo.ledger_segments if s != "MainAccount"]
        headers = [h for h in (imp.headers if imp else []) if h not in roles.values()]
        out: list[dict[str, Any]] = []
        taken: set[str] = set()
        for dim in fo_dims:
            names = [dim, self.fo.dimension_names.get(dim, "")]
            scored = sorted(((max(similarity(h, n) for n in names if n), h) for h in headers if h not in taken),
                            key=lambda t: (-t[0], t[1]))  # fmt: skip
            if not scored or scored[0][0] < 0.7:
                self.pick(f"mapping.dimensions[{dim}]", None, "medium",
                          f"F&O dimension {dim!r} has no column in the actuals import: not carried")  # fmt: skip
                continue
            score, column = scored[0]
            taken.add(column)
            entry: dict[str, Any] = {"name": dim, "column": column}
            self.pick(f"mapping.dimensions[{dim}].column", column, confidence(score),
                      f"actuals import column {column!r} is named like F&O dimension {dim!r} ({score:.2f})")  # fmt: skip
            limp, ls = self.list_import(column, dim)
            if limp is not None:
                entry["list_import"] = self.pick(f"mapping.dimensions[{dim}].list_import", limp.name, confidence(ls),
                                                 f"the list import named most like 'Load {column}' ({ls:.2f})")  # fmt: skip
            lst, lsc = self.list_like(column, dim, minimum=0.7)
            if lst:
                entry["list_name"] = self.pick(f"mapping.dimensions[{dim}].list_name", lst, confidence(lsc),
                                               f"the list named most like {column!r} ({lsc:.2f})")  # fmt: skip
                blank = self.blank_member(lst)
                if blank is not None:
                    entry["blank_member"] = self.pick(
                        f"mapping.dimensions[{dim}].blank_member", blank, "medium",
                        f"list {lst!r} has member {blank!r} for lines without a {dim}")  # fmt: skip
                self.value_map(dim, lst, [v for v, _d in self.fo.dimension_values.get(dim, [])],
                               dict(self.fo.dimension_values.get(dim, [])), blank)  # fmt: skip
                if dim in self.maps and entry.pop("list_import", None):
                    self.pick(f"mapping.dimensions[{dim}].list_import", None, "medium",
                              f"list {lst!r} holds the model's own members (a value map): F&O's values are not loaded into it")  # fmt: skip
            else:
                self.unsure(f"mapping.dimensions[{dim}].list_name: no Anaplan list named like {column!r}; "
                            "alignment of its values is not checked")  # fmt: skip
            out.append(entry)
        for h in headers:
            if h not in taken:
                self.unsure(f"actuals import column {h!r}: neither a known role nor an F&O dimension; set "
                            "mapping.actuals.constant_columns or ask the model builder to map it to Ignore")  # fmt: skip
        return out

    def blank_member(self, list_name: str) -> str | None:
        for code, name in self.members(list_name):
            if normalise(code) in BLANK_CODES or normalise(name).startswith("no "):
                return code
        return None

    def value_map(self, key: str, list_name: str, codes: Sequence[str], descriptions: dict[str, str],
                  blank: str | None = None) -> None:  # fmt: skip
        """A value map when F&O's codes are not the list's members: each code to the member whose name is
        most like the code's description (or name)."""
        members = [m for m in self.members(list_name) if m[0] != blank]
        if not members or not codes:
            return
        known = {c for c, _n in members}
        if all(c in known for c in codes):
            self.pick(f"mapping.value_maps.{key}", None, "high",
                      f"every F&O {key} code is a member of {list_name!r}: no value map")  # fmt: skip
            return
        if "value_maps" not in self.features:
            self.unsure(f"{key}: F&O codes {sorted(set(codes) - known)[:5]} are not members of {list_name!r} and "
                        "this configuration model has no mapping.value_maps")  # fmt: skip
            return
        values: dict[str, str] = {}
        weakest = 1.0
        for code in codes:
            if code in known:
                continue
            text = descriptions.get(code) or code
            scored = sorted(((max(similarity(text, n), similarity(code, c)), c) for c, n in members),
                            key=lambda t: (-t[0], t[1]))  # fmt: skip
            score, target = scored[0]
            if score < 0.5:
                self.unsure(f"mapping.value_maps.{key}: F&O {key} {code!r} ({text!r}) matches no member of "
                            f"{list_name!r} (best {target!r}, {score:.2f})")  # fmt: skip
                continue
            values[code] = target
            weakest = min(weakest, score)
        if values:
            self.maps[key] = {"values": values}
            merged = len(set(values.values())) < len(values)
            self.pick(f"mapping.value_maps.{key}", values, confidence(weakest),
                      f"F&O {key} codes are not members of {list_name!r}; matched by name/description (weakest "
                      f"{weakest:.2f}){'; several codes share a member (merged)' if merged else ''}")  # fmt: skip

    def actuals(self, mapping: dict[str, Any]) -> dict[str, str]:
        imp = self.actuals_import()
        out: dict[str, Any] = {}
        roles: dict[str, str] = {}
        if imp is not None:
            out["import_action"] = imp.name
            roles = self.roles(imp.headers)
            defaults = {"company": "Entity", "account": "Account", "period": "Period", "amount": "Amount"}
            for role, default in defaults.items():
                if role not in roles:
                    self.unsure(f"mapping.actuals.{role}_column: import {imp.name!r} has no {role} column "
                                f"({imp.headers})")  # fmt: skip
                    continue
                if roles[role] != default:
                    out[f"{role}_column"] = roles[role]
                self.pick(f"mapping.actuals.{role}_column", roles[role], confidence(role_of(roles[role])[1]),
                          f"import {imp.name!r} header {roles[role]!r} names the {role}")  # fmt: skip
            if "version" in roles:
                if roles["version"] != "Version":
                    out["version_column"] = roles["version"]
                self.pick("mapping.actuals.version_column", roles["version"], "high",
                          f"import {imp.name!r} has a version column")  # fmt: skip
            else:
                out["version_column"] = self.pick("mapping.actuals.version_column", None, "high",
                                                  f"import {imp.name!r} has no version column")  # fmt: skip
            if "currency" in roles:
                self.unsure(f"import {imp.name!r} reads a currency column {roles['currency']!r}: set "
                            "ledger.currency_column to it (and ledger.currency)")  # fmt: skip
            if "approval" in roles:
                self.unsure(f"import {imp.name!r} reads {roles['approval']!r}: not written by the connector")
        versions, _score = self.list_like("Versions", "Version", "Scenario")
        if versions:
            member, score = best("Actual", [c for c, _n in self.members(versions)])
            if member and score >= 0.7:
                if member != "Actual":
                    out["version"] = member
                self.pick("mapping.actuals.version", member, confidence(score),
                          f"member {member!r} of list {versions!r}")  # fmt: skip
        mapping["actuals"] = out
        return roles

    def period_format(self, mapping: dict[str, Any], fiscal_start: int) -> str:
        periods, _s = self.list_like("Periods", "Time", "Months", minimum=0.8)
        labels = [c for c, _n in self.members(periods)]
        where = f"the members of list {periods!r}"
        if not labels:
            for exp in self.ana.exports:
                roles = self.roles(exp.headers)
                if "period" in roles and exp.sample:
                    at = exp.headers.index(roles["period"])
                    labels = [r[at] for r in exp.sample if len(r) > at]
                    where = f"the period column of export {exp.name!r}"
                    break
        fmt = period_format_of(labels, fiscal_start)
        if fmt is None:
            self.unsure(f"mapping.actuals.period_format: no known format reads {where} ({labels[:3]}); "
                        "kept '{Mon} {yy}'")  # fmt: skip
            return "{Mon} {yy}"
        self.pick("mapping.actuals.period_format", fmt, "high" if periods else "medium",
                  f"reads every one of {where} (e.g. {labels[0]!r})")  # fmt: skip
        if fmt != "{Mon} {yy}":
            mapping["actuals"]["period_format"] = fmt
        return fmt

    def readback(self, mapping: dict[str, Any], roles: dict[str, str]) -> ExportMeta | None:
        needed = [roles.get(r) for r in ("company", "account", "period", "amount")]
        if not all(needed):
            return None
        cands = [e for e in self.ana.exports if all(n in e.headers for n in needed)]
        scored = sorted(
            ((similarity(e.name, "Export GL Actuals"), e) for e in cands), key=lambda t: (-t[0], t[1].name)
        )
        if not scored or scored[0][0] < 0.7:
            return None
        score, exp = scored[0]
        mapping["actuals"]["verify_export"] = self.pick(
            "mapping.actuals.verify_export", exp.name, confidence(score),
            f"export {exp.name!r} is named like the actuals module's and carries the actuals columns")  # fmt: skip
        return exp

    def plans(self, mapping: dict[str, Any], dims: list[dict[str, Any]], readback: ExportMeta | None,
              fiscal_start: int, actual_fmt: str) -> None:  # fmt: skip
        versions, _s = self.list_like("Versions", "Version", "Scenario")
        members = [c for c, _n in self.members(versions)]
        plan_exports = [e for e in self.ana.exports if e is not readback
                        and any(w in normalise(e.name).split() for w in ("budget", "forecast", "plan"))]  # fmt: skip
        out: dict[str, Any] = {}
        exports: list[dict[str, Any]] = []
        shared: dict[str, set[Any]] = {}
        revenue_signs: list[int] = []
        decimals = 2
        for exp in plan_exports:
            months, tic_fmt = month_headers(exp.headers, fiscal_start)
            roles = self.roles([h for h in exp.headers if h not in months] + (["Amount"] if months else []))
            if months:
                roles.pop("amount", None)
            entry: dict[str, Any] = {"export_action": exp.name}
            # version: the version column's sample values, else the member named in the export's name
            version = None
            if "version" in roles and exp.sample:
                at = exp.headers.index(roles["version"])
                seen = Counter(r[at] for r in exp.sample if len(r) > at)
                if seen:
                    version = seen.most_common(1)[0][0]
                    self.pick(f"mapping.plans.exports[{exp.name}].version", version, "high",
                              f"the version column's sample values of export {exp.name!r} are {sorted(seen)}")  # fmt: skip
            if version is None:
                named = [m for m in members if normalise(m) in normalise(exp.name).split() and m != "Actual"]
                if named:
                    version = named[0]
                    self.pick(f"mapping.plans.exports[{exp.name}].version", version, "medium",
                              f"export name {exp.name!r} names version member {version!r}")  # fmt: skip
                else:
                    version = "Budget" if "forecast" not in normalise(exp.name) else "Forecast"
                    self.unsure(
                        f"mapping.plans.exports[{exp.name}].version: guessed {version!r} from the name"
                    )
            entry["version"] = version
            layout = "time_in_columns" if months else "long"
            shared.setdefault("layout", set()).add(layout)
            shared.setdefault("version_column", set()).add(roles.get("version"))
            shared.setdefault("approval_column", set()).add(roles.get("approval"))
            for role in ("company", "account", "period", "amount"):
                if role in ("period", "amount") and months:
                    continue
                shared.setdefault(f"{role}_column", set()).add(roles.get(role))
            # period labels
            if months:
                fmt = tic_fmt
                self.pick(f"mapping.plans.exports[{exp.name}].layout", "time_in_columns", "high",
                          f"export {exp.name!r} has {len(months)} month columns ({months[0]!r}…) in {fmt!r}")  # fmt: skip
            elif "period" in roles and exp.sample:
                at = exp.headers.index(roles["period"])
                fmt = period_format_of([r[at] for r in exp.sample if len(r) > at], fiscal_start)
            else:
                fmt = None
            if fmt and fmt != actual_fmt:
                entry["period_format"] = self.pick(f"mapping.plans.exports[{exp.name}].period_format", fmt, "high",
                                                   f"export {exp.name!r} labels months as {fmt!r}")  # fmt: skip
            # sign and decimals from the sample rows
            for row, amount in self.sample_amounts(exp, roles, months):
                exponent = amount.as_tuple().exponent
                if isinstance(exponent, int):
                    decimals = max(decimals, -exponent)
                acc = row[exp.headers.index(roles["account"])] if "account" in roles else ""
                if self.fo.accounts.get(acc, ("", ""))[1] in REVENUE_TYPES and amount != 0:
                    revenue_signs.append(1 if amount > 0 else -1)
            self.budget_target(entry, exp, version, self.fiscal_years(exp, roles, months, fmt, fiscal_start))
            dims_here = [d["name"] for d in dims if d["column"] in exp.headers]
            shared.setdefault("dimensions", set()).add(tuple(dims_here))
            exports.append(entry)
        out["exports"] = exports
        if not exports:
            self.unsure("mapping.plans.exports: no export named like a budget, forecast or plan")
        defaults = {"company_column": "Entity", "account_column": "Account", "period_column": "Period",
                    "amount_column": "Amount", "version_column": "Version", "approval_column": "Approval",
                    "layout": "long"}  # fmt: skip
        for key, values in shared.items():
            if key == "dimensions":
                continue
            if len(values) > 1:
                self.unsure(f"mapping.plans.{key}: the exports differ ({sorted(map(str, values))}); one value "
                            "applies to every export")  # fmt: skip
            value = sorted(values, key=str)[0]
            if value is None and key in (
                "company_column",
                "account_column",
                "period_column",
                "amount_column",
            ):
                self.unsure(f"mapping.plans.{key}: no export column found")
                continue
            if value != defaults.get(key):
                out[key] = value
            self.pick(f"mapping.plans.{key}", value, "high" if len(values) == 1 else "low",
                      f"what the plan exports' headers show ({', '.join(e.name for e in plan_exports)})")  # fmt: skip
        dim_sets = shared.get("dimensions", set())
        if dim_sets:
            carried = sorted(set.intersection(*(set(s) for s in dim_sets)))
            out["dimensions"] = self.pick("mapping.plans.dimensions", carried, "high",
                                          f"the mapped dimension columns every plan export carries: {carried or 'none'}")  # fmt: skip
        if decimals > 2:
            out["rounding"] = self.pick("mapping.plans.rounding", "largest_remainder", "medium",
                                        f"sample amounts carry up to {decimals} decimals (spread values)")  # fmt: skip
        if revenue_signs:
            positive = sum(1 for s in revenue_signs if s > 0)
            sign = "natural" if positive > len(revenue_signs) / 2 else "ledger"
            share = max(positive, len(revenue_signs) - positive) / len(revenue_signs)
            self.sign = sign
            if sign != "ledger":
                out["sign"] = sign
            self.pick("mapping.plans.sign", sign, "high" if share == 1 else "medium",
                      f"{positive} of {len(revenue_signs)} sample values of revenue accounts are positive")  # fmt: skip
        else:
            self.unsure("mapping.plans.sign: no revenue account in the sample rows; kept ledger sign")
        mapping["plans"] = out

    def fiscal_years(self, exp: ExportMeta, roles: dict[str, str], months: list[str], fmt: str | None,
                     fiscal_start: int) -> set[int]:  # fmt: skip
        """Fiscal years of the export's month columns, or of its sample rows' periods."""
        from d365_anaplan.errors import BadInputData, ConfigError
        from d365_anaplan.flows.calendar import fiscal_year
        from d365_anaplan.flows.periods import parse_period_label

        labels = list(months)
        if not labels and "period" in roles and exp.sample:
            at = exp.headers.index(roles["period"])
            labels = [r[at] for r in exp.sample if len(r) > at]
        years: set[int] = set()
        for text in labels:
            try:
                years.add(
                    fiscal_year(parse_period_label(text, fmt or "{Mon} {yy}", fiscal_start), fiscal_start)
                )
            except (BadInputData, ConfigError, ValueError):
                continue
        return years

    def sample_amounts(self, exp: ExportMeta, roles: dict[str, str], months: list[str]
                       ) -> Iterable[tuple[list[str], Decimal]]:  # fmt: skip
        cols = [exp.headers.index(m) for m in months] if months else (
            [exp.headers.index(roles["amount"])] if "amount" in roles else [])  # fmt: skip
        for row in exp.sample:
            for at in cols:
                if at < len(row) and row[at].strip():
                    try:
                        yield row, Decimal(row[at].strip())
                    except InvalidOperation:
                        continue

    def budget_target(self, entry: dict[str, Any], exp: ExportMeta, version: str, years: set[int]) -> None:
        """Budget model and codes of an export by name; ``years``: the fiscal years its sample rows cover."""
        journal = self.partial.get("dynamics", {}).get("journal", {}) or {}
        if journal.get("target", "budget_register") != "budget_register" or not self.fo.budget_models:
            return
        models = sorted(((similarity(name or model, version) + (0.01 if version[:2].lower() in model.lower() else 0),
                          model) for model, name in self.fo.budget_models.items()), key=lambda t: (-t[0], t[1]))  # fmt: skip
        score, model = models[0]
        tied = [m for sc, m in models if sc >= score - 0.05]
        by_year = {y: m for y in sorted(years) for m in tied
                   if str(y) in m or str(y) in self.fo.budget_models[m]}  # fmt: skip
        if len(by_year) > 1:
            entry["budget_models"] = self.pick(
                f"mapping.plans.exports[{exp.name}].budget_models", by_year, confidence(score),
                f"the plan covers fiscal years {sorted(years)}; F&O budget models named like {version!r} per year")  # fmt: skip
            model = by_year[max(by_year)]
        model = next(iter(by_year.values())) if len(by_year) == 1 else model
        why = f" for fiscal year {next(iter(by_year))}" if len(by_year) == 1 else ""
        if model != journal.get("budget_model"):
            entry["budget_model"] = model
        self.pick(f"mapping.plans.exports[{exp.name}].budget_model", model, confidence(score),
                  f"F&O budget model {model!r} ({self.fo.budget_models[model]!r}) is named most like {version!r}{why}")  # fmt: skip
        for kind, key, default in (("OriginalBudget", "budget_code", journal.get("budget_code")),
                                   ("Amendment", "revision_budget_code", journal.get("revision_budget_code"))):  # fmt: skip
            codes = sorted(((similarity(desc or code, version), code) for code, (t, desc) in self.fo.budget_codes.items()
                            if t == kind), key=lambda t: (-t[0], t[1]))  # fmt: skip
            if not codes:
                self.unsure(f"mapping.plans.exports[{exp.name}].{key}: F&O has no budget code of type {kind}")
                continue
            cscore, code = codes[0]
            if len(codes) > 1 and cscore < 0.5 and default:
                code = default  # nothing named like the version: the connection's default
            if code != default:
                entry[key] = code
            self.pick(f"mapping.plans.exports[{exp.name}].{key}", code, confidence(max(cscore, 0.7 if code == default else 0)),
                      f"F&O budget code {code!r} of type {kind} named most like {version!r}")  # fmt: skip

    def companies(self) -> None:
        entities, _score = self.list_like("Legal Entities", "Entities", "Companies", "Entity")
        if not entities:
            self.unsure(
                "company: no Anaplan list named like 'Legal Entities'; the entity column gets F&O's ids"
            )
            return
        self.value_map("company", entities, self.fo.companies,
                       {c: self.fo.legal_entities.get(c, c) for c in self.fo.companies})  # fmt: skip

    def scopes(self, mapping: dict[str, Any]) -> None:
        """An actuals scope when the model's account list holds only part of F&O's chart: by account type when
        the members are exactly the accounts of some types, else by ranges of the chart."""
        accounts = mapping.get("accounts", {}).get("list_name")
        members = {c for c, _n in self.members(accounts)} & set(self.fo.accounts)
        if not members or members == set(self.fo.accounts):
            return
        if "scopes" not in self.features:
            self.unsure(f"the Anaplan list {accounts!r} holds {len(members)} of F&O's {len(self.fo.accounts)} "
                        "accounts and this configuration model has no mapping.scopes: every account is loaded")  # fmt: skip
            return
        types = sorted({self.fo.accounts[c][1] for c in members})
        typed = {a for a, (_n, t) in self.fo.accounts.items() if t in types}
        if typed == members:
            mapping["scopes"] = {"actuals": {"types": types}}
            self.pick("mapping.scopes.actuals.types", types, "high",
                      f"the {len(members)} members of list {accounts!r} are exactly F&O's {' and '.join(types)} accounts")  # fmt: skip
            return
        runs = account_runs(sorted(self.fo.accounts, key=_chart_order), members)
        if len(runs) > 5:
            self.unsure(f"mapping.scopes: the {len(members)} accounts of list {accounts!r} are {len(runs)} separate "
                        "ranges of the chart; write the scope by hand")  # fmt: skip
            return
        include = [lo if lo == hi else f"{lo}..{hi}" for lo, hi in runs]
        mapping["scopes"] = {"actuals": {"include": include}}
        self.pick("mapping.scopes.actuals.include", include, "high" if len(runs) == 1 else "medium",
                  f"the {len(members)} members of list {accounts!r} are {len(runs)} unbroken range(s) of F&O's chart")  # fmt: skip


def _chart_order(account: str) -> tuple[int, int | str]:
    return (0, int(account)) if account.isdigit() else (1, account)


def account_runs(chart: list[str], members: set[str]) -> list[tuple[str, str]]:
    """The unbroken runs of ``members`` in the ordered ``chart``, as (first, last)."""
    runs: list[tuple[str, str]] = []
    current: list[str] = []
    for account in chart:
        if account in members:
            current.append(account)
        elif current:
            runs.append((current[0], current[-1]))
            current = []
    if current:
        runs.append((current[0], current[-1]))
    return runs


def config_features() -> set[str]:
    """The mapping settings this configuration model has beyond the base (scopes, value maps, actuals sign)."""
    from d365_anaplan.config import ActualsMapping, Mappings

    out: set[str] = {f for f in ("scopes", "value_maps") if f in Mappings.model_fields}
    if "sign" in ActualsMapping.model_fields:
        out.add("actuals_sign")
    return out


def _merge(given: Any, proposed: Any) -> Any:
    """``proposed`` under ``given``: what the partial configuration already says wins."""
    if isinstance(given, dict) and isinstance(proposed, dict):
        out = dict(proposed)
        for k, v in given.items():
            out[k] = _merge(v, proposed[k]) if k in proposed else v
        return out
    return given


def propose(
    partial: dict[str, Any], ana: AnaplanMeta, fo: FoMeta, *, features: set[str] | None = None
) -> Proposal:
    """The complete draft configuration for ``partial`` from both sides' metadata."""
    b = _Builder(partial, ana, fo, config_features() if features is None else features)
    cfg = copy.deepcopy(partial)
    calendar = dict(cfg.get("close_calendar") or {})
    fiscal_start = int(calendar.get("fiscal_year_start_month") or 1)
    if ana.fiscal_year_start is not None:
        fiscal_start = ana.fiscal_year_start.month
        calendar["fiscal_year_start_month"] = b.pick(
            "close_calendar.fiscal_year_start_month", fiscal_start, "high",
            f"the model calendar's current fiscal year starts {ana.fiscal_year_start.isoformat()}")  # fmt: skip
        cfg["close_calendar"] = calendar
    mapping: dict[str, Any] = {}
    b.accounts(mapping)
    roles = b.actuals(mapping)
    imp = next((i for i in ana.imports if i.name == mapping["actuals"].get("import_action")), None)
    dims = b.dimensions(imp, roles)
    mapping["dimensions"] = dims
    actual_fmt = b.period_format(mapping, fiscal_start)
    readback = b.readback(mapping, roles)
    b.plans(mapping, dims, readback, fiscal_start, actual_fmt)
    b.companies()
    b.scopes(mapping)
    if b.maps:
        mapping["value_maps"] = b.maps
    if "actuals_sign" in b.features and b.sign == "natural":
        mapping["actuals"]["sign"] = b.pick("mapping.actuals.sign", "natural", "medium",
                                            "the plan exports keep revenue positive; a model keeps one sign convention")  # fmt: skip
    cfg["mapping"] = _merge(partial.get("mapping") or {}, mapping)
    for key in _given_keys(partial.get("mapping") or {}, "mapping"):
        b.choices = [c for c in b.choices if not c.setting.startswith(key)]
        b.pick(key, "(as given)", "high", "set in the partial configuration; kept")
    return Proposal(cfg, b.choices, b.undecided)


def _given_keys(given: Any, prefix: str) -> list[str]:
    if not isinstance(given, dict):
        return [prefix]
    return [k for key, v in given.items() for k in _given_keys(v, f"{prefix}.{key}")]


def render(proposal: Proposal) -> str:
    """The configuration as YAML, headed by one comment line per choice and per open question."""
    import yaml

    lines = ["# Draft connection configuration proposed by `d365-anaplan map propose`.",
             "# Every choice: setting = value  [confidence] reason"]  # fmt: skip
    for c in proposal.choices:
        value = "(not mapped)" if c.value is None and c.setting.startswith("mapping.dimensions[") else c.value
        lines.append(f"#   {c.setting} = {value!r}  [{c.confidence}] {c.reason}")
    lines.append("# Could not decide (review before the first run):" if proposal.undecided else
                 "# Could not decide: nothing")  # fmt: skip
    lines += [f"#   - {u}" for u in proposal.undecided]
    body = yaml.safe_dump(proposal.config, sort_keys=False, allow_unicode=True)
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n" + body

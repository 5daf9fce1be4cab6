"""Metadata drift (issue 12, item 6): a fingerprint of the model metadata a run relied on, and its diff.

A successful run records the fingerprint of what it relied on; the next run computes the same fingerprint in
its metadata pre-check, before anything is read from F&O or written anywhere, and stops with
:class:`~d365_anaplan.errors.MetadataDrift` and a readable diff when something changed (unless the run was
started with ``accept_drift``). Pure logic only: the reads are in ``steps/preflight.py``, the storage in
``ledger/drift.py``.

A fingerprint is plain JSON (it is stored in the ledger)::

    {"imports": {"Load GL Actuals": ["Company", "Account", ...]},     # headerNames, in order
     "exports": {"Export Approved Budget": ["Entity", "Account", ...]},  # header row (row columns only
                                                                      #  for time-in-columns layouts)
     "lists":   {"Cost Centres": {"count": 12, "sha256": "…", "members": ["CC100", …]}}}

Members are kept sorted and in full up to :data:`MAX_MEMBERS` codes (enough for a diff); a longer list keeps
its count and hash only, and its diff says how many members it has now. Only items present in both
fingerprints are compared: an import, export or list the configuration starts or stops using is a change
of configuration, not drift of the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_MEMBERS = 5000  # member codes kept per list (DynamoDB items are at most 400 KB)
SHOWN = 10  # names shown per kind of change in one diff line

SECTIONS = (("imports", "import", "columns"), ("exports", "export", "layout"))

Fingerprint = dict[str, Any]


def list_entry(codes: Iterable[str]) -> dict[str, Any]:
    """The fingerprint of a list's members: count, hash of the sorted codes and (when short enough) the codes."""
    members = sorted({str(c) for c in codes})
    digest = hashlib.sha256("\n".join(members).encode("utf-8")).hexdigest()
    entry: dict[str, Any] = {"count": len(members), "sha256": digest}
    if len(members) <= MAX_MEMBERS:
        entry["members"] = members
    return entry


def fingerprint(
    imports: Mapping[str, Sequence[str]],
    exports: Mapping[str, Sequence[str]],
    lists: Mapping[str, Iterable[str]],
) -> Fingerprint:
    """A fingerprint from the imports' ``headerNames``, the exports' header rows and the lists' member codes."""
    return {
        "imports": {k: [str(c) for c in v] for k, v in imports.items()},
        "exports": {k: [str(c) for c in v] for k, v in exports.items()},
        "lists": {k: list_entry(v) for k, v in lists.items()},
    }


def digest(fp: Fingerprint) -> str:
    """One hash of a whole fingerprint (stored beside it; equal fingerprints have equal digests)."""
    parts = [f"{s}:{k}:{'|'.join(v)}" for s, _, _ in SECTIONS for k, v in sorted(fp.get(s, {}).items())]
    parts += [f"lists:{k}:{v.get('sha256')}" for k, v in sorted(fp.get("lists", {}).items())]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _names(values: Sequence[str]) -> str:
    shown = ", ".join(repr(v) for v in values[:SHOWN])
    return shown + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


def columns_change(old: Sequence[str], new: Sequence[str]) -> str:
    """``added 'Currency', removed 'Version'`` or ``order changed: [...] -> [...]``; empty when equal."""
    if list(old) == list(new):
        return ""
    changes = (("added", [c for c in new if c not in old]), ("removed", [c for c in old if c not in new]))
    parts = [f"{verb} {_names(columns)}" for verb, columns in changes if columns]
    return ", ".join(parts) or f"order changed: {list(old)} -> {list(new)}"


def _members_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if old.get("sha256") == new.get("sha256"):
        return ""
    before, after = old.get("members"), new.get("members")
    if before is None or after is None:
        return f"members changed ({old.get('count')} before, {new.get('count')} now)"
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    parts = []
    if added:
        parts.append(f"{len(added)} member{'s' if len(added) != 1 else ''} added: {', '.join(added[:SHOWN])}"
                     + (f" and {len(added) - SHOWN} more" if len(added) > SHOWN else ""))  # fmt: skip
    if removed:
        parts.append(f"{len(removed)} removed: {', '.join(removed[:SHOWN])}"
                     + (f" and {len(removed) - SHOWN} more" if len(removed) > SHOWN else ""))  # fmt: skip
    return ", ".join(parts)


def diff(old: Fingerprint, new: Fingerprint) -> list[str]:
    """One readable line per changed item (imports, exports, lists, in that order); empty when nothing changed."""
    lines = []
    for section, what, aspect in SECTIONS:
        before, after = old.get(section, {}), new.get(section, {})
        for name in sorted(set(before) & set(after)):
            change = columns_change(before[name], after[name])
            if change:
                lines.append(f"{what} {name!r} {aspect}: {change}")
    before_lists, after_lists = old.get("lists", {}), new.get("lists", {})
    for name in sorted(set(before_lists) & set(after_lists)):
        change = _members_change(before_lists[name], after_lists[name])
        if change:
            lines.append(f"list {name!r}: {change}")
    return lines

"""The F&O part of a metadata fingerprint and its diff (issue 12, item 6): ``flows/drift.py`` fo_entry/fo_diff."""

from __future__ import annotations

from d365_anaplan.flows.drift import digest, fingerprint, fo_diff, fo_entry

SEGMENTS = ["MainAccount", "BusinessUnit", "Department"]
DIMS = ["BusinessUnit", "CostCenter", "Department"]


def _fo(segments: list[str] | None = None, name: str = "Manufacturing P&L",
        dims: list[str] | None = None) -> dict[str, object]:  # fmt: skip
    return fo_entry({"ledger": (name, segments if segments is not None else SEGMENTS)},
                    dims if dims is not None else DIMS)  # fmt: skip


def test_unchanged_f_and_o_metadata_has_no_diff() -> None:
    assert fo_diff(_fo(), _fo()) == []
    assert fo_diff(_fo(), _fo(dims=list(reversed(DIMS)))) == []  # names compare as a set


def test_changed_segments_are_shown_before_and_after() -> None:
    assert fo_diff(_fo(), _fo(["MainAccount", "Department"])) == [
        "F&O ledger dimension format 'Manufacturing P&L': segments "
        "['MainAccount', 'BusinessUnit', 'Department'] -> ['MainAccount', 'Department']"
    ]


def test_reordered_segments_and_another_active_format_are_drift() -> None:
    reordered = ["MainAccount", "Department", "BusinessUnit"]
    assert fo_diff(_fo(), _fo(reordered)) != []
    assert fo_diff(_fo(), _fo(name="LedgerFormat2")) == [
        "F&O ledger dimension format 'Manufacturing P&L' -> 'LedgerFormat2': segments "
        f"{SEGMENTS} -> {SEGMENTS}"
    ]


def test_dimension_names_added_and_removed() -> None:
    assert fo_diff(_fo(), _fo(dims=["BusinessUnit", "Department", "Project"])) == [
        "F&O financial dimensions: added 'Project', removed 'CostCenter'"
    ]


def test_no_recorded_f_and_o_part_is_no_drift() -> None:
    assert fo_diff(None, _fo(["MainAccount"])) == []
    assert fo_diff({}, _fo(["MainAccount"])) == []


def test_only_kinds_in_both_compare() -> None:
    budget = fo_entry({"budget": ("Budget", ["MainAccount"])}, DIMS)
    assert fo_diff(_fo(), budget) == []


def test_the_f_and_o_part_is_in_the_digest() -> None:
    base = fingerprint({"Load GL Actuals": ["Account"]}, {}, {})
    assert digest({**base, "fo": _fo()}) == digest({**base, "fo": _fo()})
    assert digest({**base, "fo": _fo()}) != digest({**base, "fo": _fo(["MainAccount", "Department"])})
    assert digest({**base, "fo": _fo()}) != digest({**base, "fo": _fo(dims=["Project"])})
